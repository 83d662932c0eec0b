"""Writing embeddings (``.npy`` + ids sidecar, or Parquet) and error logs, atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .extra import require


def write_embeddings(path: str | os.PathLike, embeddings: np.ndarray, ids: Sequence[str],
                     metadata: Mapping[str, object]) -> Path:
    """Save ``embeddings [n, d]`` with their ids.

    ``.parquet``: columns ``id``, ``embedding`` (fixed-size list of float32) plus metadata columns.
    ``.npy``: the array, and ``<name>.ids.json`` holding the ids and metadata.

    Example:
        >>> write_embeddings("out.parquet", np.zeros((1, 4), "float32"), ["a.jpg"], {"model": "ViT-B-32"})  # doctest: +SKIP
    """
    path = Path(path)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} ids for {len(embeddings)} embeddings")
    if path.suffix == ".parquet":
        pa, pq = require("pyarrow"), require("pyarrow.parquet")
        dim = embeddings.shape[1]
        flat = pa.array(embeddings.reshape(-1), type=pa.float32())
        columns = {"id": pa.array([str(i) for i in ids], type=pa.string()),
                   "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)}
        for key, value in metadata.items():
            columns[key] = pa.array([None if value is None else str(value)] * len(ids), type=pa.string())
        table = pa.table(columns)
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    elif path.suffix == ".npy":
        def save(tmp):
            with open(tmp, "wb") as f:
                np.save(f, embeddings)
        atomic_write(path, save)
        sidecar = path.with_name(path.stem + ".ids.json")
        text = json.dumps({"ids": list(map(str, ids)), **{k: v for k, v in metadata.items()}}, ensure_ascii=False)
        atomic_write(sidecar, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    else:
        raise ValueError(f"output {path} must end in .npy or .parquet")
    return path


def write_rows_file(path: str | os.PathLike, embeddings: np.ndarray, items: Sequence, settings) -> Path:
    """One file with the rows of a shard (``id``, ``path``/``text``, ``embedding``, ``model``, ``tag``).

    ``.parquet``: all columns. ``.npy``: the array, ``<name>.meta.parquet`` with the other columns (as a
    ``--format npy`` shard; when pyarrow is installed) and ``<name>.ids.json`` (``{"ids": [path or text,
    ...]}``, for older readers and installs without pyarrow).

    Example:
        >>> write_rows_file("out.parquet", emb, ok_items, EmbedSettings(model="ViT-B-32"))  # doctest: +SKIP
    """
    from .job import _rows_table
    path = Path(path)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    ids, names = [i.id for i in items], [i.name for i in items]
    if path.suffix == ".parquet":
        pq = require("pyarrow.parquet")
        table = _rows_table(ids, names, settings, embeddings)
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        return path
    if path.suffix != ".npy":
        raise ValueError(f"output {path} must end in .npy or .parquet")
    try:  # .npy outputs work without the [embed] extra: then the ids sidecar alone
        pq = require("pyarrow.parquet")
    except ImportError:
        pq = None
    if pq is not None:
        meta = _rows_table(ids, names, settings, None)
        atomic_write(path.with_name(path.stem + ".meta.parquet"), lambda tmp: pq.write_table(meta, tmp))
    text = json.dumps({"ids": names, "model": settings.model, "tag": settings.tag, "kind": settings.kind},
                      ensure_ascii=False)
    atomic_write(path.with_name(path.stem + ".ids.json"), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    def save(tmp):
        with open(tmp, "wb") as f:
            np.save(f, embeddings)
    atomic_write(path, save)
    return path


def write_item_errors(path: str | os.PathLike, failed: Sequence) -> Path:
    """The failed ``(item, reason)`` pairs as JSON lines ``{"id", "path", "error"}`` (as a shard's errors file).

    Example:
        >>> write_item_errors("out.errors.jsonl", [(item, "cannot decode image")])  # doctest: +SKIP
    """
    text = "".join(json.dumps({"id": item.id, "path": item.name, "error": reason}, ensure_ascii=False) + "\n"
                   for item, reason in failed)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return Path(path)


def write_errors(path: str | os.PathLike, errors: Mapping[str, str]) -> Path:
    """One JSON object per line: ``{"path": ..., "error": ...}``.

    Example:
        >>> write_errors("out.errors.jsonl", {"bad.jpg": "not an image file"})  # doctest: +SKIP
    """
    path = Path(path)
    text = "".join(json.dumps({"path": p, "error": e}, ensure_ascii=False) + "\n" for p, e in errors.items())
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path
