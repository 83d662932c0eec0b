"""timm ViT image towers (SigLIP, ViT-M gap, relpos ViT, MobileCLIP / MobileCLIP2 ViTs, ViTamin), natively in Keras.

open_clip wraps ``timm.create_model(timm_model_name, ...)`` as ``visual.trunk`` (plus an optional
``visual.head``). The trunk: a patch stem (one patch convolution, MobileCLIP's convolutional stem, or
ViTamin's MbConv stages), an optional class token, learned position embeddings (none in the relpos ViT,
whose blocks add a relative position bias instead, nor in ViTamin-XL), an optional ``norm_pre``, timm
blocks (GeGLU MLPs in ViTamin), then the head: final norm, pool (class token,
average, max, or the MAP attention pool), or pool then ``fc_norm``, and the projection
(:class:`anyclip.towers.timm.vit_config.TimmHead`). Input: float images ``[batch, H, W, 3]`` (channels last).
"""

from __future__ import annotations

import keras
from keras import ops

from ...layers.dense import LINEAR_TABLE, dense
from ...layers.init import child_seed, normal_init
from ...layers.mlp import activation
from ...layers.norm import LAYER_NORM_TABLE, layer_norm
from ...layers.pooling import MAP_HEAD_TABLE, MAPHead
from ...layers.transformer import call_layer
from ..base import Tower, lock_groups
from ..config import ConfigError
from .relpos import REL_POS_TABLE, RelPosMlp
from .stems import CONV_STEM_TABLE, PATCH_TABLE, PatchConv, mci_stem
from .vit_blocks import TIMM_VIT_BLOCK_TABLE, TimmBlock
from .vit_config import TimmViTConfig
from .vitamin import VITAMIN_STEM_TABLE, ViTaminStem

# open_clip key (relative to ``visual.``) -> attribute path on this tower, transform (anyclip.weights.mapping).
# Rows whose attribute the tower lacks (no class token, no fc_norm...) are skipped.
WEIGHT_TABLE = (
    ("trunk.cls_token", "cls_token", None),
    ("trunk.pos_embed", "pos_embed", None),
    ("trunk.patch_embed.proj.", "patch_embed", PATCH_TABLE),
    ("trunk.patch_embed.backbone.{i}.", "backbone", CONV_STEM_TABLE),
    ("trunk.patch_embed.backbone.", "vitamin_stem", VITAMIN_STEM_TABLE),
    ("trunk.norm_pre.", "norm_pre", LAYER_NORM_TABLE),
    ("trunk.blocks.{i}.", "blocks", TIMM_VIT_BLOCK_TABLE),
    ("trunk.blocks.{i}.attn.rel_pos.", "rel_pos", REL_POS_TABLE),
    ("trunk.norm.", "norm", LAYER_NORM_TABLE),
    ("trunk.attn_pool.", "attn_pool", MAP_HEAD_TABLE),
    ("trunk.fc_norm.", "fc_norm", LAYER_NORM_TABLE),
    ("trunk.head.", "trunk_head", LINEAR_TABLE),  # timm_proj null / "": timm's classifier projects
    ("head.proj.", "head_proj", LINEAR_TABLE),  # timm_proj "linear"
    ("head.mlp.fc1.", "head_fc1", LINEAR_TABLE),  # timm_proj "mlp"
    ("head.mlp.fc2.", "head_fc2", LINEAR_TABLE),
)
_STATES = ("moving_mean", "moving_var", "num_batches_tracked", "seed_generator")


