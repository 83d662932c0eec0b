"""Decoding and resizing in worker processes: an input in, a uint8 ``[H, W, 3]`` crop (or the reason it failed) out.

Two host paths:

* **exact** (the default): :func:`anyclip.load_image` then the geometric part of
  :class:`anyclip.transforms.Preprocess` -- after the float32 normalisation (done on the whole batch in the
  parent, with the same arithmetic) the pixels equal open_clip's eval transform bit for bit.
* **fast** (``fast=True``): JPEGs are decoded by Pillow's *draft mode* at a reduced scale (1/2, 1/4 or 1/8,
  done inside the DCT, so most of the decode is skipped), keeping at least twice the resize target on each
  side, and the resize first ``reduce()`` s by an integer factor (``reducing_gap=3``). Output size, crop,
  EXIF rotation and mode handling are those of the exact path; only the resampling differs. Tolerance,
  checked by the tests on photos and generated JPEGs: mean ``|difference|`` of the 0-255 pixels <= 1.5 and
  cosine similarity of the image embeddings >= 0.99 against the exact path. Non-JPEG files only get the
  ``reduce`` step.

Everything a bad file can raise becomes a reason string; nothing here imports Keras.

Example:
    >>> from anyclip.transforms import PreprocessConfig
    >>> pixels, reason = decode_item(("missing", "no such sample"), "x", PreprocessConfig(size=32))
    >>> pixels, reason
    (None, 'no such sample')
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..models.preprocess import PreprocessConfig
from ..transforms.host import (
    _RESAMPLE,
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    Preprocess,
    _center_crop_or_pad,
    load_image,
    resize_geometry,
)

_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
DRAFT_MARGIN = 2  # the draft keeps at least this many times the resize target on each side


def _read_ref(ref):
    kind = ref[0]
    if kind == "missing":
        raise ImageLoadError(ref[1])
    if kind == "file":
        return ref[1]
    if kind == "tar":
        _, shard, offset, size = ref
        with open(shard, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise ImageLoadError(f"{shard}: member truncated ({len(data)} of {size} bytes)")
        return data
    raise ValueError(f"unknown input reference {ref!r}")


def _fast_load(source, cfg: PreprocessConfig, max_pixels: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`load_image` (same checks and errors) with a JPEG draft sized from the exact resize target.

    Returns the image and the full-resolution ``(height, width)`` after the EXIF rotation.
    """
    full = []

    def draft(image: Image.Image) -> None:
        width, height = image.size
        transposed = image.getexif().get(0x0112, 1) in _TRANSPOSED
        full.append((width, height) if transposed else (height, width))
        if image.format == "JPEG" and image.mode in ("RGB", "L"):
            (rh, rw), _ = resize_geometry(full[0][0], full[0][1], cfg)
            if transposed:
                rh, rw = rw, rh
            image.draft(image.mode, (rw * DRAFT_MARGIN, rh * DRAFT_MARGIN))

    image = load_image(source, max_pixels, draft=draft)
    return image, full[0]


def fast_resize_and_crop(source, cfg: PreprocessConfig, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The fast path: uint8 ``[H, W, 3]`` within the documented tolerance of the exact crop.

    Example:
        >>> fast_resize_and_crop("photo.jpg", PreprocessConfig(size=224)).shape  # doctest: +SKIP
        (224, 224, 3)
    """
    image, (height, width) = _fast_load(source, cfg, max_pixels)
    hw, interpolation = resize_geometry(height, width, cfg)  # from the full size: the exact path's geometry
    if (image.height, image.width) != tuple(hw):
        image = image.resize((hw[1], hw[0]), _RESAMPLE[interpolation], reducing_gap=3.0)
    if cfg.resize_mode != "squash":
        image = _center_crop_or_pad(image, cfg.hw, cfg.fill_color if cfg.resize_mode == "longest" else 0)
    return np.asarray(image.convert("RGB"))


def decode_item(ref: tuple, name: str, cfg: PreprocessConfig, fast: bool = False,
                max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """``(uint8 [H, W, 3], None)`` or ``(None, reason)`` for one input reference (see :class:`Item`).

    Example:
        >>> decode_item(("file", "a.jpg"), "a.jpg", PreprocessConfig(size=224))[0].shape  # doctest: +SKIP
        (224, 224, 3)
    """
    try:
        source = _read_ref(ref)
        if fast:
            return fast_resize_and_crop(source, cfg, max_pixels), None
        image = load_image(source, max_pixels=max_pixels)
        return np.asarray(Preprocess(cfg).resize_and_crop(image)), None
    except MemoryError:
        return None, "out of memory while decoding"
    except Exception as e:  # noqa: BLE001 -- a bad file is reported, never fatal
        reason = str(e) or type(e).__name__
        for prefix in (f"{name}: ", "<bytes>: ", f"{ref[1]}: "):
            if isinstance(prefix, str) and reason.startswith(prefix):
                reason = reason[len(prefix):]
        return None, reason


def decode_chunk(chunk: list, cfg: PreprocessConfig, fast: bool, max_pixels: int | None) -> list:
    """:func:`decode_item` over ``[(ref, name), ...]`` (one task of a worker process).

    Example:
        >>> decode_chunk([(("missing", "gone"), "a")], PreprocessConfig(size=32), False, None)
        [(None, 'gone')]
    """
    return [decode_item(ref, name, cfg, fast, max_pixels) for ref, name in chunk]


def normalize(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 ``[n, H, W, 3]`` to the model's float32 input, with :class:`Preprocess`'s exact arithmetic.

    Example:
        >>> normalize(np.zeros((1, 2, 2, 3), np.uint8), PreprocessConfig(size=2)).dtype
        dtype('float32')
    """
    mean, std = np.asarray(cfg.mean, np.float32), np.asarray(cfg.std, np.float32)
    return (pixels.astype(np.float32) / np.float32(255.0) - mean) / std


__all__ = ["decode_chunk", "decode_item", "fast_resize_and_crop", "normalize"]
