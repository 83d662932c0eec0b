"""Dynamic batching: concurrent requests packed into model batches, one model call at a time.

A :class:`Batcher` owns a bounded asyncio queue and one worker task. The worker takes the first waiting
item, then gathers more until ``max_batch_size`` items or ``max_wait_ms`` have passed, drops the items
whose caller stopped waiting (its request was cancelled: the client disconnected, or it timed out), pads the batch to a power-of-two bucket (so a
compiled encoder sees a handful of shapes, all compiled by :meth:`Batcher.warm_up`) and runs the encoder
on a single worker thread. ``max_batch_size=1`` turns batching off.

Example:
    >>> import asyncio, numpy as np
    >>> async def demo():
    ...     batcher = Batcher(lambda x: x * 2, max_batch_size=4, max_wait_ms=5)
    ...     await batcher.start()
    ...     out = await asyncio.gather(*(batcher.submit(np.full(2, i, np.float32)) for i in range(3)))
    ...     await batcher.stop()
    ...     return [o.tolist() for o in out]
    >>> asyncio.run(demo())
    [[0.0, 0.0], [2.0, 2.0], [4.0, 4.0]]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from typing import Callable

import numpy as np


class QueueFullError(RuntimeError):
    """The batcher's queue holds ``max_queue`` items already: answer 503 and ask the client to retry."""


def bucket_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The padded batch sizes: powers of two below ``max_batch_size``, and ``max_batch_size`` itself.

    Example:
        >>> bucket_sizes(24), bucket_sizes(1)
        ((1, 2, 4, 8, 16, 24), (1,))
    """
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return tuple(sizes) + (max_batch_size,)


def bucket_for(n: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds ``n`` items.

    Example:
        >>> bucket_for(5, (1, 2, 4, 8))
        8
    """
    return next(b for b in buckets if b >= n)


@dataclasses.dataclass(eq=False)  # compared by identity
class _Item:
    array: np.ndarray
    future: asyncio.Future


class Batcher:
    """Packs single inputs into batches for ``encode(batch [b, ...]) -> [b, d]`` (see the module docstring).

    ``on_batch(name, real_size)`` and ``on_queue(name, depth)`` report to metrics; ``on_drop(name)`` counts
    the items dropped unencoded because their caller stopped waiting.
    """

    def __init__(self, encode: Callable[[np.ndarray], np.ndarray], *, max_batch_size: int = 32,
                 max_wait_ms: float = 5.0, max_queue: int = 1024, name: str = "encoder",
                 on_batch: Callable[[str, int], None] | None = None,
                 on_queue: Callable[[str, int], None] | None = None,
                 on_drop: Callable[[str], None] | None = None,
                 executor: concurrent.futures.Executor | None = None):
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1 and max_wait_ms >= 0")
        self.encode, self.name = encode, name
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_ms / 1000.0, max_queue
        self.buckets = bucket_sizes(max_batch_size)
        self.on_batch, self.on_queue, self.on_drop = on_batch, on_queue, on_drop
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"anyclip-{name}")
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Items waiting now."""
        return self._queue.qsize() if self._queue is not None else 0

    def warm_up(self, example: np.ndarray) -> None:
        """Run the encoder once per bucket size on copies of ``example`` (compiles every shape; blocking)."""
        for size in self.buckets:
            self.encode(np.repeat(example[None], size, axis=0))

    async def start(self) -> None:
        """Create the queue and the worker on the running event loop (one loop at a time)."""
        if self._worker is not None:
            raise RuntimeError(f"the {self.name} batcher is running already; stop() it first")
        self._queue = asyncio.Queue(self.max_queue)
        self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"anyclip-{self.name}-batcher")

    async def stop(self) -> None:
        """Stop the worker; waiting callers get ``CancelledError``."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait().future.cancel()

    async def submit(self, array: np.ndarray) -> np.ndarray:
        """The encoder's output row for ``array``; :class:`QueueFullError` when the queue is full.

        Cancelling the caller (a client that disconnected) before its batch runs drops the item unencoded.
        """
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Item(array, future))
        except asyncio.QueueFull:
            raise QueueFullError(f"the {self.name} queue is full ({self.max_queue} waiting)") from None
        self._report_queue()
        return await future

    def _report_queue(self) -> None:
        if self.on_queue is not None:
            self.on_queue(self.name, self.depth)

    async def _gather(self) -> list[_Item]:
        items = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(items) < self.max_batch_size:
            try:
                items.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather()
            self._report_queue()
            wanted = [item for item in items if not item.future.done()]
            if self.on_drop is not None:
                for _ in range(len(items) - len(wanted)):  # their callers stopped waiting: nobody reads these
                    self.on_drop(self.name)
            if not wanted:
                continue
            batch = np.stack([item.array for item in wanted])
            size = bucket_for(len(wanted), self.buckets)
            if size > len(wanted):
                batch = np.concatenate([batch, np.repeat(batch[-1:], size - len(wanted), axis=0)])
            if self.on_batch is not None:
                self.on_batch(self.name, len(wanted))
            try:
                out = await loop.run_in_executor(self._executor, self.encode, batch)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 -- handed to every caller of this batch
                for item in wanted:
                    if not item.future.done():
                        item.future.set_exception(e)
                continue
            for row, item in zip(out, wanted):
                if not item.future.done():
                    item.future.set_result(row)


__all__ = ["Batcher", "QueueFullError", "bucket_for", "bucket_sizes"]
