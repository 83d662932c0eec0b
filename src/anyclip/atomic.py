"""Atomic file writes: the data goes to a temporary file beside the target, renamed over it on success.

A reader never sees a half-written file, and an interrupted write leaves the old file (or none) in place.

Example:
    >>> from anyclip.atomic import atomic_write_text
    >>> atomic_write_text("/tmp/anyclip-example.json", "{}")  # doctest: +SKIP
    PosixPath('/tmp/anyclip-example.json')
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, then rename it to ``path`` (parents are created).

    ``suffix`` ends the temporary file's name, for writers that check it (Keras wants ``.keras``).

    Example:
        >>> atomic_write("plot.png", lambda tmp: fig.savefig(tmp, format="png"))  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes 0600 files: keep the mode of the file replaced, else the usual rw-r--r--
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        _fsync(tmp)  # the bytes reach the disk before the name does: a power cut leaves the old file or the new
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _fsync(path: str | os.PathLike) -> None:
    """Flush ``path`` (a file or a folder) to disk; folders that cannot be opened (Windows) are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically.

    Example:
        >>> atomic_write_bytes("/tmp/x.bin", b"abc")  # doctest: +SKIP
    """
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically.

    Example:
        >>> atomic_write_text("/tmp/x.json", "{}")  # doctest: +SKIP
    """
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
