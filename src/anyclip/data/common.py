"""Shared pieces of the dataset readers: the error type, image extensions and small file helpers."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Iterator, Sequence

from ..textfile import decode_text

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
"""File extensions (lower case) read as images, torchvision's ``IMG_EXTENSIONS`` plus ``.gif``."""


class DatasetError(ValueError):
    """A dataset file, folder or entry is malformed; the message names the offending entry.

    Example:
        >>> raise DatasetError("labels.csv line 7: label 'zebra' is not one of the 10 classnames")  # doctest: +SKIP
    """


def is_image_file(name: str | os.PathLike) -> bool:
    """Whether ``name`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive).

    Example:
        >>> is_image_file("a/B.JPG"), is_image_file("notes.txt")
        (True, False)
    """
    return os.fspath(name).lower().endswith(IMAGE_EXTENSIONS)


def resolve_path(value: str, root: Path) -> Path:
    """``value`` as written when absolute, else relative to ``root`` (``~`` expanded).

    Example:
        >>> str(resolve_path("img/1.jpg", Path("/data")))
        '/data/img/1.jpg'
    """
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else root / path


def read_text_list(path: str | os.PathLike, what: str, encoding: str | None = None) -> list[tuple[int, str]]:
    """Non-blank entries of a ``.json`` list of strings or a text file (one per line), with line numbers.

    ``what`` names the content in error messages (``"classnames"``). JSON entries get their 1-based
    list position as "line". Text is UTF-8 (a byte-order mark dropped) or UTF-16 with its mark, unless
    ``encoding`` names another (see :func:`anyclip.textfile.decode_text`).

    Example:
        >>> read_text_list("classnames.txt", "classnames")  # doctest: +SKIP
        [(1, 'cat'), (2, 'dog')]
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} file not found: {path}")
    text = decode_text(path.read_bytes(), path, what, encoding)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, list):
            raise DatasetError(f"{path}: {what} JSON must be a list of strings, got {type(data).__name__}")
        for i, item in enumerate(data):
            if not isinstance(item, str):
                raise DatasetError(f"{path}: {what} entry {i + 1} is {type(item).__name__}, not a string")
        entries = [(i + 1, item.strip()) for i, item in enumerate(data)]
    else:
        entries = [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]
    entries = [(line, value) for line, value in entries if value]
    if not entries:
        raise DatasetError(f"{path}: no {what} found (the file is empty)")
    return entries


def csv_separator(path: Path, separator: str | None) -> str:
    """The separator to use: the one given (``"tab"`` or ``"\\t"`` for a tab; ``"auto"``: tab when the header line
    has one, else comma), else tab for ``.tsv``/``.tab`` files and comma otherwise.

    Example:
        >>> csv_separator(Path("a.tsv"), None), csv_separator(Path("a.csv"), "tab")
        ('\\t', '\\t')
    """
    if separator == "auto":  # tab when the header line has one (open_clip's files), else comma (open_clip_jax's)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                header = f.readline()
        except OSError:  # reading the file reports it, naming it
            return "\t"
        return "\t" if "\t" in header or "," not in header else ","
    if separator is not None:
        if separator in ("\\t", "tab"):
            return "\t"
        if len(separator) != 1:
            raise DatasetError(f"CSV separator must be one character, got {separator!r}")
        return separator
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def read_csv(path: str | os.PathLike,
             separator: str | None = None) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """``(header, rows)`` of a CSV/TSV file; ``rows`` yields ``(line_number, cells)`` and checks the cell count.

    Example:
        >>> header, rows = read_csv("labels.csv")  # doctest: +SKIP
        >>> header  # doctest: +SKIP
        ['filepath', 'label']
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CSV file not found: {path}")
    sep = csv_separator(path, separator)
    handle = open(path, newline="", encoding="utf-8-sig")
    reader = csv.reader(handle, delimiter=sep)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        handle.close()
        raise DatasetError(f"{path}: the CSV file is empty (a header row is needed)") from None
    except csv.Error as e:
        handle.close()
        raise DatasetError(f"{path} line 1: {e}") from None

    def rows():
        with handle:
            try:
                for cells in reader:
                    if not cells or all(not c.strip() for c in cells):
                        continue
                    if len(cells) != len(header):
                        raise DatasetError(f"{path} line {reader.line_num}: {len(cells)} fields, but the header "
                                           f"has {len(header)} ({sep!r}-separated; set the separator if wrong)")
                    yield reader.line_num, cells
            except csv.Error as e:
                raise DatasetError(f"{path} line {reader.line_num}: {e}") from None

    return header, rows()


