"""Config of the timm ViT image towers open_clip builds from ``vision_cfg.timm_model_name``.

open_clip hands the name to ``timm.create_model``: the architecture comes from timm's registry, not from
``vision_cfg``. anyclip implements the names of :data:`TIMM_VITS` natively (no timm at run time): SigLIP /
SigLIP2 (MAP head), ``vit_medium_patch16_gap_256`` (average pool), ``vit_relpos_medium_patch16_cls_224``
(relative-position MLP bias), MobileCLIP's ``vit_base_mci_224`` (convolutional stem) and MobileCLIP2's
``vit_large_patch14_clip_224`` (pre-norm). Their architecture values are written here, checked against timm
in ``tests/test_timm_vit.py``; :class:`TimmHead` resolves open_clip's ``TimmModel`` pool/projection rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .config import ConfigError, VisionConfig, _check_fields, _pair, _require


@dataclasses.dataclass(frozen=True)
class TimmViTArch:
    """A timm ``VisionTransformer`` (or ``VisionTransformerRelPos``) as timm's model function builds it."""

    patch_size: int  # the total stride of the patch stem
    width: int
    depth: int
    heads: int
    mlp_ratio: float
    image_size: int  # the size timm builds the model for (its pretrained cfg's input size)
    gelu_tanh: bool = False  # timm's ``act_layer='gelu_tanh'``; otherwise exact (erf) GELU
    default_pool: str = "token"  # timm's ``global_pool`` default for the model
    class_token: bool = False
    no_embed_class: bool = False  # positions added before the class token is prepended (none for it)
    qkv_bias: bool = True
    layer_scale: bool = False  # ``init_values`` set: ``ls1`` / ``ls2`` gains
    pre_norm: bool = False  # ``norm_pre`` after the embeddings; the patch convolution has no bias
    fc_norm: bool | None = None  # timm's ``fc_norm`` argument (None: after the pool iff the pool averages)
    norm_eps: float = 1e-6
    stem: str = "patch"  # "patch": one patch convolution; "mci": MobileCLIP's 3-convolution stem
    rel_pos_dim: int | None = None  # relpos ViT: hidden width of the log-coordinate MLP; no absolute positions

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def pools(self) -> tuple[str, ...]:
        """The ``global_pool`` values timm accepts for this model."""
        return ("", "avg", "token") if self.rel_pos_dim else ("", "avg", "avgmax", "max", "token", "map")


def _siglip(patch, width, depth, heads, mlp_ratio, sizes, tanh_sizes=()):
    return {size: TimmViTArch(patch, width, depth, heads, mlp_ratio, size, size in tanh_sizes, "map")
            for size in sizes}


_SIGLIP = {
    "vit_base_patch32_siglip_{}": _siglip(32, 768, 12, 12, 4.0, (256,), tanh_sizes=(256,)),
    "vit_base_patch16_siglip_{}": _siglip(16, 768, 12, 12, 4.0, (224, 256, 384, 512)),
    "vit_large_patch16_siglip_{}": _siglip(16, 1024, 24, 16, 4.0, (256, 384, 512), tanh_sizes=(512,)),
    "vit_so400m_patch14_siglip_{}": _siglip(14, 1152, 27, 16, 3.7362, (224, 378, 384)),
    "vit_so400m_patch16_siglip_{}": _siglip(16, 1152, 27, 16, 3.7362, (256, 384, 512), tanh_sizes=(256, 384, 512)),
    "vit_giantopt_patch16_siglip_{}": _siglip(16, 1536, 40, 16, 4.0, (256, 384), tanh_sizes=(256, 384)),
}
_OTHERS = {
    "vit_medium_patch16_gap_256": TimmViTArch(16, 512, 12, 8, 4.0, 256, default_pool="avg", qkv_bias=False,
                                              layer_scale=True, fc_norm=False),
    "vit_relpos_medium_patch16_cls_224": TimmViTArch(16, 512, 12, 8, 4.0, 224, class_token=True, qkv_bias=False,
                                                     layer_scale=True, fc_norm=False, rel_pos_dim=256),
    "vit_base_mci_224": TimmViTArch(16, 768, 12, 12, 4.0, 224, class_token=True, no_embed_class=True, stem="mci"),
    "vit_large_patch14_clip_224": TimmViTArch(14, 1024, 24, 16, 4.0, 224, class_token=True, pre_norm=True,
                                              norm_eps=1e-5),
}
# timm model name -> architecture, for every name anyclip builds natively.
TIMM_VITS: dict[str, TimmViTArch] = {
    **{pattern.format(size): arch for pattern, archs in _SIGLIP.items() for size, arch in archs.items()}, **_OTHERS}

