"""Resumable, sharded embedding jobs: the engine of ``anyclip embed INPUTS -o FOLDER``.

The inputs are listed in one deterministic order (:mod:`anyclip.embed.sources`) and cut into output shards of
``shard_size`` inputs: shard ``k`` holds the inputs ``[k * shard_size, (k + 1) * shard_size)``, whatever
happened before. A shard is encoded in batches (images decoded in worker processes), then written
atomically -- ``part-00000.errors.jsonl`` (only when some of its inputs failed), ``part-00000.parquet`` (or
``part-00000.npy`` + ``part-00000.meta.parquet``) -- and only then recorded in ``manifest.json`` (atomically).
A re-run with the same arguments skips the recorded shards and redoes the others, so a job killed at any
point ends, once re-run, with exactly the files of an uninterrupted run: no row lost or written twice.
At the end ``errors.jsonl`` gathers every failed input (``id``, ``path``, ``error``) and the manifest says
``"complete": true``. A re-run with other settings or other inputs into the same folder is refused.

Rows: ``id`` (the input's position, int64), ``path`` (images; ``shard.tar:key`` for WebDataset samples) or
``text``, ``embedding`` (float32, L2-normalised), ``model``, ``tag``.

Example:
    >>> from anyclip.embed import list_inputs, run_embed_job, EmbedSettings
    >>> settings = EmbedSettings(kind="image", model="anyclip-shapes", tag="v1")
    >>> run_embed_job(list_inputs(["photos/"]), "embeddings/", settings, load=my_loader)  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, atomic_write_text
from ..encode import encode_image_stream, encode_texts
from ..progress import progress_bar
from .decode import decode_chunk, normalize
from .extra import require
from .manifest import (
    ERRORS,
    FORMATS,
    MANIFEST,
    REMOVE_FOLDER,
    EmbedJobError,
    clean_temporaries,
    finish_job,
    open_manifest,
    pending_shards,
    record_shard,
    run_stats,
    shard_files,
    shard_name,
    shard_record,
    validate_manifest,
)
from .sources import Inputs, Item

DECODE_TIMEOUT = 600  # seconds one chunk of images may take in a worker process


@dataclasses.dataclass(frozen=True)
class EmbedSettings:
    """What decides a job's output: re-running needs the same values (``workers`` is not one of them).

    Example:
        >>> EmbedSettings(kind="text", model="anyclip-shapes", tag="v1", shard_size=1000).shard_size
        1000
    """

    kind: str = "image"
    model: str = "anyclip-shapes"
    tag: str | None = None
    batch_size: int = 64
    shard_size: int = 10_000
    format: str = "parquet"
    fast: bool = False
    max_pixels: int | None = None

    def __post_init__(self):
        if self.kind not in ("image", "text"):
            raise EmbedJobError(f"kind must be 'image' or 'text', got {self.kind!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise EmbedJobError(f"--batch-size must be a positive integer, got {self.batch_size!r}")
        if not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise EmbedJobError(f"--shard-size must be a positive integer, got {self.shard_size!r}")
        if self.format not in FORMATS:
            raise EmbedJobError(f"--format must be one of {FORMATS}, got {self.format!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------- encoding

def _decode_pool(workers: int):
    if workers <= 0:
        return None
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":  # the server imports the decoder once; workers are forked from it
        ctx.set_forkserver_preload(["anyclip.embed.decode"])
    return ctx.Pool(workers)


class ShardEncoder:
    """Encodes the items of one shard: ``(embeddings [m, d], ok items, [(item, reason), ...])``.

    ``model``/``tokenizer`` come from a loader; ``pool`` (``workers`` processes, 0: in this process) decodes.

    Example:
        >>> encoder = ShardEncoder(model, tokenizer, settings, workers=4)  # doctest: +SKIP
        >>> emb, ok, errors = encoder.encode(items)  # doctest: +SKIP
    """

    def __init__(self, model, tokenizer, settings: EmbedSettings, workers: int = 0, pool=None):
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.cfg = getattr(model, "preprocess_cfg", None)
        self.workers = workers
        self.pool = pool if pool is not None else _decode_pool(workers) if settings.kind == "image" else None

    def close(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def _decoded(self, items: list[Item]):
        s = self.settings
        args = (self.cfg, s.fast, s.max_pixels)
        if self.pool is None:
            for item in items:
                yield decode_chunk([(item.ref, item.name)], *args)[0]
            return
        chunk = max(1, min(16, s.batch_size // max(self.workers, 1)))
        chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
        pending: collections.deque = collections.deque()
        window = max(4 * self.workers, 2 * -(-s.batch_size // chunk))
        for c in chunks:
            pending.append((c, self.pool.apply_async(decode_chunk, ([(i.ref, i.name) for i in c], *args))))
            if len(pending) >= window:
                yield from self._result(*pending.popleft())
        while pending:
            yield from self._result(*pending.popleft())

    def _result(self, chunk: list[Item], result):
        try:
            return result.get(timeout=DECODE_TIMEOUT)
        except multiprocessing.TimeoutError:  # a decoder that crashed its process never answers
            raise EmbedJobError(f"decoding {[i.name for i in chunk]} gave no answer in {DECODE_TIMEOUT} s (a worker "
                                f"process died?); re-run to resume, with --workers 0 to find the file") from None

    def encode(self, items: list[Item], bar=None):
        """Embed ``items``; failed inputs are returned with their reason, never raised."""
        s = self.settings
        if s.kind == "text":
            return encode_texts(self.model, self.tokenizer, [i.ref[1] for i in items], batch_size=s.batch_size,
                                bar=bar, progress=False), list(items), []
        decoded = ((item.name, pixels, reason) for item, (pixels, reason) in zip(items, self._decoded(items)))
        feats = encode_image_stream(self.model, decoded, batch_size=s.batch_size, bar=bar,
                                    collate=lambda pixels: normalize(np.stack(pixels), self.cfg))
        return feats.features, [items[i] for i in feats.indices], [(items[x.index], x.reason) for x in feats.skipped]


# ------------------------------------------------------------------------------------------------------ writing

def _rows_table(ids, names, settings: EmbedSettings, emb: np.ndarray | None):
    pa = require("pyarrow")
    n = len(ids)
    columns = {"id": pa.array(ids, type=pa.int64()),
               ("path" if settings.kind == "image" else "text"): pa.array(names, type=pa.string())}
    if emb is not None:
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), type=pa.float32()),
                                                                  emb.shape[1])
    columns["model"] = pa.array([settings.model] * n, type=pa.string())
    columns["tag"] = pa.array([settings.tag] * n, type=pa.string())
    return pa.table(columns)


def write_shard(out: Path, k: int, emb: np.ndarray, ok: list[Item], errors: list, settings: EmbedSettings) -> dict:
    """Write shard ``k``'s files atomically (errors first, the data file last); returns its manifest record.

    Example:
        >>> write_shard(Path("out"), 0, emb, ok_items, [], settings)  # doctest: +SKIP
        {'rows': 100, 'errors': 0}
    """
    pq = require("pyarrow.parquet")
    name = shard_name(k)
    if errors:
        text = "".join(json.dumps({"id": item.id, "path": item.name, "error": reason}, ensure_ascii=False) + "\n"
                       for item, reason in errors)
        atomic_write_text(out / f"{name}.errors.jsonl", text)
    else:
        (out / f"{name}.errors.jsonl").unlink(missing_ok=True)
    ids, names = [i.id for i in ok], [i.name for i in ok]
    if settings.format == "parquet":
        table = _rows_table(ids, names, settings, emb)
        atomic_write(out / f"{name}.parquet", lambda tmp: pq.write_table(table, tmp))
    else:
        table = _rows_table(ids, names, settings, None)
        atomic_write(out / f"{name}.meta.parquet", lambda tmp: pq.write_table(table, tmp))

        def save(tmp):
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(emb, dtype=np.float32))
        atomic_write(out / f"{name}.npy", save)
    return shard_record(out, k, settings.format, len(ok), len(errors))


def run_embed_job(inputs: Inputs, out: str | os.PathLike, settings: EmbedSettings, load: Callable, *,
                  workers: int = 4, progress: bool | None = None, stats: dict | None = None) -> dict:
    """Run (or resume) a job; ``load()`` gives ``(model, tokenizer)`` and is called only if work remains.

    Returns the completed manifest; ``stats`` (a dict), if given, gets :func:`run_stats` of this run.

    Example:
        >>> manifest = run_embed_job(inputs, "out/", settings, load=lambda: (model, tokenizer))  # doctest: +SKIP
        >>> manifest["num_rows"], manifest["num_errors"]  # doctest: +SKIP
        (998, 2)
    """
    require("pyarrow.parquet")  # before any work: every shard is written with it
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean_temporaries(out)
    manifest = open_manifest(out, inputs, settings)
    todo = pending_shards(out, manifest, inputs, settings)
    if todo:
        pool = _decode_pool(workers) if settings.kind == "image" else None  # forked before the model loads
        model, tokenizer = load()
        encoder = ShardEncoder(model, tokenizer, settings, workers, pool=pool)
        done = len(inputs.items) - sum(len(items) for _, items in todo)  # by a previous run: not in rate and ETA
        unit = "img" if settings.kind == "image" else "txt"
        try:
            with progress_bar(len(inputs.items), "embed", unit, progress, initial=done) as bar:
                for k, items in todo:
                    emb, ok, errors = encoder.encode(items, bar)
                    record_shard(out, manifest, k, write_shard(out, k, emb, ok, errors, settings))
        finally:
            encoder.close()
    manifest = finish_job(out, manifest)
    if stats is not None:
        stats.update(run_stats(manifest, [k for k, _ in todo]))
    return manifest


__all__ = ["ERRORS", "FORMATS", "MANIFEST", "REMOVE_FOLDER", "EmbedJobError", "EmbedSettings", "ShardEncoder",
           "clean_temporaries", "finish_job", "open_manifest", "pending_shards", "record_shard", "run_embed_job",
           "run_stats", "shard_files", "shard_name", "shard_record", "validate_manifest", "write_shard"]
