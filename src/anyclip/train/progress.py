"""Progress of a training run as plain lines, for a stderr that is not a terminal (nohup, CI, ``| tee``).

On a terminal ``anyclip train`` draws a progress bar; elsewhere a bar is either silent or a flood of carriage
returns, so :class:`ProgressLines` writes one line at most every ``every_seconds`` instead::

    step 120/900 (13%) epoch 1/3 loss 2.7315 lr 4.98e-04 samples/s 512.3 ETA 0:02:41
"""

from __future__ import annotations

import datetime
import sys
import time
from typing import Callable


def progress_line(step: int, total: int, epoch: int, epochs: int, loss: float, lr: float, rate: float,
                  eta_seconds: float | None) -> str:
    """One progress line (``epoch`` counts from 0 as the loop does, shown from 1).

    Example:
        >>> progress_line(120, 900, 0, 3, 2.73149, 4.98e-4, 512.31, 161.4)
        'step 120/900 (13%) epoch 1/3 loss 2.7315 lr 4.98e-04 samples/s 512.3 ETA 0:02:41'
    """
    eta = "?" if eta_seconds is None else str(datetime.timedelta(seconds=round(eta_seconds)))
    return (f"step {step}/{total} ({100 * step // max(total, 1)}%) epoch {epoch + 1}/{epochs} loss {loss:.4f} "
            f"lr {lr:.2e} samples/s {rate:.1f} ETA {eta}")


class ProgressLines:
    """Write :func:`progress_line` every ``every_seconds`` (and at the last step); ``every_seconds=0``: never.

    The samples/s and ETA are measured over the steps of this process (a resumed run counts from its
    resume). ``clock`` and ``write`` are for tests.

    Example:
        >>> lines = []
        >>> progress = ProgressLines(total=10, epochs=1, every_seconds=30, write=lines.append,
        ...                          clock=iter([0.0, 31.0, 32.0]).__next__)
        >>> progress.update(step=5, epoch=0, loss=2.0, lr=1e-3, samples=40)
        >>> progress.update(step=6, epoch=0, loss=1.9, lr=1e-3, samples=8)
        >>> lines
        ['step 5/10 (50%) epoch 1/1 loss 2.0000 lr 1.00e-03 samples/s 1.3 ETA 0:00:31']
    """

    def __init__(self, total: int, epochs: int, every_seconds: float, start_step: int = 0,
                 write: Callable[[str], object] | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.epochs, self.every = total, epochs, every_seconds
        self._write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self._clock = clock
        self._start = self._last = clock()
        self._start_step, self._samples = start_step, 0

    def update(self, step: int, epoch: int, loss: float, lr: float, samples: int) -> None:
        """Count ``samples`` more and, if it is time (or the last step), write a line.

        Example:
            >>> progress.update(step=12, epoch=0, loss=2.1, lr=1e-4, samples=256)  # doctest: +SKIP
        """
        self._samples += samples
        if not self.every:
            return
        now = self._clock()
        if now - self._last < self.every and step < self.total:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        done = step - self._start_step
        eta = (self.total - step) * elapsed / done if done > 0 else None
        self._write(progress_line(step, self.total, epoch, self.epochs, loss, lr, self._samples / elapsed, eta))


__all__ = ["ProgressLines", "progress_line"]
