"""The ``vision_cfg`` fields every timm tower family shares, and their checks (open_clip ``CLIPVisionCfg`` timm keys).

Each timm family (a row of :mod:`anyclip.towers.registry`) subclasses :class:`TimmTowerConfig` with its class attributes
(``TIMM_NAMES``, ``ARCH_KWARGS``, ``DROPOUT``, ``DROP_PATH``) and adds only its own rules (pools,
projections, sizes) in ``check_family``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from ..config import ConfigError, _check_fields, _pair, _pos_int, _require
from ..openai.vision_transformer import VisionConfig

# Native-ViT keys open_clip ignores once timm_model_name is set: accepted at their defaults only.
_NATIVE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(VisionConfig)
                    if f.name not in ("image_size", "patch_dropout") and f.default is not dataclasses.MISSING}


def _rate(value, nullable: bool) -> bool:
    return (nullable and value is None) or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                            and 0 <= value < 1)


@dataclasses.dataclass(frozen=True)
class TimmTowerConfig:
    """``vision_cfg`` of a timm tower: the fields and checks shared by every family.

    Class attributes set by each family: ``TIMM_NAMES`` (timm name -> architecture), ``FAMILY`` (for error
    messages), ``ARCH_KWARGS`` (the ``timm_model_kwargs`` keys it takes), ``DROPOUT`` / ``DROP_PATH``
    (whether ``timm_drop`` / ``timm_drop_path`` may be non-zero), ``PATCH_TOKENS``.

    Example:
        >>> from anyclip.towers.timm.vit_config import TimmViTConfig
        >>> TimmViTConfig.from_values({"timm_model_name": "vitamin_small_224", "timm_pool": ""}).timm_proj
        'linear'
    """

    TIMM_NAMES: ClassVar[Mapping[str, Any]] = {}
    FAMILY: ClassVar[str] = "timm vision towers"
    ARCH_KWARGS: ClassVar[frozenset] = frozenset({"depth"})
    DROPOUT: ClassVar[bool] = False
    DROP_PATH: ClassVar[bool] = False
    PATCH_TOKENS: ClassVar[bool] = True  # False: a convolutional trunk (no tokens for patch_dropout to drop)

    timm_model_name: str
    image_size: int | tuple[int, int] = 224
    timm_model_pretrained: bool = False
    timm_pool: str = "avg"
    timm_proj: str | None = "linear"
    timm_proj_bias: bool = False
    timm_drop: float = 0.0
    timm_drop_path: float | None = None
    patch_dropout: float = 0.0
    timm_model_kwargs: dict | None = None

    def __post_init__(self):
        w = "vision_cfg"
        self._check_name(self.timm_model_name)
        _pair(self.image_size, f"{w}.image_size")
        _require(self.timm_model_pretrained is False, f"{w}.timm_model_pretrained",
                 "timm's own (ImageNet) weights are not loaded by anyclip; use false and an open_clip checkpoint")
        _require(isinstance(self.timm_proj_bias, bool), f"{w}.timm_proj_bias", "must be true/false")
        _require(self.patch_dropout in (0, 0.0), f"{w}.patch_dropout",
                 "dropout in timm towers is not supported (only 0)" if self.PATCH_TOKENS else
                 f"{self.timm_model_name} has no patch tokens to drop (timm refuses patch_drop_rate); use 0")
        if self.DROPOUT:
            _require(_rate(self.timm_drop, False), f"{w}.timm_drop",
                     f"must be a rate in [0, 1), got {self.timm_drop!r}")
        else:
            _require(self.timm_drop in (0, 0.0), f"{w}.timm_drop", "dropout in timm towers is not supported (only 0)")
        if self.DROP_PATH:
            _require(_rate(self.timm_drop_path, True), f"{w}.timm_drop_path",
                     f"must be a rate in [0, 1) or null, got {self.timm_drop_path!r}")
        else:
            _require(self.timm_drop_path in (None, 0, 0.0), f"{w}.timm_drop_path",
                     "stochastic depth in timm towers is not supported (only null or 0)")
        kwargs = self.timm_model_kwargs or {}
        _require(isinstance(kwargs, dict) and set(kwargs) <= self.ARCH_KWARGS, f"{w}.timm_model_kwargs",
                 f"only {sorted(self.ARCH_KWARGS)} may be overridden for {self.FAMILY}, got {kwargs!r}")
        if "depth" in kwargs:
            _pos_int(kwargs["depth"], f"{w}.timm_model_kwargs.depth")
        self.check_family()

    def check_family(self) -> None:
        """The family's own rules (pool, projection, size, architecture overrides); raises ``ConfigError``."""

    @classmethod
    def _check_name(cls, name):
        if not isinstance(name, str) or name not in cls.TIMM_NAMES:
            raise ConfigError(f"vision_cfg.timm_model_name={name!r} is not one of the {cls.FAMILY} anyclip "
                              f"implements; supported: {', '.join(sorted(cls.TIMM_NAMES))}")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]):
        """Validate a ``vision_cfg`` dict that names a timm model (native-ViT keys must hold their defaults)."""
        values = dict(values)
        cls._check_name(values.get("timm_model_name"))
        for key, default in _NATIVE_DEFAULTS.items():
            if key in values and values.pop(key) != default:
                raise ConfigError(f"vision_cfg.{key} does not apply to timm towers: timm_model_name fixes the "
                                  f"architecture (only the default {default!r} is accepted)")
        return cls(**_check_fields(cls, values, "vision_cfg"))

    @property
    def arch(self):
        """The architecture: timm's, with the ``timm_model_kwargs`` overrides (lists as tuples)."""
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in (self.timm_model_kwargs or {}).items()}
        return dataclasses.replace(self.TIMM_NAMES[self.timm_model_name], **kwargs)

    @property
    def unprojected_width(self) -> int | None:
        """The tower's output width when it has no projection (``timm_proj: "none"``), else None."""
        return self.arch.width if self.timm_proj == "none" else None


