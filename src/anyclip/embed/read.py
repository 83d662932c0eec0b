"""Reading embeddings back (``anyclip embed`` folders and single files) for ``anyclip index``, checking them first.

A folder's ``manifest.json`` must have the shape ``embed`` writes and say the job is complete; each shard's
data files must exist and (in folders written with records) match their recorded size and sha256; then they
must parse, with as many rows as recorded. Any failure is a :class:`~anyclip.errors.DataError` naming the file
and saying what to do.

Example:
    >>> emb, rows = read_embeddings(["embeddings/"])  # doctest: +SKIP
    >>> emb.shape, rows.column_names  # doctest: +SKIP
    ((2000, 512), ['id', 'path', 'model', 'tag'])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from .extra import require
from .integrity import check_file, read_json_object
from .manifest import MANIFEST, shard_files, shard_name, validate_manifest


def _rerun(folder: Path) -> str:
    return f"re-run the `anyclip embed ... -o {folder}` command that wrote it to rewrite it"


def _parse_error(path: Path, e: Exception, fix: str) -> DataError:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return DataError(f"{path}: damaged or not an embedding file ({reason[:200]}); {fix}")


def _read_parquet(path: Path, fix: str):
    pq = require("pyarrow.parquet")
    try:
        return pq.read_table(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... on damaged files
        raise _parse_error(path, e, fix) from None


def _read_npy(path: Path, fix: str) -> np.ndarray:
    try:
        emb = np.load(path, allow_pickle=False)
    except Exception as e:  # ValueError, EOFError, OSError, ... on damaged files
        raise _parse_error(path, e, fix) from None
    if emb.ndim != 2 or emb.dtype.kind != "f":
        raise DataError(f"{path}: holds a {emb.dtype} array of shape {emb.shape}, not [n, d] float embeddings; {fix}")
    return emb


def _split_parquet(path: Path, table, fix: str):
    if "embedding" not in table.column_names:
        raise DataError(f"{path}: no 'embedding' column (not an `anyclip embed` output); {fix}")
    col = table.column("embedding")
    try:
        if hasattr(col.type, "list_size"):
            dim = col.type.list_size
        else:
            lengths = {len(v) for v in col.to_pylist() if v is not None}
            if len(lengths) > 1:
                raise ValueError(f"embeddings of different lengths {sorted(lengths)[:4]}")
            dim = lengths.pop() if lengths else 0
        flat = np.asarray(col.combine_chunks().flatten().to_numpy(zero_copy_only=False), np.float32)
        emb = flat.reshape(-1, dim) if dim > 0 else flat.reshape(len(table), 0)
    except Exception as e:
        raise _parse_error(path, e, fix) from None
    if len(emb) != len(table):
        raise DataError(f"{path}: {len(table)} rows but {len(emb)} embeddings (null embeddings?); {fix}")
    return emb, table.drop_columns(["embedding"])


def _read_file(path: Path, fix: str):
    """``(embeddings, rows table)`` of one data file (``.parquet``, or ``.npy`` with its sidecar)."""
    pa = require("pyarrow")
    if path.suffix != ".npy":
        return _split_parquet(path, _read_parquet(path, fix), fix)
    emb = _read_npy(path, fix)
    meta = path.with_name(path.name[:-4] + ".meta.parquet")
    if meta.is_file():
        table = _read_parquet(meta, fix)
    else:  # a single-file `anyclip embed -o x.npy` written before .meta.parquet: ids in the sidecar
        side_path = path.with_name(path.stem + ".ids.json")
        side = read_json_object(side_path, fix, "the ids of " + path.name)
        if not isinstance(side.get("ids"), list):
            raise DataError(f"{side_path}: no 'ids' list; {fix}")
        table = pa.table({"id": pa.array([str(i) for i in side["ids"]], type=pa.string())})
        meta = side_path
    if len(table) != len(emb):
        raise DataError(f"{meta}: {len(table)} rows for the {len(emb)} embeddings of {path.name}; {fix}")
    return emb, table


def _folder_files(folder: Path) -> list[tuple[Path, dict, dict | None]]:
    """``(data file, its shard's record, its file record)`` of each shard of an embed folder, in order."""
    path = folder / MANIFEST
    fix = f"remove {folder} and run `anyclip embed ... -o {folder}` again"
    if not path.is_file():
        raise DataError(f"{folder}: no {MANIFEST} (not an `anyclip embed` output folder); "
                        f"give the folder `anyclip embed -o` wrote")
    manifest = validate_manifest(path, read_json_object(path, fix, "an embedding manifest"), fix)
    if manifest.get("complete") is not True:
        raise DataError(f"{folder}: the embedding job is not complete; re-run the same `anyclip embed` command "
                        f"to finish it")
    fmt, out = manifest["job"]["format"], []
    for k in range(manifest["num_shards"]):
        record = manifest["shards"].get(shard_name(k))
        if record is None:
            raise DataError(f"{path}: no record of shard {shard_name(k)} in a complete job (damaged manifest); {fix}")
        for f in shard_files(folder, k, fmt):
            out.append((f, record, record.get("files", {}).get(f.name)))
    return out


def read_embeddings(sources: Sequence[str | os.PathLike]):
    """``(embeddings [n, d] float32, rows)`` from embedding folders (``anyclip embed -o DIR``) or files.

    ``rows`` is a pyarrow table of the non-embedding columns (``id``, ``path`` or ``text``, ``model``, ``tag``).

    Example:
        >>> emb, rows = read_embeddings(["embeddings/"])  # doctest: +SKIP
    """
    pa = require("pyarrow")
    arrays, tables = [], []
    for source in map(Path, sources):
        if source.is_dir():
            entries = _folder_files(source)
            for f, _, file_rec in entries:  # every file checked before any is parsed
                check_file(f, file_rec, _rerun(source))
            for f, record, _ in entries:
                if f.name.endswith(".meta.parquet"):
                    continue  # read with its .npy
                emb, table = _read_file(f, _rerun(source))
                if len(emb) != record["rows"]:
                    raise DataError(f"{f}: {len(emb)} rows, the manifest says {record['rows']}; {_rerun(source)}")
                arrays.append(np.asarray(emb, np.float32))
                tables.append(table)
        else:
            fix = "write it again with `anyclip embed ... -o FILE`"
            if source.suffix not in (".npy", ".parquet"):
                raise DataError(f"{source}: not an embedding folder, .npy or .parquet file; give what "
                                f"`anyclip embed -o` wrote")
            check_file(source, None, "give a folder or file that `anyclip embed -o` wrote")
            emb, table = _read_file(source, fix)
            arrays.append(np.asarray(emb, np.float32))
            tables.append(table)
    if not arrays or sum(len(a) for a in arrays) == 0:
        raise DataError(f"no embeddings in {[os.fspath(s) for s in sources]}; embed some inputs first")
    dims = {a.shape[1] for a in arrays if len(a)}
    if len(dims) != 1:
        raise DataError(f"embeddings of different sizes {sorted(dims)} cannot share one index (different models?); "
                        "index each model's embeddings separately")
    try:
        rows = pa.concat_tables(tables, promote_options="default")
    except Exception as e:  # columns of clashing types
        raise DataError(f"the embeddings' row columns do not fit together ({e}); index them separately") from None
    return np.concatenate(arrays), rows


__all__ = ["read_embeddings"]