# Architecture overrides (anyclip's extension ``timm_model_kwargs``, as timm's ``create_model`` kwargs).
_ARCH_KWARGS = {"depth"}
# Native-ViT keys open_clip ignores once timm_model_name is set: accepted at their defaults only.
_NATIVE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(VisionConfig)
                    if f.name not in ("image_size", "patch_dropout") and f.default is not dataclasses.MISSING}
_PROJS = (None, "", "none", "linear", "mlp")


def _check_name(name):
    if not isinstance(name, str) or name not in TIMM_VITS:
        raise ConfigError(f"vision_cfg.timm_model_name={name!r} is not one of the timm vision towers anyclip "
                          f"implements; supported: {', '.join(sorted(TIMM_VITS))}")


@dataclasses.dataclass(frozen=True)
class TimmHead:
    """What open_clip's ``TimmModel`` puts after the trunk's blocks, for a pool / projection choice.

    ``pool``: the trunk's global pool ("token", "avg", "avgmax", "max" or "map"); ``fc_norm``: the final norm
    comes after the pool (``trunk.fc_norm``) rather than before it (``trunk.norm``); ``trunk_head``: timm's
    classifier ``trunk.head`` (biased Linear to ``embed_dim``) is the projection (``timm_proj`` null or "");
    ``proj``: open_clip's own ``head`` ("linear", "mlp" or None).
    """

    pool: str
    fc_norm: bool
    trunk_head: bool
    proj: str | None


def resolve_head(arch: TimmViTArch, pool: str, proj: str | None) -> TimmHead:
    """open_clip ``TimmModel``'s rules: with an extra projection ("linear"/"mlp") timm builds the model with its
    default pool and ``reset_classifier`` switches to ``pool`` (when set); otherwise timm builds it with ``pool``
    and ``num_classes=embed_dim`` (0 for "none"). The post-pool norm follows the pool the model was built with.

    Example:
        >>> resolve_head(TIMM_VITS["vit_medium_patch16_gap_256"], "", "linear")
        TimmHead(pool='avg', fc_norm=False, trunk_head=False, proj='linear')
    """
    w = "vision_cfg.timm_pool"
    _require(pool not in ("abs_attn", "rot_attn"), w, f"{pool!r} needs a 2-D feature map; timm ViTs output tokens")
    _require(isinstance(pool, str) and pool in arch.pools, w,
             f"this timm model accepts {', '.join(repr(p) for p in arch.pools)}, got {pool!r}")
    extra = proj in ("linear", "mlp")
    built = arch.default_pool if extra else pool
    used = (pool or arch.default_pool) if extra else pool
    _require(used != "", w, "'' without an extra projection leaves the tokens unpooled (no image embedding); "
                            "use 'token', 'avg' or 'map', or timm_proj 'linear'")
    _require(used != "token" or arch.class_token, w, "'token' needs a class token, and this timm model has none")
    _require(used != "map" or built == "map", w, "'map' with timm_proj 'linear'/'mlp' needs a model built with "
                                                 "the attention pool (timm cannot add it in reset_classifier)")
    fc_norm = arch.fc_norm if arch.fc_norm is not None else built in ("avg", "avgmax", "max")
    return TimmHead(used, fc_norm, trunk_head=proj in (None, ""), proj=proj if extra else None)


