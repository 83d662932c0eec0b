"""Ordered, parallel image decoding and preprocessing in batches, with a progress bar.

:func:`iter_image_batches` reads images with :func:`anyclip.load_image` and runs the eval transform on a
thread pool (PIL releases the GIL while it decodes and resizes), keeping a bounded number of images in
flight, and yields them in input order, ``batch_size`` inputs at a time. An image that cannot be read or
decoded never stops the run: it is left out of its batch and reported as a :class:`SkippedImage` with
its name and the reason, so the caller can count it.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np

from ..progress import progress_bar
from ..transforms.host import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    load_image,
    numpy_output,
)


@dataclasses.dataclass(frozen=True)
class SkippedImage:
    """An input image that could not be used: its position in the input, its name, and why.

    Example:
        >>> SkippedImage(3, "cats/broken.jpg", "cannot decode image").to_dict()
        {'index': 3, 'file': 'cats/broken.jpg', 'reason': 'cannot decode image'}
    """

    index: int
    name: str
    reason: str

    def to_dict(self) -> dict:
        return {"index": self.index, "file": self.name, "reason": self.reason}


@dataclasses.dataclass
class ImageBatch:
    """``pixels [n, H, W, 3]`` float32 of the images that loaded, their input positions ``indices [n]``,
    and the inputs of this batch that were skipped."""

    pixels: np.ndarray
    indices: np.ndarray
    skipped: list[SkippedImage]


def source_name(source) -> str:
    """A printable name for an image source: the path, or the name of a ``(name, data)`` pair.

    Example:
        >>> source_name(("shard-000.tar:0001", b"...")), source_name("a/b.jpg")
        ('shard-000.tar:0001', 'a/b.jpg')
    """
    if isinstance(source, tuple):
        return str(source[0])
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(getattr(source, "label", None), str):  # a lazily read source such as a shard member
        return source.label
    return f"<{type(source).__name__}>"


def load_and_preprocess(source, preprocess: Callable, max_pixels: int | None):
    """``(pixels, None)`` or ``(None, reason)``: errors an image file can cause become a reason.

    Example:
        >>> load_and_preprocess("missing.jpg", preprocess, None)  # doctest: +SKIP
        (None, 'file not found')
    """
    name = source_name(source)
    if callable(getattr(source, "read", None)) and not isinstance(source, (str, os.PathLike)):
        try:  # a shard member: its bytes are read here, on the worker thread
            source = source.read()
        except OSError as e:
            return None, f"cannot read: {e}"
    data = source[1] if isinstance(source, tuple) else source
    try:
        return np.asarray(preprocess(load_image(data, max_pixels=max_pixels)), dtype=np.float32), None
    except (ImageLoadError, OSError, ValueError) as e:  # a bad file, not a bug: report it, keep going
        reason = str(e)
        for prefix in (f"{name}: ", "<bytes>: "):
            if reason.startswith(prefix):
                reason = reason[len(prefix):]
        return None, reason or type(e).__name__


def ordered_map(sources: Iterable, fn: Callable, workers: int, window: int) -> Iterator[tuple]:
    """``(source, fn(source))`` in input order, at most ``window`` submitted ahead on ``workers`` threads.

    Example:
        >>> [r for _, r in ordered_map(range(4), lambda x: x * x, workers=2, window=4)]
        [0, 1, 4, 9]
    """
    if workers <= 0:
        for source in sources:
            yield source, fn(source)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anyclip-images")
    pending: collections.deque = collections.deque()
    try:
        for source in sources:
            pending.append((source, pool.submit(fn, source)))
            if len(pending) >= window:
                source, future = pending.popleft()
                yield source, future.result()
        while pending:
            source, future = pending.popleft()
            yield source, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def iter_image_batches(sources: Iterable, preprocess: Callable, *, batch_size: int = 64, workers: int = 4,
                       progress: bool | None = None, total: int | None = None, desc: str = "images",
                       max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[ImageBatch]:
    """Decode and preprocess images in parallel; yield :class:`ImageBatch` es in input order.

    ``sources``: an iterable (consumed lazily, so a stream of shard members works) of paths,
    ``(name, bytes)`` pairs, or objects whose ``read()`` gives such a pair, like a training set's shard
    members (read on the worker threads). Each batch covers the next ``batch_size`` inputs; images that
    fail to load are left out of ``pixels`` and listed in ``skipped``. ``workers=0`` decodes in the calling
    thread. ``total`` (default ``len(sources)`` when it has one) sizes the progress bar.

    Example:
        >>> from anyclip.transforms import image_transform
        >>> preprocess = image_transform(size=224)
        >>> for batch in iter_image_batches(["a.jpg", "b.png"], preprocess, batch_size=32):  # doctest: +SKIP
        ...     features = model.encode_image(batch.pixels)
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    if total is None and hasattr(sources, "__len__"):
        total = len(sources)
    window = max(2 * batch_size, 2 * workers)
    preprocess = numpy_output(preprocess)

    def fn(source):
        return load_and_preprocess(source, preprocess, max_pixels)

    with progress_bar(total, desc, "img", progress) as bar:
        arrays, indices, skipped, seen = [], [], [], 0
        for index, (source, (pixels, reason)) in enumerate(ordered_map(sources, fn, workers, window)):
            if pixels is None:
                skipped.append(SkippedImage(index, source_name(source), reason))
            else:
                arrays.append(pixels)
                indices.append(index)
            seen += 1
            if seen == batch_size:
                yield _batch(arrays, indices, skipped, preprocess)
                bar.update(seen)
                arrays, indices, skipped, seen = [], [], [], 0
        if seen:
            yield _batch(arrays, indices, skipped, preprocess)
            bar.update(seen)


def _batch(arrays, indices, skipped, preprocess) -> ImageBatch:
    if arrays:
        pixels = np.stack(arrays)
    else:
        hw = getattr(getattr(preprocess, "cfg", None), "hw", (0, 0))
        pixels = np.zeros((0, hw[0], hw[1], 3), np.float32)
    return ImageBatch(pixels, np.asarray(indices, dtype=np.int64), list(skipped))


__all__ = ["ImageBatch", "SkippedImage", "iter_image_batches", "load_and_preprocess", "ordered_map", "progress_bar",
           "source_name"]
