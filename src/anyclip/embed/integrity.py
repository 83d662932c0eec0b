"""Sizes and sha256 of written files, checked before a reader parses them; damage becomes one-line DataErrors.

``anyclip embed`` records each shard's data files in ``manifest.json`` and ``anyclip index`` records its files
in ``index.json`` (``{"name": {"bytes": n, "sha256": hex}}``). Readers compare before parsing, so damage is
found even where the damaged bytes still parse. Folders written before the records existed still read: their
files are only parsed (with the parse errors turned into :class:`~anyclip.errors.DataError` too).

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = path.write_bytes(b"abc")
    >>> record = file_record(path)
    >>> record["bytes"], record["sha256"][:8]
    (3, 'ba7816bf')
    >>> check_file(path, record, "rewrite it")
    >>> _ = path.write_bytes(b"abd")
    >>> check_file(path, record, "rewrite it")
    Traceback (most recent call last):
    ...
    anyclip.errors.DataError: ...a.bin: damaged (its sha256 differs from the one recorded when it was written); rewrite it
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DataError
from ..weights.checkpoint import file_sha256


def file_record(path: str | os.PathLike) -> dict:
    """``{"bytes": size, "sha256": hex digest}`` of the file at ``path``.

    Example:
        >>> file_record("emb/part-00000.parquet")  # doctest: +SKIP
        {'bytes': 2048, 'sha256': '9f86d0...'}
    """
    return {"bytes": os.path.getsize(path), "sha256": file_sha256(path)}


def file_matches(path: Path, record: dict | None) -> bool:
    """Whether ``path`` exists and (when ``record`` has them) has the recorded size and sha256.

    Example:
        >>> file_matches(Path("emb/part-00000.parquet"), {"bytes": 2048, "sha256": "..."})  # doctest: +SKIP
        True
    """
    try:
        check_file(path, record, "")
    except DataError:
        return False
    return True


def check_file(path: Path, record: dict | None, fix: str) -> None:
    """Raise :class:`DataError` (naming ``path`` and ending with ``fix``) if it is missing or differs from ``record``.

    ``record`` ``None`` (a folder written before records existed): only existence is checked.

    Example:
        >>> check_file(Path("idx/index.faiss"), info["files"]["index.faiss"], "rebuild it with `anyclip index`")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing; {fix}")
    if not record:
        return
    if not isinstance(record, dict) or not isinstance(record.get("bytes"), int):
        raise DataError(f"{path}: its size/sha256 record is damaged; {fix}")
    size = path.stat().st_size
    if size != record["bytes"]:
        what = "truncated" if size < record["bytes"] else "longer than written"
        raise DataError(f"{path}: damaged ({what}: {size} bytes, {record['bytes']} when written); {fix}")
    if record.get("sha256") and file_record(path)["sha256"] != record["sha256"]:
        raise DataError(f"{path}: damaged (its sha256 differs from the one recorded when it was written); {fix}")


def read_json_object(path: Path, fix: str, what: str) -> dict:
    """The JSON object in ``path``; :class:`DataError` naming it if missing, unreadable, invalid or not an object.

    Example:
        >>> read_json_object(Path("emb/manifest.json"), "re-run `anyclip embed`", "an embedding manifest")  # doctest: +SKIP
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: missing; {fix}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e}); {fix}") from None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e}); {fix}") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: holds a JSON {type(value).__name__}, not {what}; {fix}")
    return value


__all__ = ["check_file", "file_matches", "file_record", "read_json_object"]
