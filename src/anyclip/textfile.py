"""Reading the text files a user hands over (labels, class names, captions, prompts): one entry per line.

UTF-8 with or without a byte-order mark, UTF-16 with its mark, and any line ends (``\\n``, ``\\r\\n``, ``\\r``)
are read; anything else stops with a :class:`~anyclip.errors.DataError` naming the file, the line and the fix.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.txt")
    >>> _ = open(path, "wb").write(b"\\xef\\xbb\\xbfcat\\r\\ndog\\r\\n\\r\\n")
    >>> read_text_lines(path, "--labels-file")
    ['cat', 'dog']
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from .errors import DataError

__all__ = ["decode_text", "read_text_lines"]


def decode_text(data: bytes, path: str | os.PathLike, what: str, encoding: str | None = None) -> str:
    """``data`` (the bytes of ``path``) as text: UTF-8 (BOM dropped) or UTF-16 with a BOM, else ``encoding``.

    Example:
        >>> decode_text("é".encode("utf-16"), "a.txt", "--texts-file")
        'é'
    """
    if encoding is None:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = "utf-16"
        else:
            encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except LookupError:
        raise DataError(f"{what}: unknown encoding {encoding!r} (give a Python codec name such as latin-1)") from None
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{what} {os.fspath(path)}: line {line} is not {encoding.replace('-sig', '')} text "
                        f"(byte 0x{data[e.start]:02x}); save the file as UTF-8 or name its encoding with "
                        "--encoding") from None


def read_text_lines(path: str | os.PathLike, what: str, encoding: str | None = None, *,
                    keep_blank: bool = False) -> list[str]:
    """The lines of the text file ``path``, whitespace-stripped, blank ones dropped unless ``keep_blank``.

    ``what`` names the input in error messages (an option such as ``"--labels-file"``); ``encoding`` overrides
    the UTF-8/UTF-16 detection (``"latin-1"``, ``"cp1252"``).

    Example:
        >>> read_text_lines("classnames.txt", "--classnames")  # doctest: +SKIP
        ['cat', 'dog']
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} {path}: is a folder; give a text file with one entry per line")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} {path}: no such file") from None
    except OSError as e:
        raise DataError(f"{what} {path}: cannot be read ({e.strerror or e})") from None
    if b"\x00" in data[:4096] and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) \
            and encoding is None:
        raise DataError(f"{what} {path}: is a binary file, not text; give a text file with one entry per line")
    lines = [line.strip() for line in decode_text(data, path, what, encoding).splitlines()]
    return lines if keep_blank else [line for line in lines if line]
