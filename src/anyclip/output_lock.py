"""One running job per output folder: ``embed`` and ``train`` hold a lock file while they write.

The lock is an ``flock`` on ``<folder>/.anyclip.lock``, which holds the owner's pid, host, command and start
time. The kernel drops the lock when the owner ends, however it ends (kill -9 included), so a lock file left
behind is stale and taken over silently; a second job on a held folder stops with
:class:`OutputLockedError` naming the first. Locks are advisory and local: on network file systems without
working ``flock`` two hosts may both get one.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with locked_output(folder, "anyclip embed"):
    ...     locked_output(folder, "anyclip embed").__enter__()
    Traceback (most recent call last):
    ...
    anyclip.output_lock.OutputLockedError: ... is in use by `anyclip embed` (pid ...
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from pathlib import Path
from typing import Iterator

from .errors import DataError

__all__ = ["LOCK_NAME", "OutputLockedError", "locked_output"]

LOCK_NAME = ".anyclip.lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock file is still written, for information
    fcntl = None


class OutputLockedError(DataError):
    """Another running job holds the output folder; the message names it (pid, host, command, start)."""


def _describe(lock_path: Path) -> str:
    try:
        owner = json.loads(lock_path.read_text(encoding="utf-8"))
        return (f"`{owner.get('command', 'anyclip')}` (pid {owner.get('pid')} on {owner.get('host')}, "
                f"started {owner.get('started')})")
    except (OSError, ValueError, AttributeError):
        return "another anyclip job"


@contextlib.contextmanager
def locked_output(folder: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if missing) for the ``with`` block; yields the lock file's path.

    ``command`` describes this job in the message another job gets (``"anyclip embed"``).

    Example:
        >>> with locked_output("emb/", "anyclip embed"):  # doctest: +SKIP
        ...     run_the_job()
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(
                f"{folder} is in use by {_describe(lock_path)}; wait for it to finish or stop it, "
                "or write to another folder") from None
        try:  # the owner before us may have removed the file between our open and our lock: lock the new one
            if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                 "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        yield lock_path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)  # still holding the lock: nobody else can be between open and lock on this inode
        os.close(fd)
