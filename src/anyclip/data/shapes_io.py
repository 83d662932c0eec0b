"""Writing the synthetic shapes to disk: a CSV with an image folder, or webdataset shards (``make_shapes``).

Files are written atomically and are byte-identical for any number of worker processes.

Example:
    >>> from anyclip.data import make_shapes
    >>> make_shapes("data/shapes/train", "train", 20000, "wds", workers=0)  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import io
import json
import multiprocessing
import os
import sys
import tarfile
from dataclasses import asdict
from pathlib import Path

from ..atomic import atomic_write_bytes
from .shapes import LABEL_KEYS, ShapesConfig, ShapesDataset


def _write_chunk(job) -> list:
    """Samples ``start:stop`` as image files in the folder ``target`` or as the tar shard ``target``."""
    ds, start, stop, target, image_format = job
    rows, shard, buf = [], target.suffix == ".tar", io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(start, stop):
            image, caption, labels = ds[i]
            rows.append((caption, labels))
            data = io.BytesIO()  # JPEG without chroma subsampling keeps small coloured shapes crisp
            image.save(data, **(dict(format="JPEG", quality=95, subsampling=0) if image_format == "jpg" else
                                dict(format="PNG", compress_level=1)))
            if not shard:
                atomic_write_bytes(target / f"{i:09d}.{image_format}", data.getvalue())
                continue
            meta = json.dumps({"key": f"{i:09d}", "caption": caption, **labels}).encode()
            cls = str(ds.config.shapes.index(labels["shape"])).encode()
            for ext, payload in ((image_format, data.getvalue()), ("txt", caption.encode()), ("json", meta),
                                 ("cls", cls)):
                info = tarfile.TarInfo(f"{i:09d}.{ext}")
                info.size, info.mtime, info.mode = len(payload), 0, 0o644  # fixed metadata: reproducible bytes
                tar.addfile(info, io.BytesIO(payload))
    if shard:
        atomic_write_bytes(target, buf.getvalue())
    return rows


def _write(ds, out_dir, image_format, workers, progress, jobs, **info) -> list:
    """``_write_chunk`` of every job on ``workers`` processes, in order, then ``info.json``."""
    from tqdm.auto import tqdm
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    (Path(out_dir) / "images" if info["format"] == "csv" else Path(out_dir)).mkdir(parents=True, exist_ok=True)
    workers, results = min((os.cpu_count() or 1) if workers == 0 else workers, len(jobs)), []
    ctx = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None  # no Keras re-import
    with (cf.ProcessPoolExecutor(workers, mp_context=ctx) if workers > 1 else contextlib.nullcontext()) as pool, \
            tqdm(total=len(ds), desc=f"shapes {ds.split}", unit="img", disable=not progress) as bar:
        for r in (pool.map if pool else map)(_write_chunk, [(ds, *job, image_format) for job in jobs]):
            results.append(r)
            bar.update(len(r))
    meta = {"split": ds.split, "size": len(ds), "config": asdict(ds.config), **info}
    atomic_write_bytes(Path(out_dir) / "info.json", json.dumps(meta, indent=1).encode())
    return results


def write_csv(dataset: ShapesDataset, out_dir, *, image_format: str = "jpg", workers: int = 1,
              progress: bool = True) -> Path:
    """Images ``out_dir/images/NNNNNNNNN.jpg``, ``info.json`` and a tab-separated ``out_dir/<split>.csv`` with
    columns ``filepath`` (absolute), ``title`` (caption) and ``LABEL_KEYS``; ``workers=0`` uses every CPU.
    Example: ``write_csv(ShapesDataset(size=100), "/tmp/shapes")`` returns ``Path("/tmp/shapes/train.csv")``.
    """
    out = Path(out_dir).absolute()
    jobs = [(s, min(s + 256, len(dataset)), out / "images") for s in range(0, len(dataset), 256)]
    buf, path = io.StringIO(), out / f"{dataset.split}.csv"
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(("filepath", "title", *LABEL_KEYS))
    rows = _write(dataset, out, image_format, workers, progress, jobs, format="csv", files=[path.name])
    for i, (caption, labels) in enumerate(r for chunk in rows for r in chunk):
        writer.writerow((out / "images" / f"{i:09d}.{image_format}", caption,
                         *("" if labels[k] is None else labels[k] for k in LABEL_KEYS)))
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def write_webdataset(dataset: ShapesDataset, out_dir, *, shard_size: int = 1000, image_format: str = "jpg",
                     workers: int = 1, progress: bool = True) -> list[Path]:
    """img2dataset-style shards ``out_dir/00000.tar`` of ``NNNNNNNNN.jpg``, ``.txt``, ``.json``, ``.cls`` (shape
    index) and ``info.json``; byte-identical for any ``workers`` (``0`` uses every CPU). Example:
    ``write_webdataset(ShapesDataset(size=2000), "/tmp/wds")`` returns the paths of ``00000.tar`` and ``00001.tar``.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    out = Path(out_dir)
    paths = [out / f"{k:05d}.tar" for k in range(-(-len(dataset) // shard_size))]
    jobs = [(k * shard_size, min((k + 1) * shard_size, len(dataset)), p) for k, p in enumerate(paths)]
    pattern = f"{{00000..{len(paths) - 1:05d}}}.tar" if paths else ""
    _write(dataset, out, image_format, workers, progress, jobs, format="webdataset",
           files=[p.name for p in paths], pattern=pattern)
    return paths


def make_shapes(out, split: str = "train", n: int = 10000, format: str = "wds", *, config: ShapesConfig | None = None,
                shard_size: int = 1000, image_format: str = "jpg", workers: int = 1, progress: bool = True):
    """Write ``n`` samples of ``split`` to the folder ``out`` as ``"wds"`` shards or ``"csv"``; returns the path(s).
    Example: ``make_shapes("data/shapes/train", "train", 20000, "wds", workers=0)``."""
    if format not in ("wds", "csv"):
        raise ValueError(f"format must be 'wds' or 'csv', got {format!r}")
    ds, kwargs = ShapesDataset(config, split, n), dict(image_format=image_format, workers=workers, progress=progress)
    if format == "csv":
        return write_csv(ds, out, **kwargs)
    return write_webdataset(ds, out, shard_size=shard_size, **kwargs)
