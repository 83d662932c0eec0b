"""Config of timm's ``Eva`` image towers that open_clip builds from ``vision_cfg.timm_model_name`` (EVA, EVA02, PE).

open_clip hands the name to ``timm.create_model(name, num_classes=embed_dim, global_pool=timm_pool)`` (with
``timm_proj: null``): the architecture comes from timm's registry. anyclip implements the names of
:data:`TIMM_EVAS` natively; their architecture values are written here and checked against timm in
``tests/test_eva.py``.
"""

from __future__ import annotations

import dataclasses

from ..config import _pair, _require
from .config import TimmTowerConfig


@dataclasses.dataclass(frozen=True)
class EvaArch:
    """One timm ``Eva`` architecture: a class-token (or not) ViT with EVA/PE block options.

    ``attn``: the qkv layout, ``"qv_bias"`` (one fused weight, q and v biases, no k bias: EVA),
    ``"separate"`` (``q_proj``/``k_proj``/``v_proj``, no k bias: EVA02) or ``"fused"`` (one biased ``qkv``: PE).
    ``swiglu``: SwiGLU MLP with a LayerNorm on its hidden layer (EVA02's ``scale_mlp``), else a GELU MLP.
    ``attn_norm``: a LayerNorm on the attention output before ``proj`` (``scale_attn_inner``).
    ``post_norm``: residual post-norm blocks ``x + norm(f(x))`` (EVA02-E). ``pre_norm``: a LayerNorm after the
    position embeddings and a patch embedding without bias (PE). ``rope``: 2D rotary embeddings with reference
    grid ``rope_ref``, coordinate offset ``rope_offset`` and ``xy`` axis order (see :mod:`anyclip.layers.rope`).
    """

    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float
    image_size: int  # the size timm builds the model for
    pool: str  # the pooling the model is built with in open_clip: "token" (class token) or "map"
    class_token: bool = True
    attn: str = "qv_bias"
    swiglu: bool = False
    attn_norm: bool = False
    post_norm: bool = False
    pre_norm: bool = False
    rope: bool = False
    rope_ref: int | None = None
    rope_offset: float = 0.0
    rope_xy: bool = False
    norm_eps: float = 1e-6
    pool_heads: int = 8  # MAP head (PE): attn_pool_num_heads, attn_pool_mlp_ratio
    pool_mlp_ratio: float = 4.0

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def prefix_tokens(self) -> int:
        return int(self.class_token)


def _eva02(patch, width, depth, heads, size):
    return EvaArch(patch, width, depth, heads, 4 * 2 / 3, size, "token", attn="separate", swiglu=True,
                   attn_norm=True, rope=True, rope_ref=16)


def _pe(patch, width, depth, heads, mlp_ratio, size, ref, class_token=True, offset=1.0):
    return EvaArch(patch, width, depth, heads, mlp_ratio, size, "map", class_token=class_token, attn="fused",
                   pre_norm=True, rope=True, rope_ref=ref, rope_offset=offset, rope_xy=True, norm_eps=1e-5)


# timm model name -> architecture, for every name anyclip builds natively.
TIMM_EVAS: dict[str, EvaArch] = {
    "eva_giant_patch14_224": EvaArch(14, 1408, 40, 16, 6144 / 1408, 224, "token"),
    "eva02_base_patch16_clip_224": _eva02(16, 768, 12, 12, 224),
    "eva02_large_patch14_clip_224": _eva02(14, 1024, 24, 16, 224),
    "eva02_large_patch14_clip_336": _eva02(14, 1024, 24, 16, 336),
    "eva02_enormous_patch14_clip_224": EvaArch(14, 1792, 64, 16, 15360 / 1792, 224, "token", post_norm=True),
    "vit_pe_core_tiny_patch16_384": _pe(16, 192, 12, 3, 4.0, 384, 24),
    "vit_pe_core_small_patch16_384": _pe(16, 384, 12, 6, 4.0, 384, 24),
    "vit_pe_core_base_patch16_224": _pe(16, 768, 12, 12, 4.0, 224, 14),
    "vit_pe_core_large_patch14_336": _pe(14, 1024, 24, 16, 4.0, 336, 24),
    "vit_pe_core_gigantic_patch14_448": _pe(14, 1536, 50, 16, 8960 / 1536, 448, 32, class_token=False, offset=0.0),
}

@dataclasses.dataclass(frozen=True)
class TimmEvaConfig(TimmTowerConfig):
    """``vision_cfg`` of a timm EVA / EVA02 / PE tower (open_clip ``CLIPVisionCfg`` timm fields).

    ``timm_pool`` must be the model's own pooling (``"token"`` for EVA, ``"map"`` for PE). ``timm_proj``:
    ``null`` (timm's biased ``head`` to ``embed_dim``, as open_clip's configs) or ``"none"`` (no head; the
    model's width must equal ``embed_dim``). An ``image_size`` other than the model's native one builds the
    tower for that size (open_clip's ``force_image_size``: positions resampled at load, rotary tables for the
    new grid). ``timm_model_kwargs`` (anyclip only): ``{"depth": n}`` keeps n blocks.

    Example:
        >>> TimmEvaConfig("eva02_base_patch16_clip_224", image_size=224, timm_pool="token", timm_proj=None).grid_size
        (14, 14)
    """

    TIMM_NAMES = TIMM_EVAS  # the timm names this family builds (see anyclip.towers.registry)

    def check_family(self):
        w, arch = "vision_cfg", self.arch
        _require(min(_pair(self.image_size, "")) >= arch.patch_size, f"{w}.image_size",
                 f"{self.image_size!r} is smaller than the patch size {arch.patch_size}")
        _require(self.timm_pool == arch.pool, f"{w}.timm_pool",
                 f"{self.timm_model_name} is implemented with its own pooling {arch.pool!r} only, got "
                 f"{self.timm_pool!r}")
        _require(self.timm_proj in (None, "none"), f"{w}.timm_proj",
                 f"EVA/PE towers support null (timm's head, as open_clip's configs) or 'none', got {self.timm_proj!r}")
        _require(self.timm_proj_bias is False, f"{w}.timm_proj_bias", "only used with timm_proj 'linear'/'mlp'")

    @property
    def grid_size(self) -> tuple[int, int]:
        (h, w), p = _pair(self.image_size, ""), self.arch.patch_size
        return h // p, w // p
