"""The exact host preprocessing path: PIL in, float32 ``[H, W, 3]`` out, equal to open_clip's eval transform.

open_clip's eval transform (torchvision on PIL images) is, in order: resize in the image's own mode
(``shortest``: short side to size then centre crop; ``longest``: long side to size then centre
pad with ``fill_color``; ``squash``: both sides), ``convert("RGB")``, ``/255`` and per-channel
normalisation in float32. This module performs the same PIL operations with the same size and
rounding rules, so results match to float32 round-off (tested ≤ 1e-6) without torch.

Modes: ``convert("RGB")`` happens after resizing, exactly like open_clip, so ``P`` images are resized
with nearest-neighbour (PIL's rule for palettes), ``RGBA``/``LA`` drop alpha without compositing
(transparent pixels keep their stored colour), ``I;16``/``I`` images clip to 0-255 as PIL's RGB
conversion does. Use :func:`load_image` to open files: it applies EXIF orientation and turns every
decoding problem into an :class:`ImageLoadError` naming the file.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps

from .config import PreprocessConfig

DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own decompression-bomb threshold
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


class ImageLoadError(ValueError):
    """An image file is missing, empty, not an image, corrupt, truncated or too large."""


def load_image(source, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image, applying its EXIF orientation.

    ``source``: a path, bytes, or a binary file object. Images with more than ``max_pixels`` pixels are
    refused before decoding (decompression-bomb guard). Every failure raises :class:`ImageLoadError`
    with the file name and the reason.

    Example:
        >>> image = load_image("examples/images/cat.jpg")  # doctest: +SKIP
        >>> image.mode, image.size  # doctest: +SKIP
        ('RGB', (320, 240))
    """
    name = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<bytes>")
    try:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise ImageLoadError(f"{name}: file not found")
            if path.stat().st_size == 0:
                raise ImageLoadError(f"{name}: file is empty (0 bytes)")
            fp = open(path, "rb")
        elif isinstance(source, (bytes, bytearray)):
            if not source:
                raise ImageLoadError("<bytes>: empty input")
            fp = io.BytesIO(source)
        else:
            fp = _Borrowed(source)  # the caller's file object: read it, leave it open
        with fp:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(fp.f if isinstance(fp, _Borrowed) else fp)
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageLoadError(f"{name}: {width}x{height} = {width * height} pixels exceeds the limit "
                                         f"of {max_pixels} (raise max_pixels to allow it)")
                image.load()
        image = ImageOps.exif_transpose(image)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{name}: refused as a decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image file (format not recognised)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from None
    return image


class _Borrowed:
    def __init__(self, f):
        self.f = f

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self.f

    def __exit__(self, *exc):
        return False


def _shortest_edge_size(h: int, w: int, size: int) -> tuple[int, int]:
    # torchvision's rule for Resize(int): short side -> size, long side -> int(size * long / short).
    if w <= h:
        return int(size * h / w), size
    return size, int(size * w / h)


def _keep_ratio_size(h: int, w: int, target: tuple[int, int], longest: bool) -> tuple[int, int]:
    # timm/open_clip ResizeKeepRatio without randomness.
    ratio_h, ratio_w = h / target[0], w / target[1]
    ratio = max(ratio_h, ratio_w) if longest else min(ratio_h, ratio_w)
    return round(h / ratio), round(w / ratio)


def _resize(image: Image.Image, hw: tuple[int, int], resample) -> Image.Image:
    if (image.height, image.width) == tuple(hw):
        return image
    return image.resize((hw[1], hw[0]), resample)


def _center_crop_or_pad(image: Image.Image, hw: tuple[int, int], fill: int) -> Image.Image:
    crop_h, crop_w = hw
    if crop_w > image.width or crop_h > image.height:
        pad_w, pad_h = max(crop_w - image.width, 0), max(crop_h - image.height, 0)
        border = (pad_w // 2, pad_h // 2, (pad_w + 1) // 2, (pad_h + 1) // 2)
        bands = len(image.getbands())
        color = fill if bands == 1 else (fill,) * bands
        if image.mode != "F":
            color = tuple(int(c) for c in color) if isinstance(color, tuple) else int(color)
        palette = image.getpalette() if image.mode == "P" else None
        image = ImageOps.expand(image, border=border, fill=color)
        if palette is not None:
            image.putpalette(palette)
        if (image.height, image.width) == (crop_h, crop_w):
            return image
    top = int(round((image.height - crop_h) / 2.0))
    left = int(round((image.width - crop_w) / 2.0))
    return image.crop((left, top, left + crop_w, top + crop_h))


class Preprocess:
    """Callable eval transform: PIL image (any mode) or path -> normalised float32 ``[H, W, 3]``.

    Example:
        >>> preprocess = image_transform(PreprocessConfig(size=224))
        >>> preprocess(Image.new("RGB", (640, 480))).shape
        (224, 224, 3)
    """

    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg
        self._mean = np.asarray(cfg.mean, dtype=np.float32)
        self._std = np.asarray(cfg.std, dtype=np.float32)

    def resize_and_crop(self, image: Image.Image) -> Image.Image:
        """The geometric part (resize + crop/pad), in the image's own mode, then RGB conversion."""
        cfg = self.cfg
        h, w = cfg.hw
        resample = _RESAMPLE[cfg.interpolation]
        if cfg.resize_mode == "squash":
            image = _resize(image, (h, w), resample)
        elif cfg.resize_mode == "longest":
            image = _resize(image, _keep_ratio_size(image.height, image.width, (h, w), True), resample)
            image = _center_crop_or_pad(image, (h, w), cfg.fill_color)
        else:
            if h == w:
                image = _resize(image, _shortest_edge_size(image.height, image.width, h), resample)
            else:  # open_clip uses ResizeKeepRatio with its default (bicubic) interpolation here
                size = _keep_ratio_size(image.height, image.width, (h, w), False)
                image = _resize(image, size, Image.Resampling.BICUBIC)
            image = _center_crop_or_pad(image, (h, w), 0)
        return image.convert("RGB")

    def __call__(self, image) -> np.ndarray:
        if not isinstance(image, Image.Image):
            image = load_image(image)
        if image.width == 0 or image.height == 0:
            raise ImageLoadError(f"image has no pixels (size {image.size})")
        pixels = np.asarray(self.resize_and_crop(image), dtype=np.float32) / np.float32(255.0)
        return (pixels - self._mean) / self._std

    def batch(self, images: Iterable) -> np.ndarray:
        """Stack several images into ``[batch, H, W, 3]``."""
        arrays = [self(image) for image in images]
        if not arrays:
            h, w = self.cfg.hw
            return np.zeros((0, h, w, 3), np.float32)
        return np.stack(arrays)

    def __repr__(self):
        c = self.cfg
        return (f"Preprocess(size={c.size}, resize_mode={c.resize_mode!r}, interpolation={c.interpolation!r}, "
                f"mean={c.mean}, std={c.std}, fill_color={c.fill_color})")


def image_transform(cfg: PreprocessConfig | dict | None = None, **overrides) -> Preprocess:
    """The eval transform for ``cfg`` (a :class:`PreprocessConfig`, a dict, or keyword fields).

    Example:
        >>> image_transform(size=336, resize_mode="squash").cfg.hw
        (336, 336)
    """
    if cfg is None:
        cfg = PreprocessConfig(**overrides)
    elif isinstance(cfg, dict):
        cfg = PreprocessConfig.from_dict({**cfg, **overrides})
    elif overrides:
        import dataclasses
        cfg = dataclasses.replace(cfg, **overrides)
    return Preprocess(cfg)
