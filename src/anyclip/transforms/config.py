"""Preprocessing configuration shared by the host and in-graph image paths."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

OPENAI_DATASET_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_DATASET_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

DEFAULT_MAX_PIXELS = 178_956_970  # load_image's limit: PIL's hard decompression-bomb limit (2 * MAX_IMAGE_PIXELS)
RESIZE_MODES = ("shortest", "longest", "squash")
INTERPOLATIONS = ("bicubic", "bilinear")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes model input (open_clip's ``PreprocessCfg`` fields).

    ``size`` is an int (square) or ``(height, width)``; ``mean``/``std`` are per RGB channel
    on the 0-1 scale; ``fill_color`` pads the ``longest`` resize mode (0-255).

    Example:
        >>> PreprocessConfig(size=224, resize_mode="squash").size
        224
    """

    size: int | tuple[int, int] = 224
    mean: tuple[float, float, float] = OPENAI_DATASET_MEAN
    std: tuple[float, float, float] = OPENAI_DATASET_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    def __post_init__(self):
        size = self.size
        if isinstance(size, (list, tuple)):
            if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
                raise ValueError(f"PreprocessConfig.size must be an int or (height, width), got {size!r}")
            object.__setattr__(self, "size", tuple(size))
        elif not isinstance(size, int) or size <= 0:
            raise ValueError(f"PreprocessConfig.size must be a positive int, got {size!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, (int, float)):
                value = (float(value),) * 3
            value = tuple(float(v) for v in value)
            if len(value) != 3:
                raise ValueError(f"PreprocessConfig.{name} needs 3 values (RGB), got {value!r}")
            object.__setattr__(self, name, value)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"PreprocessConfig.std must be positive, got {self.std!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"PreprocessConfig.interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"PreprocessConfig.resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if not isinstance(self.fill_color, int) or not 0 <= self.fill_color <= 255:
            raise ValueError(f"PreprocessConfig.fill_color must be an int in 0..255, got {self.fill_color!r}")

    @property
    def hw(self) -> tuple[int, int]:
        """Output (height, width)."""
        return (self.size, self.size) if isinstance(self.size, int) else self.size

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PreprocessConfig":
        """Build from a dict, ignoring keys that are not preprocessing fields (open_clip's habit)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in fields and v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
