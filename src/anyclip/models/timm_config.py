"""Config of the timm ViT image towers open_clip builds from ``vision_cfg.timm_model_name`` (SigLIP, SigLIP2).

open_clip hands the name to ``timm.create_model``: the architecture comes from timm's registry, not from
``vision_cfg``. anyclip implements the names of :data:`TIMM_VITS` natively (no timm at run time); their
architecture values are written here, checked against timm in ``tests/test_siglip.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .config import ConfigError, VisionConfig, _check_fields, _pair, _require


@dataclasses.dataclass(frozen=True)
class TimmViTArch:
    """A timm ``VisionTransformer`` without class token, with a MAP (attention-pool) head and final norm."""

    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float
    image_size: int  # the size timm builds the model for (its pretrained cfg's input size)
    gelu_tanh: bool  # timm's ``act_layer='gelu_tanh'``; otherwise exact (erf) GELU

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)


def _siglip(patch, width, depth, heads, mlp_ratio, sizes, tanh_sizes=()):
    return {size: TimmViTArch(patch, width, depth, heads, mlp_ratio, size, size in tanh_sizes) for size in sizes}


_FAMILIES = {
    "vit_base_patch32_siglip_{}": _siglip(32, 768, 12, 12, 4.0, (256,), tanh_sizes=(256,)),
    "vit_base_patch16_siglip_{}": _siglip(16, 768, 12, 12, 4.0, (224, 256, 384, 512)),
    "vit_large_patch16_siglip_{}": _siglip(16, 1024, 24, 16, 4.0, (256, 384, 512), tanh_sizes=(512,)),
    "vit_so400m_patch14_siglip_{}": _siglip(14, 1152, 27, 16, 3.7362, (224, 378, 384)),
    "vit_so400m_patch16_siglip_{}": _siglip(16, 1152, 27, 16, 3.7362, (256, 384, 512), tanh_sizes=(256, 384, 512)),
    "vit_giantopt_patch16_siglip_{}": _siglip(16, 1536, 40, 16, 4.0, (256, 384), tanh_sizes=(256, 384)),
}
# timm model name -> architecture, for every name anyclip builds natively.
TIMM_VITS: dict[str, TimmViTArch] = {
    pattern.format(size): arch for pattern, archs in _FAMILIES.items() for size, arch in archs.items()}

# Architecture overrides (anyclip's extension ``timm_model_kwargs``, as timm's ``create_model`` kwargs).
_ARCH_KWARGS = {"depth"}
# Native-ViT keys open_clip ignores once timm_model_name is set: accepted at their defaults only.
_NATIVE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(VisionConfig)
                    if f.name not in ("image_size", "patch_dropout") and f.default is not dataclasses.MISSING}


def _check_name(name):
    if not isinstance(name, str) or name not in TIMM_VITS:
        raise ConfigError(f"vision_cfg.timm_model_name={name!r} is not one of the timm vision towers anyclip "
                          f"implements; supported: {', '.join(sorted(TIMM_VITS))}")


@dataclasses.dataclass(frozen=True)
class TimmViTConfig:
    """``vision_cfg`` of a timm ViT tower (open_clip ``CLIPVisionCfg`` timm fields).

    ``timm_pool`` must be ``"map"`` (the attention-pool head); ``timm_proj`` is ``"none"`` (the pooled
    features are the embedding; SigLIP) or ``"linear"`` (an extra ``head.proj``, with ``timm_proj_bias``).
    ``image_size`` other than the model's native size builds the tower for that size: checkpoints made at the
    native size then need their position embeddings resized (as open_clip's ``force_image_size``).
    ``timm_model_kwargs`` (anyclip only) overrides timm's architecture: ``{"depth": n}`` keeps n blocks.

    Example:
        >>> TimmViTConfig("vit_base_patch16_siglip_256", image_size=256, timm_pool="map", timm_proj="none").grid_size
        (16, 16)
    """

    TIMM_NAMES = TIMM_VITS  # the timm names this family builds (see timm_families)

    timm_model_name: str
    image_size: int | tuple[int, int] = 224
    timm_model_pretrained: bool = False
    timm_pool: str = "avg"
    timm_proj: str = "linear"
    timm_proj_bias: bool = False
    timm_drop: float = 0.0
    timm_drop_path: float | None = None
    patch_dropout: float = 0.0
    timm_model_kwargs: dict | None = None

    def __post_init__(self):
        w = "vision_cfg"
        _check_name(self.timm_model_name)
        size = _pair(self.image_size, f"{w}.image_size")
        patch = TIMM_VITS[self.timm_model_name].patch_size
        _require(min(size) >= patch, f"{w}.image_size", f"{self.image_size!r} is smaller than the patch size {patch}")
        _require(self.timm_model_pretrained is False, f"{w}.timm_model_pretrained",
                 "timm's own (ImageNet) weights are not loaded by anyclip; use false and an open_clip checkpoint")
        _require(self.timm_pool == "map", f"{w}.timm_pool",
                 f"only 'map' (the attention-pool head of SigLIP towers) is supported, got {self.timm_pool!r}")
        _require(self.timm_proj in ("none", "linear"), f"{w}.timm_proj",
                 f"must be 'none' or 'linear', got {self.timm_proj!r}")
        _require(isinstance(self.timm_proj_bias, bool), f"{w}.timm_proj_bias", "must be true/false")
        for key in ("timm_drop", "patch_dropout"):
            _require(getattr(self, key) in (0, 0.0), f"{w}.{key}", "dropout in timm towers is not supported (only 0)")
        _require(self.timm_drop_path in (None, 0, 0.0), f"{w}.timm_drop_path",
                 "stochastic depth in timm towers is not supported (only null or 0)")
        kwargs = self.timm_model_kwargs or {}
        _require(isinstance(kwargs, dict) and set(kwargs) <= _ARCH_KWARGS, f"{w}.timm_model_kwargs",
                 f"only {sorted(_ARCH_KWARGS)} may be overridden, got {kwargs!r}")
        depth = kwargs.get("depth", 1)
        _require(isinstance(depth, int) and not isinstance(depth, bool) and depth > 0,
                 f"{w}.timm_model_kwargs.depth", f"must be a positive integer, got {depth!r}")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "TimmViTConfig":
        """Validate a ``vision_cfg`` dict that names a timm model (native-ViT keys must hold their defaults)."""
        values = dict(values)
        _check_name(values.get("timm_model_name"))
        for key, default in _NATIVE_DEFAULTS.items():
            if key in values and values.pop(key) != default:
                raise ConfigError(f"vision_cfg.{key} does not apply to timm towers: timm_model_name fixes the "
                                  f"architecture (only the default {default!r} is accepted)")
        return cls(**_check_fields(cls, values, "vision_cfg"))

    @property
    def arch(self) -> TimmViTArch:
        """The architecture: timm's, with the ``timm_model_kwargs`` overrides."""
        return dataclasses.replace(TIMM_VITS[self.timm_model_name], **(self.timm_model_kwargs or {}))

    @property
    def unprojected_width(self) -> int | None:
        """The tower's output width when it has no projection (``timm_proj: "none"``), else None."""
        return self.arch.width if self.timm_proj == "none" else None

    @property
    def grid_size(self) -> tuple[int, int]:
        (h, w), p = _pair(self.image_size, ""), self.arch.patch_size
        return h // p, w // p
