"""The exact host preprocessing path: PIL in, float32 pixels out, equal to open_clip's eval transform.

The pixels come as anyclip's layout rule says (:mod:`anyclip.models.layout`): numpy ``[H, W, 3]``, or on the
torch backend a torch ``[3, H, W]`` tensor as open_clip's; ``output="numpy"`` asks for numpy everywhere.

open_clip's eval transform (torchvision on PIL images) is, in order:

1. resize in the image's *own* mode -- ``shortest``: short side to ``size`` (square targets, torchvision
   ``Resize(int)``: long side ``int(size * long / short)``, i.e. truncated) or, for non-square targets,
   ``ResizeKeepRatio`` (``round(side / min_ratio)``, Python's round-half-even, and always **bicubic**
   whatever ``interpolation`` says); ``longest``: ``ResizeKeepRatio`` on the long side; ``squash``: both
   sides. A resize to the size the image already has is skipped. (One deliberate difference: where the
   ``longest`` mode rounds a side of a very elongated image to 0 pixels, open_clip fails inside PIL; we
   keep 1 pixel.)
2. ``shortest``: ``CenterCrop`` (offset ``int(round((side - crop) / 2))``, half-even again);
   ``longest``: centre pad with ``fill_color`` (left/top get the smaller half), then the same crop.
3. ``convert("RGB")``, ``/255`` to float32 and ``(x - mean) / std`` in float32.

:class:`Preprocess` runs the same PIL operations with the same size and rounding rules and the same
float32 arithmetic, so its output is bit-identical to open_clip's in every mode we test (``max |diff|
== 0``; the test tolerance is 1e-6), with no torch at runtime.

What each input mode becomes (identical to open_clip, because the resize runs before ``convert("RGB")``):

* ``RGB``, ``L``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: resized with the chosen filter, then converted
  with PIL's colour conversion (grey is replicated to 3 channels; CMYK uses PIL's naive formula).
* ``P`` / ``PA`` and ``1``: PIL resizes palette and bilevel images with **nearest neighbour**, whatever
  the interpolation; the ``longest`` pad of a ``P`` image uses palette *index* ``fill_color`` (not a grey
  level), and of a ``1`` image white for any non-zero ``fill_color``.
* ``RGBA`` / ``LA``: alpha is **dropped, not composited**. When a resize happens PIL resamples in
  premultiplied alpha, so fully transparent pixels come out black and semi-transparent ones darkened;
  when no resize happens (already at the target size) transparent pixels keep their stored colour.
* ``I;16``, ``I`` (16/32-bit integer) *PIL images passed in*: values are **clipped** to 0-255, not
  rescaled -- a typical 16-bit image (values up to 65535) comes out mostly white.
* ``F`` (32-bit float) *PIL images passed in*: clipped to 0-255 and truncated, not rescaled -- an ``F``
  image holding 0-1 values comes out nearly black.

Use :func:`load_image` to open files: it applies the EXIF orientation (open_clip's examples do not),
refuses decompression bombs, turns every decoding problem into an :class:`ImageLoadError` naming
the file and -- unlike open_clip, on purpose -- **rescales** 16-bit, 32-bit integer and float images to
8 bits (:func:`anyclip.transforms.depth.to_8bit`: 0..65535 -> 0..255, float 0..1 -> 0..255), so every
file anyclip opens (paths given to a transform, the CLI, embed, eval, training) keeps its grey levels.
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image, ImageOps

from ..models.layout import image_output, resolve_output
from ..models.preprocess import PreprocessConfig
from .depth import to_8bit
from .limits import DEFAULT_MAX_PIXELS

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


class ImageLoadError(ValueError):
    """An image file is missing, empty, not an image, corrupt, truncated or too large.

    The message starts with the file name (``<bytes>`` or the file object's ``name`` for in-memory input)
    and says what went wrong.

    Example:
        >>> try:
        ...     load_image(b"not an image")
        ... except ImageLoadError as e:
        ...     print(str(e).split(":")[0])
        <bytes>
    """


def load_image(source, max_pixels: int | None = DEFAULT_MAX_PIXELS, *,
               draft: Callable[[Image.Image], None] | None = None) -> Image.Image:
    """Open and fully decode an image, applying its EXIF orientation; high-bit-depth images become 8-bit.

    The mode is left as stored, except that 16-bit, 32-bit integer and float images are rescaled to an
    8-bit ``L`` image (:func:`~anyclip.transforms.depth.to_8bit`; open_clip's ``convert("RGB")`` clips them).

    ``source``: a path (``str`` / ``os.PathLike``), ``bytes``, or a binary file object (read, not
    closed). Images with more than ``max_pixels`` pixels (``None``: no limit of ours) are refused from
    their declared size, before any pixel is decoded. PIL's own global guard still applies on top
    (``PIL.Image.MAX_IMAGE_PIXELS``: refused above twice that); raise both to open larger images.
    Every failure -- missing or empty file, not an image, truncated or corrupt data, too many pixels --
    raises :class:`ImageLoadError` with the file name and the reason. This is anyclip's one image-safety
    guard: every path that decodes image files (classify, eval, embed, training) goes through it.
    ``draft(image)``, when given, runs after the size check and before the decode (to call
    ``image.draft`` for a reduced-scale JPEG decode, say).

    Example:
        >>> image = load_image("examples/images/cat.jpg")  # doctest: +SKIP
        >>> image.mode, image.size  # doctest: +SKIP
        ('RGB', (320, 240))
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        path = Path(source)
        if not path.exists():
            raise ImageLoadError(f"{name}: file not found")
        if not path.is_file():
            raise ImageLoadError(f"{name}: not a regular file")
        try:
            if path.stat().st_size == 0:
                raise ImageLoadError(f"{name}: file is empty (0 bytes)")
            with open(path, "rb") as fp:
                return _decode(fp, name, max_pixels, draft)
        except OSError as e:  # unreadable (permissions, I/O error)
            raise ImageLoadError(f"{name}: cannot read file ({type(e).__name__}: {e})") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageLoadError("<bytes>: empty input (0 bytes)")
        return _decode(io.BytesIO(source), "<bytes>", max_pixels, draft)
    if hasattr(source, "read"):
        if isinstance(source, io.TextIOBase):
            raise TypeError("load_image needs a binary file object (open the file with 'rb')")
        return _decode(source, str(getattr(source, "name", "<file object>")), max_pixels, draft)
    raise TypeError(f"load_image takes a path, bytes or a binary file object, not {type(source).__name__}")


def _decode(fp, name: str, max_pixels: int | None, draft=None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Our limit replaces PIL's warning tier; PIL's hard limit (DecompressionBombError) stays.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp)
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageLoadError(f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of "
                                     f"{max_pixels} (possible decompression bomb; pass a larger max_pixels to "
                                     f"allow it)")
            if draft is not None:
                draft(image)
            image.load()  # force the full decode: truncated / corrupt data fails here, not later
            ImageOps.exif_transpose(image, in_place=True)  # no copy when there is nothing to rotate
            image = to_8bit(image, name)  # 16-bit / float images rescaled, not clipped (open_clip clips)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{name}: refused by PIL's decompression-bomb guard ({e}); raise "
                             f"PIL.Image.MAX_IMAGE_PIXELS to allow it") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image file (format not recognised)") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 -- PIL raises OSError, SyntaxError, ValueError, EOFError, zlib.error...
        raise ImageLoadError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from None
    if image.width == 0 or image.height == 0:
        raise ImageLoadError(f"{name}: image has no pixels (size {image.size})")
    return image


def _shortest_edge_size(h: int, w: int, size: int) -> tuple[int, int]:
    # torchvision Resize(int): the short side becomes `size`, the long one int(size * long / short).
    if w <= h:
        return int(size * h / w), size
    return size, int(size * w / h)


def _keep_ratio_size(h: int, w: int, target: tuple[int, int], longest: bool) -> tuple[int, int]:
    # open_clip/timm ResizeKeepRatio (no random scale/aspect): one ratio for both sides, Python round().
    ratio_h, ratio_w = h / target[0], w / target[1]
    ratio = max(ratio_h, ratio_w) if longest else min(ratio_h, ratio_w)
    return round(h / ratio), round(w / ratio)


def resize_geometry(h: int, w: int, cfg: PreprocessConfig) -> tuple[tuple[int, int], str]:
    """``((resize_h, resize_w), interpolation)`` that open_clip's eval transform uses for an ``h x w`` image.

    After the resize, a centre crop and/or pad to ``cfg.hw`` finishes the geometry.

    Example:
        >>> resize_geometry(480, 640, PreprocessConfig(size=224))
        ((224, 298), 'bicubic')
    """
    th, tw = cfg.hw
    if cfg.resize_mode == "squash":
        return (th, tw), cfg.interpolation
    if cfg.resize_mode == "longest":
        # A very elongated image can round its short side to 0 (e.g. 1x1000 to 224), where open_clip fails
        # inside PIL; we keep one pixel row / column instead.
        rh, rw = _keep_ratio_size(h, w, (th, tw), True)
        return (max(rh, 1), max(rw, 1)), cfg.interpolation
    if th == tw:
        return _shortest_edge_size(h, w, th), cfg.interpolation
    # open_clip builds ResizeKeepRatio(image_size) here without passing the interpolation: always bicubic
    return _keep_ratio_size(h, w, (th, tw), False), "bicubic"


def crop_offsets(h: int, w: int, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, pad_top, pad_left)`` of torchvision's centre crop / open_clip's centre crop-or-pad.

    Padding first (odd remainders go to the bottom/right), then ``int(round((side - crop) / 2))``.
    """
    crop_h, crop_w = hw
    pad_top = (crop_h - h) // 2 if crop_h > h else 0
    pad_left = (crop_w - w) // 2 if crop_w > w else 0
    h, w = max(h, crop_h), max(w, crop_w)
    return int(round((h - crop_h) / 2.0)), int(round((w - crop_w) / 2.0)), pad_top, pad_left


def _resize(image: Image.Image, hw: tuple[int, int], resample) -> Image.Image:
    if (image.height, image.width) == tuple(hw):  # torchvision skips a resize to the same size
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
        if palette is not None:  # as torchvision's pad: keep the palette, fill is a palette index
            image.putpalette(palette)
        if (image.height, image.width) == (crop_h, crop_w):
            return image
    top = int(round((image.height - crop_h) / 2.0))
    left = int(round((image.width - crop_w) / 2.0))
    return image.crop((left, top, left + crop_w, top + crop_h))


class Preprocess:
    """Eval transform: PIL image (any mode), path or uint8 array -> normalised float32 pixels.

    Equal to ``open_clip.image_transform(..., is_train=False)`` on the same PIL image. ``output`` follows
    anyclip's layout rule (:mod:`anyclip.models.layout`): ``"auto"`` gives a torch ``[3, H, W]`` tensor on
    the torch backend (as open_clip) and a numpy ``[H, W, 3]`` array on the others; ``"numpy"`` /
    ``"torch"`` ask for one. A path is opened with :func:`load_image` (EXIF orientation applied); a uint8
    numpy array ``[H, W]``/``[H, W, 3]``/``[H, W, 4]`` is wrapped with ``Image.fromarray``.

    Example:
        >>> preprocess = image_transform(PreprocessConfig(size=224), output="numpy")
        >>> preprocess(Image.new("RGB", (640, 480))).shape
        (224, 224, 3)
        >>> preprocess.batch([Image.new("L", (50, 80))] * 2).shape
        (2, 224, 224, 3)
    """

    def __init__(self, cfg: PreprocessConfig, output: str = "auto"):
        self.cfg = cfg
        resolve_output(output)  # checks the value; "auto" is resolved at each call
        self.output = output
        self._mean = np.asarray(cfg.mean, dtype=np.float32)
        self._std = np.asarray(cfg.std, dtype=np.float32)

    def with_output(self, output: str) -> Preprocess:
        """The same transform giving ``output`` (``"auto"``, ``"numpy"`` or ``"torch"``)."""
        return self if output == self.output else type(self)(self.cfg, output)

    def resize_and_crop(self, image: Image.Image) -> Image.Image:
        """The geometric part (resize, crop/pad) in the image's own mode, then ``convert("RGB")``."""
        cfg = self.cfg
        hw, interpolation = resize_geometry(image.height, image.width, cfg)
        image = _resize(image, hw, _RESAMPLE[interpolation])
        if cfg.resize_mode != "squash":
            image = _center_crop_or_pad(image, cfg.hw, cfg.fill_color if cfg.resize_mode == "longest" else 0)
        return image.convert("RGB")

    def __call__(self, image):
        return image_output(self._pixels(image), self.output)

    def _pixels(self, image) -> np.ndarray:
        image = _as_pil(image)
        if image.width == 0 or image.height == 0:
            raise ImageLoadError(f"image has no pixels (size {image.size})")
        # ToTensor: uint8 -> float32, divided by 255 (a true division, as torch's div does)
        pixels = np.asarray(self.resize_and_crop(image), dtype=np.float32) / np.float32(255.0)
        return (pixels - self._mean) / self._std  # Normalize: sub then div, float32

    def batch(self, images: Iterable):
        """Preprocess several images (any mix of sizes, modes, paths) into a batch: ``[N, H, W, 3]`` numpy
        (``[N, 3, H, W]`` torch with a torch ``output``)."""
        arrays = [self._pixels(image) for image in images]
        if not arrays:
            h, w = self.cfg.hw
            return image_output(np.zeros((0, h, w, 3), np.float32), self.output)
        return image_output(np.stack(arrays), self.output)

    def __repr__(self):
        c = self.cfg
        return (f"Preprocess(size={c.size!r}, resize_mode={c.resize_mode!r}, interpolation={c.interpolation!r}, "
                f"mean={c.mean}, std={c.std}, fill_color={c.fill_color}, output={self.output!r})")


def _as_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
            raise TypeError(f"arrays must be uint8 [H, W], [H, W, 3] or [H, W, 4], got {image.dtype} {image.shape}")
        return Image.fromarray(image)
    return load_image(image)


def image_transform(cfg: PreprocessConfig | dict | None = None, output: str = "auto", **overrides) -> Preprocess:
    """The exact eval transform for ``cfg`` (a :class:`PreprocessConfig`, a dict, or keyword fields).

    ``output``: ``"auto"`` (torch ``[3, H, W]`` on the torch backend, numpy ``[H, W, 3]`` elsewhere),
    ``"numpy"`` or ``"torch"``; see :class:`Preprocess`.

    Example:
        >>> preprocess = image_transform(size=336, resize_mode="squash", output="numpy")
        >>> preprocess.cfg.hw
        (336, 336)
        >>> preprocess(Image.new("RGB", (100, 60))).shape
        (336, 336, 3)
    """
    return Preprocess(as_preprocess_config(cfg, **overrides), output)


def numpy_output(transform: Callable) -> Callable:
    """``transform`` giving numpy ``[H, W, 3]`` pixels: anyclip's transforms (``with_output``) switched to
    ``output="numpy"``, any other callable unchanged. Internal pipelines use it so the backend cannot change
    what they get.

    Example:
        >>> numpy_output(image_transform(size=32)).output
        'numpy'
    """
    with_output = getattr(transform, "with_output", None)
    return with_output("numpy") if callable(with_output) else transform


def as_preprocess_config(cfg: PreprocessConfig | dict | None = None, **overrides) -> PreprocessConfig:
    """A :class:`PreprocessConfig` from a config, a dict, or keyword fields, with ``overrides`` applied."""
    if cfg is None:
        return PreprocessConfig(**overrides)
    if isinstance(cfg, dict):
        return PreprocessConfig.from_dict({**cfg, **overrides})
    return dataclasses.replace(cfg, **overrides) if overrides else cfg
