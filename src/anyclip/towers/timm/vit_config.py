"""Config of the timm ViT image towers open_clip builds from ``vision_cfg.timm_model_name``.

open_clip hands the name to ``timm.create_model``: the architecture comes from timm's registry, not from
``vision_cfg``. anyclip implements the names of :data:`TIMM_VITS` natively (no timm at run time): SigLIP /
SigLIP2 (MAP head), ``vit_medium_patch16_gap_256`` (average pool), ``vit_relpos_medium_patch16_cls_224``
(relative-position MLP bias), MobileCLIP's ``vit_base_mci_224`` (convolutional stem), MobileCLIP2's
``vit_large_patch14_clip_224`` (pre-norm) and ViTamin (``vitamin_*``: MbConv stem, GeGLU MLPs). Their
architecture values are written here, checked against timm in ``tests/test_timm_vit.py`` and
``tests/test_vitamin.py``; :class:`TimmHead` resolves open_clip's ``TimmModel`` pool/projection rules.
"""

from __future__ import annotations

import dataclasses

from ..config import _pair, _require
from .config import TimmTowerConfig


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
    stem: str = "patch"  # "patch": one patch convolution; "mci": MobileCLIP's 3-convolution stem; "vitamin"
    rel_pos_dim: int | None = None  # relpos ViT: hidden width of the log-coordinate MLP; no absolute positions
    pos_embed: bool = True  # learned absolute positions (timm's ``pos_embed='none'`` leaves them out)
    geglu: bool = False  # the blocks' MLP is timm's GeGluMlp (ViTamin)
    stem_widths: tuple[int, ...] = ()  # ViTamin stem: (stem width, stage 1 width, stage 2 width)
    stem_depths: tuple[int, ...] = (2, 4)  # ViTamin stem: MbConv blocks per stage

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)

    def grid(self, size: tuple[int, int]) -> tuple[int, int]:
        """Tokens along (height, width) for images of ``size`` pixels."""
        if self.stem == "vitamin":  # four padded stride-2 steps
            from .vitamin import stem_grid
            return stem_grid(size[0]), stem_grid(size[1])
        return size[0] // self.patch_size, size[1] // self.patch_size

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


def _vitamin(width, depth, heads, stem, sizes, pos_embed=True):
    return {size: TimmViTArch(16, width, depth, heads, 2.0, size, default_pool="avg", stem="vitamin",
                              pos_embed=pos_embed, geglu=True, stem_widths=stem) for size in sizes}


_VITAMIN = {
    "vitamin_small_{}": _vitamin(384, 14, 6, (64, 64, 128), (224,)),
    "vitamin_base_{}": _vitamin(768, 14, 12, (128, 128, 256), (224,)),
    "vitamin_large_{}": _vitamin(1024, 31, 16, (160, 160, 320), (224, 256, 336, 384)),
    "vitamin_large2_{}": _vitamin(1024, 31, 16, (160, 160, 320), (224, 256, 336, 384)),  # timm: same as large
    "vitamin_xlarge_{}": _vitamin(1152, 32, 16, (192, 192, 384), (256, 336, 384), pos_embed=False),
}
# timm model name -> architecture, for every name anyclip builds natively.
TIMM_VITS: dict[str, TimmViTArch] = {
    **{pattern.format(size): arch for family in (_SIGLIP, _VITAMIN) for pattern, archs in family.items()
       for size, arch in archs.items()}, **_OTHERS}

_PROJS = (None, "", "none", "linear", "mlp")


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
class TimmViTConfig(TimmTowerConfig):
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

    TIMM_NAMES = TIMM_VITS  # the timm names this family builds (see anyclip.towers.registry)
    DROP_PATH = True

    def check_family(self):
        w, arch = "vision_cfg", self.arch
        _require(min(_pair(self.image_size, "")) >= arch.patch_size, f"{w}.image_size",
                 f"{self.image_size!r} is smaller than the patch size {arch.patch_size}")
        _require(self.timm_proj in _PROJS, f"{w}.timm_proj",
                 f"must be 'none', 'linear', 'mlp', '' or null, got {self.timm_proj!r}")
        self.head  # noqa: B018 (validates timm_pool against timm_proj and the model)

    @property
    def head(self) -> TimmHead:
        """The pool, norm placement and projection open_clip builds (:func:`resolve_head`)."""
        return resolve_head(self.arch, self.timm_pool, self.timm_proj)

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.arch.grid(_pair(self.image_size, ""))