def pick_column(path: Path, header: Sequence[str], given: str | None, candidates: Sequence[str], role: str,
                flag: str | None = None) -> int:
    """Index of the column named ``given``, or of the first of ``candidates`` present in ``header``.

    ``flag`` is the option that names the column (``--csv-label-key``); errors tell the user to give it.

    Example:
        >>> pick_column(Path("a.csv"), ["filepath", "label"], None, ("filepath", "path"), "image")
        0
    """
    if given is not None:
        if given not in header:
            raise DatasetError(f"{path}: no column {given!r} for the {role}; the columns are {list(header)}")
        return header.index(given)
    for name in candidates:
        if name in header:
            return header.index(name)
    raise DatasetError(f"{path}: cannot tell which column holds the {role}; the columns are {list(header)} "
                       f"(tried {list(candidates)}; name it with {flag or 'the column option'})")


IMAGE_COLUMNS = ("filepath", "image", "path", "image_path", "filename", "file", "file_name", "img")
LABEL_COLUMNS = ("label", "class", "target", "class_id", "label_id", "y")
CAPTION_COLUMNS = ("caption", "title", "text", "captions", "sentence")

DATASET_TYPES = ("imagefolder", "csv", "webdataset", "retrieval-json", "retrieval-csv")
"""The dataset layouts the readers understand (``--dataset-type`` values)."""


def csv_header(path: str | os.PathLike, separator: str | None = None) -> list[str]:
    """The header row of a CSV/TSV file (stripped cell names).

    Example:
        >>> csv_header("val.csv")  # doctest: +SKIP
        ['filepath', 'label']
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            return [h.strip() for h in next(csv.reader(f, delimiter=csv_separator(path, separator)))]
        except StopIteration:
            raise DatasetError(f"{path}: the CSV file is empty (a header row is needed)") from None


def detect_dataset_type(path: str | os.PathLike, task: str | None = None, *, separator: str | None = None,
                        label_key: str | None = None, caption_key: str | None = None) -> str:
    """Guess the layout of ``path``: one of :data:`DATASET_TYPES`, or a :class:`DatasetError` asking to name it.

    Brace patterns, ``::`` lists, ``.tar`` files and folders holding ``.tar`` files are WebDataset; other
    folders ImageFolder; ``.json`` a retrieval file; a CSV is a retrieval file when it has a caption
    column (or ``task`` is retrieval) and a labelled set when it has a label column.

    Example:
        >>> detect_dataset_type("shards/train-{000..009}.tar")
        'webdataset'
    """
    text = os.fspath(path)
    if "{" in text or "::" in text or text.endswith((".tar", ".tar.gz", ".tgz")):
        return "webdataset"
    p = Path(text)
    if p.is_dir():
        return "webdataset" if any(c.name.endswith(".tar") for c in p.iterdir()) else "imagefolder"
    if not p.exists():
        raise DatasetError(f"dataset not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".json":
        return "retrieval-json"
    if suffix in (".csv", ".tsv", ".tab"):
        if task is not None:
            return "retrieval-csv" if "retrieval" in task else "csv"
        header = csv_header(p, separator)
        captions = caption_key in header if caption_key else any(c in header for c in CAPTION_COLUMNS)
        labels = label_key in header if label_key else any(c in header for c in LABEL_COLUMNS)
        if captions != labels:
            return "retrieval-csv" if captions else "csv"
        raise DatasetError(f"{p}: cannot tell whether this CSV holds labels or captions (columns {header}); "
                           f"give the task or the dataset type")
    raise DatasetError(f"{p}: unknown dataset layout (expected a folder, .tar shards, .json or .csv); "
                       f"give the dataset type")
