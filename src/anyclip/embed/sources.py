"""What ``anyclip embed`` reads, listed up front in one deterministic order.

Inputs (any mix, in the order given):

* a **folder**: every file with an image extension (:data:`anyclip.data.IMAGE_EXTENSIONS`) below it,
  hidden files and folders left out, sorted by path; other files are ignored (and counted);
* a **CSV/TSV** or **Parquet** file: one input per row, in row order, from the column ``column`` (default:
  the first of ``filepath``, ``image``, ``path``... for images, ``caption``, ``title``, ``text``... for
  texts); relative paths are taken from the file's folder;
* **WebDataset** shards (``.tar``, a brace pattern ``shard-{000..009}.tar``, patterns joined by ``::``):
  one input per sample (the first member with an image extension), in shard and member order; a sample
  with no image member is an input that fails (it goes to the errors file);
* an **image file** (any other path); for texts, a ``.txt`` file gives one text per line.

Each input becomes an :class:`Item`: its position (the ``id`` of its output row), its name (the ``path``
column: a path, ``shard.tar:key``, or the text itself) and what a worker needs to read it.

Example:
    >>> items = list_inputs(["photos/"], kind="image")  # doctest: +SKIP
    >>> items[0].id, items[0].name  # doctest: +SKIP
    (0, 'photos/a.jpg')
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

from ..data.common import (
    CAPTION_COLUMNS,
    IMAGE_COLUMNS,
    DatasetError,
    is_image_file,
    pick_column,
    read_csv,
)
from ..textfile import decode_text
from .extra import require

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet")


@dataclasses.dataclass(frozen=True)
class Item:
    """One input: ``id`` (its position), ``name`` (path, ``shard:key`` or text) and ``ref``: ``("file", path)``,
    ``("tar", shard, offset, size)``, ``("missing", reason)`` or ``("text", text)``.

    Example:
        >>> Item(0, "a.jpg", ("file", "a.jpg")).name
        'a.jpg'
    """

    id: int
    name: str
    ref: tuple


@dataclasses.dataclass
class Inputs:
    """The listed items, and how many files the folder walk ignored (no image extension).

    Example:
        >>> Inputs([Item(0, "a", ("text", "a"))]).fingerprint()[:8]  # doctest: +SKIP
    """

    items: list[Item]
    ignored: int = 0

    @classmethod
    def concat(cls, parts: Sequence[Inputs]) -> Inputs:
        """One list of several, renumbered in order."""
        items = [item for part in parts for item in part.items]
        return cls([Item(i, item.name, item.ref) for i, item in enumerate(items)], sum(p.ignored for p in parts))

    def fingerprint(self) -> str:
        """A hash of the names in order: a re-run over changed inputs is refused with it."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(item.name.encode("utf-8", "surrogatepass") + b"\0")
        return h.hexdigest()


def _is_wds(spec: str) -> bool:
    return "{" in spec or "::" in spec or spec.endswith(".tar")


def list_inputs(specs: Sequence[str], kind: str = "image", column: str | None = None,
                separator: str | None = None, encoding: str | None = None) -> Inputs:
    """List every input of ``specs`` in order (see the module docstring); ``kind`` is ``image`` or ``text``.

    ``encoding`` is that of ``.txt`` text files (default: UTF-8, or UTF-16 with a byte-order mark).

    Example:
        >>> [i.name for i in list_inputs(["a cat", "a dog"], kind="text-literal").items]
        ['a cat', 'a dog']
    """
    names: list[tuple[str, tuple]] = []
    ignored = 0
    for spec in specs:
        spec = os.fspath(spec)
        if kind == "text-literal":
            names.append((spec, ("text", spec)))
        elif kind == "text":
            names.extend(_text_rows(spec, column, separator, encoding))
        elif os.path.isdir(spec) and not any(p.endswith(".tar") for p in os.listdir(spec)):
            files, skipped = _walk_images(spec)
            ignored += skipped
            names.extend((f, ("file", f)) for f in files)
        elif _is_wds(spec) or os.path.isdir(spec):
            names.extend(_wds_samples(spec))
        elif spec.lower().endswith(TABLE_SUFFIXES):
            names.extend(_table_paths(spec, column, separator))
        elif not os.path.exists(spec):
            raise DatasetError(f"input not found: {spec} (no such file or folder); give image files, folders, "
                               "CSV/Parquet lists or .tar shards")
        else:
            names.append((spec, ("file", spec)))
    return Inputs([Item(i, name, ref) for i, (name, ref) in enumerate(names)], ignored)


