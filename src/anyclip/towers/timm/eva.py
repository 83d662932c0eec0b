"""timm ``Eva`` image towers (EVA, EVA02, Perception Encoder), natively in Keras.

open_clip wraps ``timm.create_model(timm_model_name, num_classes=embed_dim, global_pool=timm_pool)`` as
``visual.trunk``. The trunk: a patch convolution (biased unless PE's ``norm_pre`` follows), a class token
(not in PE-bigG), learned position embeddings over all tokens, PE's ``norm_pre``, blocks, a final LayerNorm,
pooling (class token, or PE's attention pool :class:`~anyclip.towers.timm.vit_blocks.MAPHead`), then timm's biased
``head``. Blocks are pre-norm (``x + attn(norm1(x))``) or EVA02-E's post-norm (``x + norm1(attn(x))``), with
2D rotary embeddings on the patch tokens (EVA02, PE), SwiGLU MLPs with an inner LayerNorm (EVA02) and an
inner attention LayerNorm (EVA02). Options per model: :data:`anyclip.towers.timm.eva_config.TIMM_EVAS`.
Input: float images ``[batch, H, W, 3]`` (channels last).
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from ...layers.attention import attention
from ...layers.conv import patch_conv
from ...layers.dense import LINEAR_TABLE, dense
from ...layers.init import child_seed, constant_init, normal_init
from ...layers.norm import LAYER_NORM_TABLE, layer_norm
from ...layers.pooling import MAP_HEAD_TABLE, MAPHead
from ...layers.rope import RopeTables, apply_rope
from ...layers.transformer import call_layer
from ..base import Tower, lock_groups
from ..config import ConfigError
from .eva_config import EvaArch, TimmEvaConfig

# timm key (relative to ``blocks.{i}.``) -> attribute path on an EvaBlock, transform. Rows whose attribute a
# block lacks (another qkv layout or MLP) are skipped.
EVA_BLOCK_TABLE = tuple(
    (f"{t}.{leaf}", f"{t}.{'gamma' if leaf == 'weight' else 'beta'}", None)
    for t in ("norm1", "norm2", "attn.norm", "mlp.norm") for leaf in ("weight", "bias")
) + tuple(
    (f"{t}.weight", f"{t}.kernel", "linear")
    for t in ("attn.qkv", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj", "mlp.fc1", "mlp.fc1_g",
              "mlp.fc1_x", "mlp.fc2")
) + tuple(
    (f"{t}.bias", f"{t}.bias", None)
    for t in ("attn.qkv", "attn.q_proj", "attn.v_proj", "attn.proj", "mlp.fc1", "mlp.fc1_g", "mlp.fc1_x", "mlp.fc2")
) + (("attn.q_bias", "attn.q_bias", None), ("attn.v_bias", "attn.v_bias", None))

# open_clip key (relative to ``visual.``) -> attribute path on this tower, transform (anyclip.weights.mapping).
WEIGHT_TABLE = (
    ("trunk.patch_embed.proj.weight", "patch_kernel", "conv"),
    ("trunk.patch_embed.proj.bias", "patch_bias", None),
    ("trunk.cls_token", "cls_token", None),
    ("trunk.pos_embed", "pos_embed", None),
    ("trunk.norm_pre.", "norm_pre", LAYER_NORM_TABLE),
    ("trunk.blocks.{i}.", "blocks", EVA_BLOCK_TABLE),
    ("trunk.norm.", "norm", LAYER_NORM_TABLE),
    ("trunk.attn_pool.", "attn_pool", MAP_HEAD_TABLE),
    ("trunk.head.", "head", LINEAR_TABLE),
)


def _arch(arch) -> EvaArch:
    return arch if isinstance(arch, EvaArch) else EvaArch(**arch)


@keras.saving.register_keras_serializable(package="anyclip")
class EvaAttention(keras.layers.Layer):
    """timm's ``EvaAttention`` / ``AttentionRope``: q, k, v projections (layout ``arch.attn``), rotary
    embeddings on q and k, softmax attention, optional LayerNorm, output ``proj``.

    Example:
        >>> arch = EvaArch(16, 64, 1, 4, 4.0, 32, "token", attn="separate", attn_norm=True)
        >>> EvaAttention(arch)(keras.ops.zeros((2, 5, 64))).shape
        (2, 5, 64)
    """

    def __init__(self, arch: EvaArch | dict, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.arch = arch = _arch(arch)
        w, policy, std = arch.width, self.dtype_policy, arch.width ** -0.5
        self.qkv = self.q_proj = self.k_proj = self.v_proj = self.norm = None
        if arch.attn == "separate":
            self.q_proj = dense(w, std, seed, "q_proj", policy)
            self.k_proj = dense(w, std, seed, "k_proj", policy, bias=False)
            self.v_proj = dense(w, std, seed, "v_proj", policy)
        else:
            self.qkv = dense(3 * w, std, seed, "qkv", policy, bias=arch.attn == "fused")
        if arch.attn_norm:
            self.norm = layer_norm("norm", policy, eps=arch.norm_eps)
        self.proj = dense(w, std, seed, "proj", policy)

    def build(self, input_shape):
        w = self.arch.width
        for layer in (self.qkv, self.q_proj, self.k_proj, self.v_proj, self.norm, self.proj):
            if layer is not None:
                layer.build((None, w))
        self.q_bias = self.v_bias = None
        if self.arch.attn == "qv_bias":
            self.q_bias = self.add_weight(name="q_bias", shape=(w,), initializer=constant_init(0.0))
            self.v_bias = self.add_weight(name="v_bias", shape=(w,), initializer=constant_init(0.0))
        self.built = True

    def call(self, x, rope=None):
        """``rope``: :class:`~anyclip.layers.rope.RopeTables` of the tokens (identity rows for prefix tokens)."""
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        heads, w = self.arch.heads, self.arch.width
        split = (batch, length, heads, w // heads)
        if self.qkv is None:
            q, k, v = (ops.reshape(proj(x), split) for proj in (self.q_proj, self.k_proj, self.v_proj))
        else:
            qkv = self.qkv(x)
            if self.q_bias is not None:
                q_bias = ops.cast(self.q_bias, qkv.dtype)
                qkv = qkv + ops.concatenate([q_bias, ops.zeros_like(q_bias), ops.cast(self.v_bias, qkv.dtype)])
            qkv = ops.reshape(qkv, (batch, length, 3, heads, w // heads))
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        out = ops.reshape(attention(q, k, v), (batch, length, w))
        if self.norm is not None:
            out = self.norm(out)
        return self.proj(out)

    def get_config(self):
        return {**super().get_config(), "arch": dataclasses.asdict(self.arch)}


@keras.saving.register_keras_serializable(package="anyclip")
class EvaMLP(keras.layers.Layer):
    """timm's ``Mlp`` (``fc1`` -> exact GELU -> ``fc2``) or, with ``arch.swiglu``, its ``SwiGLU`` with inner
    LayerNorm: ``fc2(norm(silu(fc1_g(x)) * fc1_x(x)))``.

    Example:
        >>> EvaMLP(EvaArch(16, 64, 1, 4, 4.0, 32, "token", swiglu=True))(keras.ops.zeros((2, 5, 64))).shape
        (2, 5, 64)
    """

    def __init__(self, arch: EvaArch | dict, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.arch = arch = _arch(arch)
        w, hidden, policy = arch.width, arch.mlp_width, self.dtype_policy
        self.fc1 = self.fc1_g = self.fc1_x = self.norm = None
        if arch.swiglu:
            self.fc1_g = dense(hidden, w ** -0.5, seed, "fc1_g", policy)
            self.fc1_x = dense(hidden, w ** -0.5, seed, "fc1_x", policy)
            self.norm = layer_norm("norm", policy, eps=arch.norm_eps)
        else:
            self.fc1 = dense(hidden, w ** -0.5, seed, "fc1", policy)
        self.fc2 = dense(w, hidden ** -0.5, seed, "fc2", policy)

    def build(self, input_shape):
        for layer in (self.fc1, self.fc1_g, self.fc1_x):
            if layer is not None:
                layer.build((None, self.arch.width))
        for layer in (self.norm, self.fc2):
            if layer is not None:
                layer.build((None, self.arch.mlp_width))
        self.built = True

    def call(self, x):
        if self.fc1 is not None:
            return self.fc2(keras.activations.gelu(self.fc1(x), approximate=False))
        return self.fc2(self.norm(keras.activations.silu(self.fc1_g(x)) * self.fc1_x(x)))

    def get_config(self):
        return {**super().get_config(), "arch": dataclasses.asdict(self.arch)}


@keras.saving.register_keras_serializable(package="anyclip")
class EvaBlock(keras.layers.Layer):
    """timm's ``EvaBlock`` (pre-norm) or ``EvaBlockPostNorm`` (``arch.post_norm``), without layer scale.

    Example:
        >>> EvaBlock(EvaArch(16, 64, 1, 4, 4.0, 32, "token", post_norm=True))(keras.ops.zeros((2, 5, 64))).shape
        (2, 5, 64)
    """

    def __init__(self, arch: EvaArch | dict, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.arch = arch = _arch(arch)
        policy = self.dtype_policy
        self.norm1 = layer_norm("norm1", policy, eps=arch.norm_eps)
        self.attn = EvaAttention(arch, child_seed(seed, "attn"), name="attn", dtype=policy)
        self.norm2 = layer_norm("norm2", policy, eps=arch.norm_eps)
        self.mlp = EvaMLP(arch, child_seed(seed, "mlp"), name="mlp", dtype=policy)

    def build(self, input_shape):
        for layer in (self.norm1, self.attn, self.norm2, self.mlp):
            layer.build(input_shape)
        self.built = True

    def call(self, x, rope=None):
        if self.arch.post_norm:
            x = x + self.norm1(self.attn(x, rope=rope))
            return x + self.norm2(self.mlp(x))
        x = x + self.attn(self.norm1(x), rope=rope)
        return x + self.mlp(self.norm2(x))

    def get_config(self):
        return {**super().get_config(), "arch": dataclasses.asdict(self.arch)}


@keras.saving.register_keras_serializable(package="anyclip")
class TimmEva(Tower):
    """A timm EVA / EVA02 / PE tower: patchify, class token, positions, (norm_pre), blocks, norm, pool, head.

    ``quick_gelu`` is accepted for the tower signature and unused (timm towers keep their own activations).

    Example:
        >>> cfg = TimmEvaConfig("eva02_base_patch16_clip_224", 224, timm_pool="token", timm_proj=None,
        ...                     timm_model_kwargs={"depth": 1})
        >>> TimmEva(cfg, embed_dim=512)(keras.ops.zeros((1, 224, 224, 3))).shape
        (1, 512)
    """

    WEIGHT_TABLE = WEIGHT_TABLE  # how open_clip names this tower's weights (anyclip.weights.mapping)
    CONFIG = TimmEvaConfig

    def __init__(self, config: TimmEvaConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(config, embed_dim, quick_gelu, seed, **kwargs)
        cfg, arch, policy = self.config, self.config.arch, self.dtype_policy
        if cfg.timm_proj == "none" and arch.width != embed_dim:
            raise ConfigError(f"vision_cfg.timm_proj: 'none' needs the timm model's width ({arch.width}) equal to "
                              f"embed_dim ({embed_dim})")
        self.arch, self.width, self.patch = arch, arch.width, arch.patch_size
        self.num_patches = cfg.grid_size[0] * cfg.grid_size[1]
        self.num_tokens = self.num_patches + arch.prefix_tokens
        self.norm_pre = layer_norm("norm_pre", policy, eps=arch.norm_eps) if arch.pre_norm else None
        self.blocks = [EvaBlock(arch, child_seed(seed, f"blocks_{i}"), name=f"blocks_{i}", dtype=policy)
                       for i in range(arch.depth)]
        self.norm = layer_norm("norm", policy, eps=arch.norm_eps)
        self.attn_pool = None
        if arch.pool == "map":
            self.attn_pool = MAPHead(arch.width, arch.pool_heads, int(arch.width * arch.pool_mlp_ratio), False,
                                     arch.norm_eps, child_seed(seed, "attn_pool"), name="attn_pool", dtype=policy)
        self.head = dense(embed_dim, arch.width ** -0.5, seed, "head", policy) if cfg.timm_proj is None else None
        self.rope = None
        if arch.rope:
            ref = (arch.rope_ref, arch.rope_ref) if arch.rope_ref else None
            self.rope = RopeTables.build(cfg.grid_size, arch.width // arch.heads, ref_grid=ref,
                                         offset=arch.rope_offset, xy=arch.rope_xy, prefix_tokens=arch.prefix_tokens)

    def build(self, input_shape=None):
        p, w = self.patch, self.width
        self.patch_kernel = self.add_weight(name="patch_kernel", shape=(p, p, 3, w),
                                            initializer=normal_init((3 * p * p) ** -0.5, self.seed, "patch_kernel"))
        self.patch_bias = self.cls_token = None
        if not self.arch.pre_norm:
            self.patch_bias = self.add_weight(name="patch_bias", shape=(w,), initializer=constant_init(0.0))
        if self.arch.class_token:
            self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, w),
                                             initializer=normal_init(0.02, self.seed, "cls_token"))
        self.pos_embed = self.add_weight(name="pos_embed", shape=(1, self.num_tokens, w),
                                         initializer=normal_init(0.02, self.seed, "pos_embed"))
        tokens = (None, self.num_tokens, w)
        for layer in (self.norm_pre, *self.blocks, self.norm, self.attn_pool):
            if layer is not None:
                layer.build(tokens)
        if self.head is not None:
            self.head.build((None, w))
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
        x = patch_conv(images, self.patch_kernel, self.patch_bias, p)
        return ops.reshape(x, (batch, gh * gw, self.width))

    def forward_features(self, images):
        """Tokens after the blocks and the final norm, ``[batch, tokens, width]`` (timm's ``forward_features``)."""
        x = self.patchify(images)
        if self.cls_token is not None:
            cls = ops.broadcast_to(ops.cast(self.cls_token, x.dtype), (ops.shape(x)[0], 1, self.width))
            x = ops.concatenate([cls, x], axis=1)
        x = x + ops.cast(self.pos_embed, x.dtype)
        if self.norm_pre is not None:
            x = self.norm_pre(x)
        for block in self.blocks:
            x = call_layer(block, x, rope=self.rope, remat=self.grad_checkpointing)
        return self.norm(x)

    def call(self, images, training: bool = False):
        x = self.forward_features(images)
        pooled = self.attn_pool(x) if self.attn_pool is not None else x[:, 0]
        return self.head(pooled) if self.head is not None else pooled

    def adapt_state_dict(self, state: dict, prefix: str = "visual.") -> dict:
        """Resample a checkpoint's ``trunk.pos_embed`` made for another (square) grid to this tower's grid.

        open_clip's ``force_image_size`` on timm towers (timm ``set_input_size``: bicubic, antialiased, prefix
        tokens kept). Other states are returned unchanged.

        Example:
            >>> state = model.visual.adapt_state_dict(state)  # doctest: +SKIP
        """
        import math

        from ...layers.position import resize_image_pos_embed
        key, extra = prefix + "trunk.pos_embed", self.arch.prefix_tokens
        value = state.get(key)
        if value is None or value.ndim != 3 or value.shape[2] != self.width or value.shape[1] == self.num_tokens:
            return state
        if value.shape[1] <= extra or math.isqrt(value.shape[1] - extra) ** 2 != value.shape[1] - extra:
            return state  # not a square grid: the shape check of the loader reports it
        return {**state, key: resize_image_pos_embed(value[0], self.config.grid_size, extra_tokens=extra)[None]}

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the trunk except its last ``unlocked_groups`` groups (open_clip ``TimmModel.lock``).

        timm's groups, first to last: [patch embedding, class token, positions, norm_pre], each block but the
        last, [last block, norm], [attention pool, head] (when the model has either).

        Example:
            >>> model.visual.lock(unlocked_groups=1)  # only the head stays trainable  # doctest: +SKIP
        """
        stem = [v for v in (self.patch_kernel, self.patch_bias, self.cls_token, self.pos_embed) if v is not None]
        stem += self.norm_pre.weights if self.norm_pre is not None else []
        head = [v for layer in (self.attn_pool, self.head) if layer is not None for v in layer.weights]
        groups = [stem, *[b.weights for b in self.blocks[:-1]], self.blocks[-1].weights + self.norm.weights]
        lock_groups(self, groups + ([head] if head else []), unlocked_groups, "image tower")
