"""The one progress bar of anyclip's long loops (embedding, evaluation): tqdm on stderr, quiet unless wanted."""

from __future__ import annotations

import sys


def progress_bar(total: int | None, desc: str, unit: str, progress: bool | None = None, *, initial: int = 0):
    """A tqdm bar over ``total`` items (a context manager; ``.update(n)`` as items finish).

    ``progress``: ``None`` shows it only when stderr is a terminal, ``False`` never (``--no-progress``),
    ``True`` always. ``initial`` counts items done before this run (a resumed job), so rate and ETA count
    this run's items only.

    Example:
        >>> with progress_bar(10, "images", "img", progress=False) as bar:
        ...     bar.update(10)
    """
    from tqdm.auto import tqdm
    if progress is None:
        progress = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not progress, dynamic_ncols=True,
                smoothing=0.1)


__all__ = ["progress_bar"]
