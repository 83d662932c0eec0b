"""The training transform: open_clip's RandomResizedCrop recipe on PIL, with reproducible randomness.

open_clip's train transform is ``RandomResizedCrop(size, scale=(0.9, 1.0), bicubic)`` -> RGB ->
optional colour jitter / grayscale -> ToTensor -> Normalize. :class:`TrainTransform` does the same: the
crop box follows torchvision's sampling rule (10 tries of a log-uniform aspect ratio and a uniform area,
then a centred fallback), and for a given box the pixels equal torchvision's ``resized_crop`` exactly.
The random draws come from a numpy ``Generator``: pass ``rng`` per call (e.g. seeded from the sample
index and epoch) to make a data pipeline's augmentation independent of worker count and order.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
from PIL import Image, ImageEnhance

from ..models.layout import image_output, resolve_output
from ..models.preprocess import PreprocessConfig
from .host import ImageLoadError, _as_pil, as_preprocess_config

_BICUBIC = Image.Resampling.BICUBIC


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """open_clip's ``AugmentationCfg`` fields that the PIL pipeline supports.

    ``color_jitter``: (brightness, contrast, saturation, hue) strengths, applied with probability
    ``color_jitter_prob``; ``gray_scale_prob``: probability of a 3-channel grayscale image.
    """

    scale: tuple[float, float] = (0.9, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    color_jitter: tuple[float, float, float, float] | None = None
    color_jitter_prob: float = 0.0
    gray_scale_prob: float = 0.0

    def __post_init__(self):
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")
        for name in ("color_jitter_prob", "gray_scale_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.color_jitter_prob and (self.color_jitter is None or len(self.color_jitter) != 4):
            raise ValueError("color_jitter_prob needs color_jitter=(brightness, contrast, saturation, hue)")
        if self.color_jitter is not None and not 0 <= self.color_jitter[3] <= 0.5:
            raise ValueError(f"hue jitter must be in [0, 0.5], got {self.color_jitter[3]}")


def crop_box(width: int, height: int, scale, ratio, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a random crop, by torchvision's ``RandomResizedCrop.get_params`` rule.

    Example:
        >>> crop_box(640, 480, (0.9, 1.0), (3 / 4, 4 / 3), np.random.default_rng(0))  # doctest: +SKIP
        (6, 21, 468, 603)
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height  # fallback: the largest centred crop within the ratio range
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int]) -> Image.Image:
    """Crop ``box`` = (top, left, height, width) and resize to ``size`` = (H, W), bicubic (torchvision's order)."""
    top, left, h, w = box
    return image.crop((left, top, left + w, top + h)).resize((size[1], size[0]), _BICUBIC)


def _jitter(image: Image.Image, strengths, rng: np.random.Generator) -> Image.Image:
    """torchvision ``ColorJitter`` semantics: factors drawn uniformly around 1, applied in random order."""
    brightness, contrast, saturation, hue = strengths
    ops = []
    for strength, enhance in ((brightness, ImageEnhance.Brightness), (contrast, ImageEnhance.Contrast),
                              (saturation, ImageEnhance.Color)):
        if strength:
            factor = rng.uniform(max(0.0, 1 - strength), 1 + strength)
            ops.append(lambda im, e=enhance, f=factor: e(im).enhance(f))
    if hue:
        shift = rng.uniform(-hue, hue)
        ops.append(lambda im, s=shift: _shift_hue(im, s))
    for i in rng.permutation(len(ops)):
        image = ops[i](image)
    return image


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    h, s, v = image.convert("HSV").split()
    h = Image.fromarray((np.asarray(h, dtype=np.uint8) + np.uint8(int(round(shift * 255)) % 256)).astype(np.uint8))
    return Image.merge("HSV", (h, s, v)).convert("RGB")


class TrainTransform:
    """Train transform: PIL image (any mode), path or uint8 array -> augmented float32 pixels.

    ``seed`` seeds the transform's own generator; ``rng`` in a call overrides it for that image. ``output``
    as :class:`~anyclip.transforms.Preprocess`: ``"auto"`` gives torch ``[3, H, W]`` on the torch backend and
    numpy ``[H, W, 3]`` elsewhere; ``"numpy"`` / ``"torch"`` ask for one.

    Example:
        >>> transform = TrainTransform(PreprocessConfig(size=224), seed=0, output="numpy")
        >>> transform(Image.new("RGB", (640, 480))).shape
        (224, 224, 3)
        >>> transform(Image.new("RGB", (640, 480)), rng=np.random.default_rng([7, 0])).shape
        (224, 224, 3)
    """

    def __init__(self, cfg: PreprocessConfig, augment: AugmentConfig | None = None, seed: int | None = None,
                 output: str = "auto"):
        self.cfg, self.augment = cfg, augment or AugmentConfig()
        resolve_output(output)  # checks the value; "auto" is resolved at each call
        self.output = output
        self._rng = np.random.default_rng(seed)
        self._mean = np.asarray(cfg.mean, dtype=np.float32)
        self._std = np.asarray(cfg.std, dtype=np.float32)

    def with_output(self, output: str) -> TrainTransform:
        """This transform (same generator) giving ``output`` (``"auto"``, ``"numpy"`` or ``"torch"``)."""
        if output == self.output:
            return self
        other = copy.copy(self)
        resolve_output(output)
        other.output = output
        return other

    def __call__(self, image, rng: np.random.Generator | None = None):
        rng = self._rng if rng is None else rng
        image = _as_pil(image)
        if image.width == 0 or image.height == 0:
            raise ImageLoadError(f"image has no pixels (size {image.size})")
        aug = self.augment
        box = crop_box(image.width, image.height, aug.scale, aug.ratio, rng)
        image = resized_crop(image, box, self.cfg.hw).convert("RGB")
        if aug.color_jitter_prob and rng.random() < aug.color_jitter_prob:
            image = _jitter(image, aug.color_jitter, rng)
        if aug.gray_scale_prob and rng.random() < aug.gray_scale_prob:
            image = image.convert("L").convert("RGB")
        pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
        return image_output((pixels - self._mean) / self._std, self.output)

    def __repr__(self):
        return f"TrainTransform(size={self.cfg.size!r}, augment={self.augment})"


def train_transform(cfg: PreprocessConfig | dict | None = None, augment: AugmentConfig | dict | None = None,
                    seed: int | None = None, output: str = "auto", **overrides) -> TrainTransform:
    """open_clip's training transform for ``cfg`` (what ``create_model_and_transforms`` returns first).

    Example:
        >>> transform = train_transform(size=224, augment={"scale": (0.5, 1.0)}, seed=0, output="numpy")
        >>> transform(Image.new("L", (300, 200))).shape
        (224, 224, 3)
    """
    cfg = as_preprocess_config(cfg, **overrides)
    if isinstance(augment, dict):
        augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in augment.items()})
    return TrainTransform(cfg, augment, seed, output)
