"""Batched image and text encoding: the one loop behind classify, eval, embed (local and Ray) and training's evals.

Images are loaded and preprocessed (:func:`anyclip.load_image`, so the decompression-bomb guard applies),
in input order, on worker threads; an image that cannot be read is skipped and reported with its name and
the reason, never fatal. The images that loaded are encoded ``batch_size`` at a time into L2-normalised
float32 features, with a progress bar (:func:`anyclip.progress.progress_bar`). On JAX and TensorFlow a
short last batch is padded to ``batch_size`` so every batch has one compiled shape.

:func:`encode_images` covers paths, ``(name, bytes)`` pairs and shard members; :func:`encode_image_stream`
is the loop itself, for callers that decode their own way (``anyclip embed``'s worker processes,
rendered images).

Example:
    >>> feats = encode_images(model, ["a.jpg", "broken.jpg"], preprocess, batch_size=32)  # doctest: +SKIP
    >>> feats.features.shape, [(s.name, s.reason) for s in feats.skipped]  # doctest: +SKIP
    ((1, 512), [('broken.jpg', 'not an image file (format not recognised)')])
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Iterable, Sequence

import numpy as np

from .data.loader import SkippedImage, load_and_preprocess, ordered_map, source_name
from .progress import progress_bar
from .transforms.host import DEFAULT_MAX_PIXELS


@dataclasses.dataclass
class Features:
    """``features [n, d]`` float32 of the images that loaded, the input ``indices`` they came from,
    ``labels`` (labelled sets only) and the inputs that were ``skipped``.

    Example:
        >>> Features(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), []).features.shape
        (0, 4)
    """

    features: np.ndarray
    indices: np.ndarray
    skipped: list[SkippedImage]
    labels: np.ndarray | None = None


def encode_batch(encode: Callable, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """``encode(inputs, normalize=True)`` as float32 numpy; on JAX/TensorFlow a short batch is padded first.

    Example:
        >>> encode_batch(model.encode_image, pixels, batch_size=64).shape  # doctest: +SKIP
        (10, 512)
    """
    import keras
    n = len(inputs)
    if n < batch_size and keras.backend.backend() in ("jax", "tensorflow"):  # one compiled shape for every batch
        inputs = np.concatenate([inputs, np.zeros((batch_size - n,) + inputs.shape[1:], inputs.dtype)])
    out = encode(inputs, normalize=True)
    return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)[:n]


def _features(parts: list, dim: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def encode_image_stream(model, decoded: Iterable[tuple], *, batch_size: int = 64,
                        collate: Callable[[list], np.ndarray] = np.stack, bar=None) -> Features:
    """Encode a stream of decoded images: ``(name, pixels, None)`` or ``(name, None, reason)`` per input.

    The pixels that arrived are grouped ``batch_size`` at a time, turned into the model input by
    ``collate`` (default ``np.stack``) and encoded; the others are listed in ``skipped``. ``bar`` (a
    progress bar) advances by one per input.

    Example:
        >>> stream = [("a", pixels_a, None), ("b", None, "not an image file")]  # doctest: +SKIP
        >>> encode_image_stream(model, stream).indices  # doctest: +SKIP
        array([0])
    """
    _check_batch_size(batch_size)
    out, indices, skipped, pixels, pending = [], [], [], [], []

    def flush():
        out.append(encode_batch(model.encode_image, collate(pixels), batch_size))
        indices.extend(pending)
        pixels.clear()
        pending.clear()

    for index, (name, array, reason) in enumerate(decoded):
        if array is None:
            skipped.append(SkippedImage(index, name, reason))
        else:
            pixels.append(array)
            pending.append(index)
            if len(pixels) == batch_size:
                flush()
        if bar is not None:
            bar.update(1)
    if pixels:
        flush()
    return Features(_features(out, model.config.embed_dim), np.asarray(indices, np.int64), skipped)


def _own_bar(bar, total: int | None, desc: str, unit: str, progress: bool | None):
    """The caller's ``bar`` (left open), or a new :func:`progress_bar`."""
    return contextlib.nullcontext(bar) if bar is not None else progress_bar(total, desc, unit, progress)


def encode_images(model, sources: Iterable, preprocess: Callable | None = None, *, batch_size: int = 64,
                  workers: int = 4, progress: bool | None = None, total: int | None = None, desc: str = "images",
                  max_pixels: int | None = DEFAULT_MAX_PIXELS, bar=None) -> Features:
    """Normalised image features of ``sources``, in input order; unreadable images are skipped with the reason.

    ``sources``: paths, ``(name, bytes)`` pairs, or objects whose ``read()`` gives such a pair (shard
    members), consumed lazily. They are loaded and preprocessed on ``workers`` threads (0: in this
    thread); ``preprocess`` defaults to the model's eval transform. ``indices`` maps each feature row to its
    input position; ``total`` (default ``len(sources)``) sizes the progress bar.

    Example:
        >>> feats = encode_images(model, ["a.jpg", "broken.jpg"], batch_size=32)  # doctest: +SKIP
        >>> feats.features.shape, [s.name for s in feats.skipped]  # doctest: +SKIP
        ((1, 512), ['broken.jpg'])
    """
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    _check_batch_size(batch_size)
    from .transforms.host import image_transform, numpy_output
    preprocess = numpy_output(image_transform(model.preprocess_cfg) if preprocess is None else preprocess)
    if total is None and hasattr(sources, "__len__"):
        total = len(sources)

    def load(source):
        return load_and_preprocess(source, preprocess, max_pixels)

    loaded = ordered_map(sources, load, workers, window=max(2 * batch_size, 2 * workers))
    with _own_bar(bar, total, desc, "img", progress) as bar:
        return encode_image_stream(model, ((source_name(s), pixels, reason) for s, (pixels, reason) in loaded),
                                   batch_size=batch_size, bar=bar)


def encode_texts(model, tokenizer, texts: Sequence[str], *, batch_size: int = 256, progress: bool | None = None,
                 desc: str = "texts", bar=None) -> np.ndarray:
    """Normalised text features ``[len(texts), d]`` float32, in order, ``batch_size`` texts at a time.

    Example:
        >>> encode_texts(model, tokenizer, ["a cat", "a dog"]).shape  # doctest: +SKIP
        (2, 512)
    """
    _check_batch_size(batch_size)
    out = []
    with _own_bar(bar, len(texts), desc, "txt", progress) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start:start + batch_size])
            out.append(encode_batch(model.encode_text, np.asarray(tokenizer(chunk)), batch_size))
            bar.update(len(chunk))
    return _features(out, model.config.embed_dim)


__all__ = ["Features", "encode_batch", "encode_image_stream", "encode_images", "encode_texts"]