@keras.saving.register_keras_serializable(package="anyclip")
class TimmViT(Tower):
    """A timm ViT tower: patch stem, class token and positions, blocks, norm, pool, projection.

    ``quick_gelu`` is accepted for the tower signature and unused: timm towers always use their own GELU,
    as in open_clip.

    Example:
        >>> cfg = TimmViTConfig("vit_base_patch16_siglip_224", 224, timm_pool="map", timm_proj="none",
        ...                     timm_model_kwargs={"depth": 1})
        >>> TimmViT(cfg, embed_dim=768)(keras.ops.zeros((1, 224, 224, 3))).shape
        (1, 768)
    """

    WEIGHT_TABLE = WEIGHT_TABLE  # how open_clip names this tower's weights (anyclip.weights.mapping)
    CONFIG = TimmViTConfig

    def __init__(self, config: TimmViTConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(config, embed_dim, quick_gelu, seed, **kwargs)
        cfg, arch, head, policy = self.config, self.config.arch, self.config.head, self.dtype_policy
        if cfg.timm_proj == "none" and arch.width != embed_dim:
            raise ConfigError(f"vision_cfg.timm_proj: 'none' needs the timm model's width ({arch.width}) equal to "
                              f"embed_dim ({embed_dim})")
        self.width, self.head = arch.width, head
        self.num_patches = cfg.grid_size[0] * cfg.grid_size[1]
        self.prefix = 1 if arch.class_token else 0
        eps = arch.norm_eps
        self.patch_embed, self.backbone, self.vitamin_stem = None, [], None
        if arch.stem == "mci":
            self.backbone = mci_stem(arch.width, child_seed(seed, "backbone"), policy)
        elif arch.stem == "vitamin":
            self.vitamin_stem = ViTaminStem(arch.stem_widths[0], arch.stem_widths[1:], arch.stem_depths, arch.width,
                                            seed=child_seed(seed, "vitamin_stem"), name="vitamin_stem", dtype=policy)
        else:
            self.patch_embed = PatchConv(arch.patch_size, 3, arch.width, bias=not arch.pre_norm,
                                         seed=child_seed(seed, "patch_embed"), name="patch_embed", dtype=policy)
        self.norm_pre = layer_norm("norm_pre", policy, eps=eps) if arch.pre_norm else None
        rates = [cfg.timm_drop_path * i / max(arch.depth - 1, 1) for i in range(arch.depth)] \
            if cfg.timm_drop_path else [0.0] * arch.depth
        self.blocks = [TimmBlock(arch.width, arch.heads, arch.mlp_width, arch.qkv_bias,
                                 1e-6 if arch.layer_scale else None, eps, arch.gelu_tanh, rates[i],
                                 child_seed(seed, f"block{i}"), geglu=arch.geglu, name=f"blocks_{i}", dtype=policy)
                       for i in range(arch.depth)]
        self.rel_pos = [RelPosMlp(cfg.grid_size, arch.heads, arch.rel_pos_dim, self.prefix,
                                  child_seed(seed, f"rel_pos{i}"), name=f"rel_pos_{i}", dtype=policy)
                        for i in range(arch.depth)] if arch.rel_pos_dim else []
        self.norm = None if head.fc_norm else layer_norm("norm", policy, eps=eps)
        self.fc_norm = layer_norm("fc_norm", policy, eps=eps) if head.fc_norm else None
        self.attn_pool = MAPHead(arch.width, arch.heads, arch.mlp_width, arch.gelu_tanh, eps,
                                 child_seed(seed, "attn_pool"), name="attn_pool",
                                 dtype=policy) if head.pool == "map" else None
        std = arch.width ** -0.5
        self.trunk_head = dense(embed_dim, std, seed, "trunk_head", policy) if head.trunk_head else None
        self.head_proj = self.head_fc1 = self.head_fc2 = None
        if head.proj == "linear":
            self.head_proj = dense(embed_dim, std, seed, "head_proj", policy, bias=cfg.timm_proj_bias)
        elif head.proj == "mlp":  # timm Mlp(width, 2 * embed_dim, embed_dim), exact GELU
            self.head_fc1 = dense(2 * embed_dim, std, seed, "head_fc1", policy)
            self.head_fc2 = dense(embed_dim, (2 * embed_dim) ** -0.5, seed, "head_fc2", policy,
                                  bias=cfg.timm_proj_bias)

    def build(self, input_shape=None):
        w, arch = self.width, self.config.arch
        if self.prefix:
            self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, w),
                                             initializer=normal_init(1e-6, self.seed, "cls_token"))
        else:
            self.cls_token = None
        self.pos_embed = None
        if arch.pos_embed and not arch.rel_pos_dim:
            length = self.num_patches + (0 if arch.no_embed_class else self.prefix)
            self.pos_embed = self.add_weight(name="pos_embed", shape=(1, length, w),
                                             initializer=normal_init(0.02, self.seed, "pos_embed"))
        for stage in [self.patch_embed, *self.backbone]:
            if stage is not None:
                stage.build()
        tokens = (None, self.num_patches + self.prefix, w)
        for layer in (self.norm_pre, *self.blocks, *self.rel_pos, self.norm, self.attn_pool, self.fc_norm):
            if layer is not None:
                layer.build(tokens)
        for layer, width in ((self.trunk_head, w), (self.head_proj, w), (self.head_fc1, w),
                             (self.head_fc2, 2 * self.embed_dim)):
            if layer is not None:
                layer.build((None, width))
        self.built = True

    def patchify(self, images, training: bool = False):
        """The patch stem -> ``[batch, patches, width]``; refuses images whose patch grid is not the model's."""
        arch, shape = self.config.arch, ops.shape(images)
        p = arch.patch_size
        gh, gw = arch.grid((shape[1], shape[2])) if isinstance(shape[1], int) else (shape[1] // p, shape[2] // p)
        fixed = self.pos_embed is not None or arch.rel_pos_dim  # without positions any grid works (ViTamin-XL)
        if fixed and isinstance(gh, int) and isinstance(gw, int) and (gh, gw) != tuple(self.config.grid_size):
            raise ValueError(f"image of {tuple(shape[1:3])} pixels gives a {gh}x{gw} patch grid, but this model "
                             f"expects {self.config.image_size} images ({self.config.grid_size[0]}x"
                             f"{self.config.grid_size[1]} patches of {p}); open_clip's timm tower refuses it too. "
                             "Resize the images, or build the model with force_image_size")
        x = images
        for stage in [self.patch_embed, *self.backbone, self.vitamin_stem]:
            if stage is not None:
                x = stage(x, training=training)
        return ops.reshape(x, (shape[0], -1, self.width))

    def forward_features(self, images, training: bool = False):
        """Tokens after the blocks and the final norm, ``[batch, tokens, width]`` (timm's ``forward_features``)."""
        x = self.patchify(images, training)
        pos = None if self.pos_embed is None else ops.cast(self.pos_embed, x.dtype)
        if pos is not None and self.config.arch.no_embed_class:
            x = x + pos
        if self.cls_token is not None:
            cls = ops.broadcast_to(ops.cast(self.cls_token, x.dtype), (ops.shape(x)[0], 1, self.width))
            x = ops.concatenate([cls, x], axis=1)
        if pos is not None and not self.config.arch.no_embed_class:
            x = x + pos
        if self.norm_pre is not None:
            x = self.norm_pre(x)
        for i, block in enumerate(self.blocks):
            bias = self.rel_pos[i].attention_bias() if self.rel_pos else None
            x = call_layer(block, x, bias=bias, training=training, remat=self.grad_checkpointing)
        return self.norm(x) if self.norm is not None else x

    def pool(self, x):
        """timm's ``pool``: the class token, the mean / max / both of the patch tokens, or the MAP head."""
        kind, patches = self.head.pool, x[:, self.prefix:]
        if kind == "map":
            return self.attn_pool(patches)
        if kind == "token":
            return x[:, 0]
        if kind == "avg":
            return ops.mean(patches, axis=1)
        if kind == "max":
            return ops.max(patches, axis=1)
        return 0.5 * (ops.max(patches, axis=1) + ops.mean(patches, axis=1))  # avgmax

    def call(self, images, training: bool = False):
        x = self.pool(self.forward_features(images, training))
        if self.fc_norm is not None:
            x = self.fc_norm(x)
        if self.trunk_head is not None:
            x = self.trunk_head(x)
        if self.head_proj is not None:
            x = self.head_proj(x)
        if self.head_fc1 is not None:
            x = self.head_fc2(activation(False)(self.head_fc1(x)))
        return x

    def adapt_state_dict(self, state: dict, prefix: str = "visual.") -> dict:
        """Resize a checkpoint's ``trunk.pos_embed`` made for another (square) grid to this tower's grid.

        open_clip's ``force_image_size`` on timm towers: timm's ``resample_abs_pos_embed`` (bicubic,
        antialiased; the class token's position, if any, kept). Other states are returned unchanged.

        Example:
            >>> state = model.visual.adapt_state_dict(state)  # doctest: +SKIP
        """
        import math

        from ...layers.position import resize_image_pos_embed
        key = prefix + "trunk.pos_embed"
        value, extra = state.get(key), 0 if self.config.arch.no_embed_class else self.prefix
        if value is None or self.pos_embed is None or value.ndim != 3 or value.shape[2] != self.width:
            return state
        old = value.shape[1] - extra
        if value.shape[1] == self.pos_embed.shape[1] or old <= 0 or math.isqrt(old) ** 2 != old:
            return state  # same size, or not a square grid: the shape check of the loader reports it
        resized = resize_image_pos_embed(value[0], self.config.grid_size, extra_tokens=extra)
        return {**state, key: resized[None]}

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the trunk except its last ``unlocked_groups`` groups (open_clip ``TimmModel.lock``).

        timm's groups, first to last: [stem: patch embedding, class token, positions, norm_pre], each block
        but the last, [last block, norm], [the rest of the trunk's head: attention pool, fc_norm, classifier].
        open_clip's ``head`` stays trainable. ``freeze_bn_stats`` keeps the stem's batch norms (MobileCLIP) on
        their running statistics when the stem is locked.

        Example:
            >>> model.visual.lock(unlocked_groups=1)  # only the trunk's head stays trainable  # doctest: +SKIP
        """
        def params(*layers):  # the weights training updates (not batch-norm statistics, not seed states)
            return [v for layer in layers if layer is not None for v in layer.weights
                    if not any(s in v.path for s in _STATES)]

        stem = [v for v in (self.cls_token, self.pos_embed) if v is not None]
        stem += params(self.patch_embed, *self.backbone, self.vitamin_stem, self.norm_pre)
        blocks = [params(b, *([self.rel_pos[i]] if self.rel_pos else [])) for i, b in enumerate(self.blocks)]
        blocks[-1] += params(self.norm)
        head = params(self.attn_pool, self.fc_norm, self.trunk_head)
        groups = [stem, *blocks] + ([head] if head else [])
        lock_groups(self, groups, unlocked_groups, "image tower")
        for var in params(self.head_proj, self.head_fc1, self.head_fc2):
            var.trainable = True
        if freeze_bn_stats and unlocked_groups < len(groups):
            for stage in self.backbone:
                if stage.bn is not None:
                    stage.bn.frozen = True