def _walk_images(root: str) -> tuple[list[str], int]:
    files, ignored = [], 0
    for folder, dirs, filenames in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if is_image_file(name):
                files.append(os.path.join(folder, name))
            else:
                ignored += 1
    return sorted(files, key=lambda f: os.path.relpath(f, root).split(os.sep)), ignored


def _table_column(spec: str, column: str | None, candidates, role: str, separator: str | None) -> list[str]:
    path = Path(spec)
    if not path.is_file():
        raise DatasetError(f"input file not found: {spec}")
    if path.suffix.lower() == ".parquet":
        pq = require("pyarrow.parquet")
        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 -- pyarrow raises several types for a bad file
            raise DatasetError(f"{spec}: cannot read the Parquet file ({e})") from None
        index = pick_column(path, table.column_names, column, candidates, role, "--column")
        return ["" if v is None else str(v) for v in table.column(index).to_pylist()]
    header, rows = read_csv(path, separator)
    index = pick_column(path, header, column, candidates, role, "--column")
    return [cells[index] for _, cells in rows]


def _table_paths(spec: str, column: str | None, separator: str | None):
    root = Path(spec).parent
    for value in _table_column(spec, column, IMAGE_COLUMNS, "image path", separator):
        value = value.strip()
        if not value:
            yield "<empty path>", ("missing", f"{spec}: empty image path")
            continue
        path = Path(os.path.expanduser(value))
        path = path if path.is_absolute() else root / path
        yield str(path), ("file", str(path))


def _text_rows(spec: str, column: str | None, separator: str | None, encoding: str | None = None):
    if spec.lower().endswith(TABLE_SUFFIXES):
        for text in _table_column(spec, column, CAPTION_COLUMNS, "text", separator):
            yield text, ("text", text)
        return
    path = Path(spec)
    if not path.is_file():
        raise DatasetError(f"text file not found: {spec}")
    for line in decode_text(path.read_bytes(), path, "text file", encoding).splitlines():
        yield line, ("text", line)


def _wds_samples(spec: str):
    if os.path.isfile(spec):
        shards = [spec]
    else:  # a folder of shards, or brace / glob patterns (braceexpand)
        from ..data.labelled import expand_shards
        shards = expand_shards(spec, suffixes=(".tar",))
    for shard in shards:
        yield from _shard_index(shard)


def _shard_index(shard: str):
    """``(name, ref)`` per sample from the tar headers only (members are read later by offset)."""
    def finish(key, members):
        name = f"{shard}:{key}"
        image = next(((ext, m) for ext, m in members if is_image_file("x." + ext)), None)
        if image is None:
            return name, ("missing", f"sample has no image member (members: {sorted(e for e, _ in members)})")
        return name, ("tar", shard, image[1].offset_data, image[1].size)

    try:
        with tarfile.open(shard, "r:") as tar:
            key, members = None, []
            for member in tar:
                base = os.path.basename(member.name)
                if not member.isfile() or base.startswith(("__", ".")):
                    continue
                folder, _, base = member.name.rpartition("/")
                stem, _, ext = base.partition(".")
                k = f"{folder}/{stem}" if folder else stem
                if k != key and members:
                    yield finish(key, members)
                    members = []
                key = k
                members.append((ext.lower(), member))
            if members:
                yield finish(key, members)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetError(f"{shard}: cannot read the tar shard ({type(e).__name__}: {e}); shards must be "
                           f"uncompressed .tar files") from None


__all__ = ["Inputs", "Item", "list_inputs"]
