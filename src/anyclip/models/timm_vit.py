"""timm ViT image towers without class token and with a MAP head (SigLIP / SigLIP2), natively in Keras.

open_clip wraps ``timm.create_model(timm_model_name, global_pool="map", num_classes=0)`` as ``visual.trunk``
(plus an optional ``visual.head.proj``). The trunk: a biased patch convolution, learned position embeddings
(no class token), pre-norm blocks, a final LayerNorm, then the attention-pool head (:class:`MAPHead`).
LayerNorms use timm's epsilon 1e-6; the GELU is exact or tanh-approximated per model
(:data:`anyclip.models.timm_config.TIMM_VITS`). Input: float images ``[batch, H, W, 3]`` (channels last).
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from .config import ConfigError
from .layers import Transformer, child_seed, constant_init, dense, layer_norm, lock_groups, normal_init
from .timm_config import TimmViTConfig
from .timm_layers import MAP_HEAD_TABLE, TIMM_BLOCK_TABLE, TIMM_LN_EPS, MAPHead

# open_clip key (relative to ``visual.``) -> attribute path on this tower, transform (anyclip.weights.mapping).
WEIGHT_TABLE = (
    ("trunk.patch_embed.proj.weight", "patch_kernel", "conv"),
    ("trunk.patch_embed.proj.bias", "patch_bias", None),
    ("trunk.pos_embed", "pos_embed", None),
    ("trunk.blocks.{i}.", "transformer.resblocks", TIMM_BLOCK_TABLE),
    ("trunk.norm.weight", "norm.gamma", None),
    ("trunk.norm.bias", "norm.beta", None),
    ("trunk.attn_pool.", "attn_pool", MAP_HEAD_TABLE),
    ("head.proj.weight", "head_proj.kernel", "linear"),  # timm_proj: "linear" only
    ("head.proj.bias", "head_proj.bias", None),
)


@keras.saving.register_keras_serializable(package="anyclip")
class TimmViT(keras.layers.Layer):
    """A timm SigLIP ViT tower: patchify (+bias), add positions, blocks, ``norm``, MAP head, optional projection.

    ``quick_gelu`` is accepted for the tower signature and unused: timm towers always use their own GELU,
    as in open_clip.

    Example:
        >>> cfg = TimmViTConfig("vit_base_patch16_siglip_224", 224, timm_pool="map", timm_proj="none",
        ...                     timm_model_kwargs={"depth": 1})
        >>> TimmViT(cfg, embed_dim=768)(keras.ops.zeros((1, 224, 224, 3))).shape
        (1, 768)
    """

    WEIGHT_TABLE = WEIGHT_TABLE  # how open_clip names this tower's weights (anyclip.weights.mapping)

    def __init__(self, config: TimmViTConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.config = config if isinstance(config, TimmViTConfig) else TimmViTConfig(**config)
        self.embed_dim, self.quick_gelu = embed_dim, quick_gelu
        cfg, arch, policy = self.config, self.config.arch, self.dtype_policy
        if cfg.timm_proj == "none" and arch.width != embed_dim:
            raise ConfigError(f"vision_cfg.timm_proj: 'none' needs the timm model's width ({arch.width}) equal to "
                              f"embed_dim ({embed_dim})")
        self.width, self.patch = arch.width, arch.patch_size
        self.num_patches = cfg.grid_size[0] * cfg.grid_size[1]
        self.transformer = Transformer(arch.width, arch.depth, arch.heads, arch.mlp_width, False, None,
                                       child_seed(seed, "transformer"), TIMM_LN_EPS, arch.gelu_tanh,
                                       name="transformer", dtype=policy)
        self.norm = layer_norm("norm", policy, eps=TIMM_LN_EPS)
        self.attn_pool = MAPHead(arch.width, arch.heads, arch.mlp_width, arch.gelu_tanh, TIMM_LN_EPS,
                                 child_seed(seed, "attn_pool"), name="attn_pool", dtype=policy)
        self.head_proj = None
        if cfg.timm_proj == "linear":
            self.head_proj = dense(embed_dim, arch.width ** -0.5, seed, "head_proj", policy, bias=cfg.timm_proj_bias)

    def build(self, input_shape=None):
        p, w = self.patch, self.width
        self.patch_kernel = self.add_weight(name="patch_kernel", shape=(p, p, 3, w),
                                            initializer=normal_init((3 * p * p) ** -0.5, self.seed, "patch_kernel"))
        self.patch_bias = self.add_weight(name="patch_bias", shape=(w,), initializer=constant_init(0.0))
        self.pos_embed = self.add_weight(name="pos_embed", shape=(1, self.num_patches, w),
                                         initializer=normal_init(0.02, self.seed, "pos_embed"))
        tokens = (None, self.num_patches, w)
        self.transformer.build(tokens)
        self.norm.build(tokens)
        self.attn_pool.build(tokens)
        if self.head_proj is not None:
            self.head_proj.build((None, w))
        self.built = True

    def patchify(self, images):
        """The patch convolution (stride = kernel) as one matmul over patches -> ``[batch, patches, width]``."""
        p, shape = self.patch, ops.shape(images)
        batch, gh, gw = shape[0], shape[1] // p, shape[2] // p
        if isinstance(gh, int) and isinstance(gw, int) and (gh, gw) != tuple(self.config.grid_size):
            raise ValueError(f"image of {tuple(shape[1:3])} pixels gives a {gh}x{gw} patch grid, but this model "
                             f"expects {self.config.image_size} images ({self.config.grid_size[0]}x"
                             f"{self.config.grid_size[1]} patches of {p}); open_clip's timm tower refuses it too. "
                             "Resize the images, or build the model with force_image_size")
        x = ops.reshape(images[:, :gh * p, :gw * p, :], (batch, gh, p, gw, p, 3))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (batch, gh * gw, p * p * 3))
        kernel = ops.reshape(ops.cast(self.patch_kernel, x.dtype), (p * p * 3, self.width))
        return ops.matmul(x, kernel) + ops.cast(self.patch_bias, x.dtype)

    def forward_features(self, images):
        """Tokens after the blocks and the final norm, ``[batch, patches, width]`` (timm's ``forward_features``)."""
        x = self.patchify(images)
        x = x + ops.cast(self.pos_embed, x.dtype)
        return self.norm(self.transformer(x))

    def call(self, images, training: bool = False):
        pooled = self.attn_pool(self.forward_features(images))
        return self.head_proj(pooled) if self.head_proj is not None else pooled

    def adapt_state_dict(self, state: dict, prefix: str = "visual.") -> dict:
        """Resize a checkpoint's ``trunk.pos_embed`` made for another (square) grid to this tower's grid.

        open_clip's ``force_image_size`` on timm towers: timm's ``resample_abs_pos_embed`` (bicubic,
        antialiased, no prefix tokens). Other states are returned unchanged.

        Example:
            >>> state = model.visual.adapt_state_dict(state)  # doctest: +SKIP
        """
        import math

        from ..weights.resize import resize_image_pos_embed
        key = prefix + "trunk.pos_embed"
        value = state.get(key)
        if value is None or value.ndim != 3 or value.shape[2] != self.width or value.shape[1] == self.num_patches:
            return state
        if math.isqrt(value.shape[1]) ** 2 != value.shape[1]:
            return state  # not a square grid: the shape check of the loader reports it
        resized = resize_image_pos_embed(value[0], self.config.grid_size, extra_tokens=0)
        return {**state, key: resized[None]}

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the trunk except its last ``unlocked_groups`` groups (open_clip ``TimmModel.lock``).

        timm's groups, first to last: [patch embedding, positions], each block but the last, [last block,
        norm], [attention pool]. The optional ``head.proj`` stays trainable, as in open_clip.

        Example:
            >>> model.visual.lock(unlocked_groups=1)  # only the attention pool stays trainable  # doctest: +SKIP
        """
        blocks = self.transformer.resblocks
        groups = [[self.patch_kernel, self.patch_bias, self.pos_embed], *[b.weights for b in blocks[:-1]],
                  blocks[-1].weights + self.norm.weights, self.attn_pool.weights]
        lock_groups(self, groups, unlocked_groups, "image tower")
        for var in self.head_proj.weights if self.head_proj is not None else []:
            var.trainable = True

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (see :class:`layers.Transformer`)."""
        self.transformer.grad_checkpointing = bool(enable)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embed_dim)

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config),
                "embed_dim": self.embed_dim, "quick_gelu": self.quick_gelu, "seed": self.seed}