@dataclasses.dataclass(frozen=True)
class TimmViTConfig:
    """``vision_cfg`` of a timm ViT tower (open_clip ``CLIPVisionCfg`` timm fields).

    ``timm_pool`` and ``timm_proj`` follow open_clip's ``TimmModel`` (see :func:`resolve_head`): ``timm_proj``
    "none" (pooled features are the embedding), null / "" (timm's classifier, a biased Linear, projects),
    "linear" (an extra ``head.proj``, bias per ``timm_proj_bias``) or "mlp" (``head.mlp``).
    ``image_size`` other than the model's native size builds the tower for that size: checkpoints made at the
    native size then need their position embeddings resized (as open_clip's ``force_image_size``).
    ``timm_drop_path`` is stochastic depth in training (timm's per-block linear ramp); ``timm_model_kwargs``
    (anyclip only) overrides timm's architecture: ``{"depth": n}`` keeps n blocks.

    Example:
        >>> TimmViTConfig("vit_base_patch16_siglip_256", image_size=256, timm_pool="map", timm_proj="none").grid_size
        (16, 16)
    """

    TIMM_NAMES = TIMM_VITS  # the timm names this family builds (see timm_families)

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
        _check_name(self.timm_model_name)
        size = _pair(self.image_size, f"{w}.image_size")
        patch = TIMM_VITS[self.timm_model_name].patch_size
        _require(min(size) >= patch, f"{w}.image_size", f"{self.image_size!r} is smaller than the patch size {patch}")
        _require(self.timm_model_pretrained is False, f"{w}.timm_model_pretrained",
                 "timm's own (ImageNet) weights are not loaded by anyclip; use false and an open_clip checkpoint")
        _require(self.timm_proj in _PROJS, f"{w}.timm_proj",
                 f"must be 'none', 'linear', 'mlp', '' or null, got {self.timm_proj!r}")
        _require(isinstance(self.timm_proj_bias, bool), f"{w}.timm_proj_bias", "must be true/false")
        for key in ("timm_drop", "patch_dropout"):
            _require(getattr(self, key) in (0, 0.0), f"{w}.{key}", "dropout in timm towers is not supported (only 0)")
        drop_path = 0.0 if self.timm_drop_path is None else self.timm_drop_path
        _require(isinstance(drop_path, (int, float)) and not isinstance(drop_path, bool) and 0 <= drop_path < 1,
                 f"{w}.timm_drop_path", f"must be null or in [0, 1), got {self.timm_drop_path!r}")
        kwargs = self.timm_model_kwargs or {}
        _require(isinstance(kwargs, dict) and set(kwargs) <= _ARCH_KWARGS, f"{w}.timm_model_kwargs",
                 f"only {sorted(_ARCH_KWARGS)} may be overridden, got {kwargs!r}")
        depth = kwargs.get("depth", 1)
        _require(isinstance(depth, int) and not isinstance(depth, bool) and depth > 0,
                 f"{w}.timm_model_kwargs.depth", f"must be a positive integer, got {depth!r}")
        self.head  # noqa: B018 (validates timm_pool against timm_proj and the model)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> TimmViTConfig:
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
    def head(self) -> TimmHead:
        """The pool, norm placement and projection open_clip builds (:func:`resolve_head`)."""
        return resolve_head(self.arch, self.timm_pool, self.timm_proj)

    @property
    def unprojected_width(self) -> int | None:
        """The tower's output width when it has no projection (``timm_proj: "none"``), else None."""
        return self.arch.width if self.timm_proj == "none" else None

    @property
    def grid_size(self) -> tuple[int, int]:
        (h, w), p = _pair(self.image_size, ""), self.arch.patch_size
        return h // p, w // p
