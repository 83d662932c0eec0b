"""timm Swin Transformer image tower (open_clip's ``swin_base_patch4_window7_224``), natively in Keras.

The trunk (``visual.trunk``): a 4x4 stride-4 patch convolution and LayerNorm; four stages, each (but the
first) opening with patch merging (2x2 neighbours concatenated, LayerNorm, bias-free Linear to twice the
width); pre-norm blocks whose attention runs inside 7x7 windows with a learned relative position bias,
every second block on windows shifted by half a window (a cyclic roll, with a -100 mask between pieces
that the roll brought together); a final LayerNorm and an average pool. open_clip's ``visual.head``
projects to ``embed_dim``. Tensors are channels last, ``[batch, H, W, channels]``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ...layers.attention import attention
from ...layers.conv import patch_conv
from ...layers.dense import LINEAR_TABLE, dense
from ...layers.drop import drop_path
from ...layers.init import child_seed, constant_init, normal_init, seed_generator
from ...layers.mlp import MLP
from ...layers.norm import LAYER_NORM_TABLE, layer_norm
from ...layers.transformer import call_layer
from ..base import Tower, lock_groups
from .pooled import PROJ_HEAD_TABLE, ProjHead, TimmSwinConfig

# timm key (relative to ``layers.{i}.blocks.{j}.``) -> attribute path on a SwinBlock, transform.
BLOCK_TABLE = (
    ("norm1.", "norm1", LAYER_NORM_TABLE),
    ("attn.relative_position_bias_table", "relative_position_bias_table", None),
    ("attn.qkv.", "qkv", LINEAR_TABLE),
    ("attn.proj.", "proj", LINEAR_TABLE),
    ("norm2.", "norm2", LAYER_NORM_TABLE),
    ("mlp.fc1.", "mlp.c_fc", LINEAR_TABLE),
    ("mlp.fc2.", "mlp.c_proj", LINEAR_TABLE),
)
STAGE_TABLE = (  # the first stage has no patch merging: its rows are skipped
    ("downsample.norm.", "merge_norm", LAYER_NORM_TABLE),
    ("downsample.reduction.", "merge_reduction", LINEAR_TABLE),
    ("blocks.{i}.", "blocks", BLOCK_TABLE),
)
# open_clip key (relative to ``visual.``) -> attribute path on this tower, transform (anyclip.weights.mapping).
WEIGHT_TABLE = (
    ("trunk.patch_embed.proj.weight", "patch_kernel", "conv"),
    ("trunk.patch_embed.proj.bias", "patch_bias", None),
    ("trunk.patch_embed.norm.", "patch_norm", LAYER_NORM_TABLE),
    ("trunk.layers.{i}.", "stages", STAGE_TABLE),
    ("trunk.norm.", "norm", LAYER_NORM_TABLE),
    ("head.", "head", PROJ_HEAD_TABLE),
)
MASK_VALUE = -100.0  # timm's (and the original Swin's) additive mask between pieces of a shifted window


def relative_position_index(window: int) -> np.ndarray:
    """``[w*w, w*w]`` row of each token pair's relative offset in the ``(2w-1)^2`` bias table (timm's order).

    Example:
        >>> relative_position_index(2)[0].tolist()
        [4, 3, 1, 0]
    """
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return rel[0] * (2 * window - 1) + rel[1]


def shift_mask(size: int, window: int, shift: int) -> np.ndarray:
    """``[windows, w*w, w*w]`` additive mask of a shifted-window block: 0 within a piece, -100 across pieces.

    Example:
        >>> shift_mask(4, 2, 1).shape
        (4, 4, 4)
    """
    region = np.zeros((size, size), np.float32)
    bounds = ((0, size - window), (size - window, size - shift), (size - shift, size))
    for i, (h0, h1) in enumerate(bounds):
        for j, (w0, w1) in enumerate(bounds):
            region[h0:h1, w0:w1] = 3 * i + j
    n = size // window
    pieces = region.reshape(n, window, n, window).transpose(0, 2, 1, 3).reshape(n * n, window * window)
    return np.where(pieces[:, None, :] != pieces[:, :, None], MASK_VALUE, 0.0).astype(np.float32)


@keras.saving.register_keras_serializable(package="anyclip")
class SwinBlock(keras.layers.Layer):
    """timm's ``SwinTransformerBlock`` at a fixed square resolution: (shifted) window attention, then an MLP.

    Example:
        >>> SwinBlock(16, heads=2, resolution=4, window=2, shift=1)(keras.ops.zeros((1, 4, 4, 16))).shape
        (1, 4, 4, 16)
    """

    def __init__(self, dim: int, heads: int, resolution: int, window: int, shift: int = 0, mlp_ratio: int = 4,
                 norm_eps: float = 1e-5, drop_path: float = 0.0, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        # timm: a window at least as large as the feature map covers it whole, without shifting
        window, shift = (resolution, 0) if resolution <= window else (window, shift)
        if resolution % window:
            raise ValueError(f"Swin block: a {resolution}x{resolution} feature map does not split into "
                             f"{window}x{window} windows")
        self.dim, self.heads, self.resolution, self.window, self.shift = dim, heads, resolution, window, shift
        self.mlp_ratio, self.norm_eps, self.drop_path, self.seed = mlp_ratio, norm_eps, drop_path, seed
        policy = self.dtype_policy
        self.norm1 = layer_norm("norm1", policy, eps=norm_eps)
        self.qkv = dense(3 * dim, dim ** -0.5, seed, "qkv", policy)
        self.proj = dense(dim, dim ** -0.5, seed, "proj", policy)
        self.norm2 = layer_norm("norm2", policy, eps=norm_eps)
        self.mlp = MLP(dim, mlp_ratio * dim, seed=child_seed(seed, "mlp"), name="mlp", dtype=policy)
        self.index = relative_position_index(window).reshape(-1)
        self.mask = shift_mask(resolution, window, shift)[:, None] if shift else None  # [windows, 1, N, N]
        self.seed_generator = seed_generator(seed) if drop_path else None

    def build(self, input_shape=None):
        self.relative_position_bias_table = self.add_weight(
            name="relative_position_bias_table", shape=((2 * self.window - 1) ** 2, self.heads),
            initializer=normal_init(0.02, self.seed, "relative_position_bias_table"))
        for layer in (self.norm1, self.qkv, self.norm2, self.mlp):
            layer.build((None, self.dim))
        self.proj.build((None, self.dim))
        self.built = True

    def attention_bias(self, dtype):
        """Relative position bias (+ shift mask): ``[1 or windows, heads, N, N]``."""
        n = self.window ** 2
        bias = ops.take(ops.cast(self.relative_position_bias_table, dtype), self.index, axis=0)
        bias = ops.transpose(ops.reshape(bias, (n, n, self.heads)), (2, 0, 1))[None]
        return bias + ops.cast(self.mask, dtype) if self.mask is not None else bias

    def window_attention(self, x):
        """Attention inside each (shifted) window of ``x`` ``[batch, H, W, dim]``, back in place."""
        batch, r, w, s = ops.shape(x)[0], self.resolution, self.window, self.shift
        n, nw, hd = w * w, (r // w) ** 2, self.dim // self.heads
        if s:
            x = ops.roll(x, (-s, -s), axis=(1, 2))
        x = ops.reshape(x, (batch, r // w, w, r // w, w, self.dim))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (batch, nw, n, self.dim))
        qkv = ops.reshape(self.qkv(x), (batch, nw, n, 3, self.heads, hd))
        qkv = ops.reshape(qkv, (batch * nw, n, 3, self.heads, hd))  # every window of every image: one sequence
        bias = ops.broadcast_to(self.attention_bias(x.dtype)[None], (batch, nw, self.heads, n, n))
        out = attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], bias=ops.reshape(bias, (batch * nw, self.heads, n, n)))
        out = self.proj(ops.reshape(out, (batch, nw, n, self.dim)))
        out = ops.reshape(out, (batch, r // w, r // w, w, w, self.dim))
        out = ops.reshape(ops.transpose(out, (0, 1, 3, 2, 4, 5)), (batch, r, r, self.dim))
        return ops.roll(out, (s, s), axis=(1, 2)) if s else out

    def call(self, x, training: bool = False):
        rate = self.drop_path if training else 0.0
        x = x + drop_path(self.window_attention(self.norm1(x)), rate, self.seed_generator)
        return x + drop_path(self.mlp(self.norm2(x)), rate, self.seed_generator)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "resolution": self.resolution,
                "window": self.window, "shift": self.shift, "mlp_ratio": self.mlp_ratio,
                "norm_eps": self.norm_eps, "drop_path": self.drop_path, "seed": self.seed}


@keras.saving.register_keras_serializable(package="anyclip")
class SwinStage(keras.layers.Layer):
    """timm's ``SwinTransformerStage``: optional patch merging, then blocks alternating plain / shifted windows.

    ``resolution`` is the stage's feature-map side after merging.

    Example:
        >>> SwinStage(8, 16, 2, heads=2, resolution=4, window=2, merge=True)(keras.ops.zeros((1, 8, 8, 8))).shape
        (1, 4, 4, 16)
    """

    def __init__(self, in_dim: int, dim: int, depth: int, heads: int, resolution: int, window: int,
                 merge: bool, mlp_ratio: int = 4, norm_eps: float = 1e-5, drop_paths=None, seed: int | None = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.in_dim, self.dim, self.depth, self.heads, self.resolution = in_dim, dim, depth, heads, resolution
        self.window, self.merge, self.mlp_ratio, self.norm_eps, self.seed = window, merge, mlp_ratio, norm_eps, seed
        self.drop_paths = list(drop_paths or [0.0] * depth)
        policy = self.dtype_policy
        self.merge_norm = layer_norm("merge_norm", policy, eps=norm_eps) if merge else None
        self.merge_reduction = dense(dim, (4 * in_dim) ** -0.5, seed, "merge_reduction", policy,
                                     bias=False) if merge else None
        self.blocks = [SwinBlock(dim, heads, resolution, window, 0 if j % 2 == 0 else window // 2, mlp_ratio,
                                 norm_eps, self.drop_paths[j], child_seed(seed, f"blocks.{j}"), name=f"blocks_{j}",
                                 dtype=policy) for j in range(depth)]
        self.grad_checkpointing = False

    def build(self, input_shape=None):
        if self.merge:
            self.merge_norm.build((None, 4 * self.in_dim))
            self.merge_reduction.build((None, 4 * self.in_dim))
        for block in self.blocks:
            block.build()
        self.built = True

    def call(self, x, training: bool = False):
        if self.merge:  # timm's order of the 4C features: (column offset, row offset, channel)
            batch, r = ops.shape(x)[0], self.resolution
            x = ops.reshape(x, (batch, r, 2, r, 2, self.in_dim))
            x = ops.reshape(ops.transpose(x, (0, 1, 3, 4, 2, 5)), (batch, r, r, 4 * self.in_dim))
            x = self.merge_reduction(self.merge_norm(x))
        for block in self.blocks:
            x = call_layer(block, x, training=training, remat=self.grad_checkpointing)
        return x

    def get_config(self):
        return {**super().get_config(), "in_dim": self.in_dim, "dim": self.dim, "depth": self.depth,
                "heads": self.heads, "resolution": self.resolution, "window": self.window, "merge": self.merge,
                "mlp_ratio": self.mlp_ratio, "norm_eps": self.norm_eps, "drop_paths": self.drop_paths,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="anyclip")
class TimmSwin(Tower):
    """A timm Swin Transformer tower: patch embedding, four window-attention stages, norm, average pool, head.

    ``quick_gelu`` is accepted for the tower signature and unused (timm's GELU, as in open_clip).

    Example:
        >>> cfg = TimmSwinConfig("swin_base_patch4_window7_224", timm_model_kwargs={"depths": [1, 1, 1, 1]})
        >>> TimmSwin(cfg, embed_dim=32)(keras.ops.zeros((1, 224, 224, 3))).shape
        (1, 32)
    """

    WEIGHT_TABLE = WEIGHT_TABLE  # how open_clip names this tower's weights (anyclip.weights.mapping)
    CONFIG = TimmSwinConfig

    def __init__(self, config: TimmSwinConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(config, embed_dim, quick_gelu, seed, **kwargs)
        cfg, arch, policy = self.config, self.config.arch, self.dtype_policy
        self.arch, rates, dims = arch, cfg.drop_path_rates, arch.dims
        self.grid = arch.image_size // arch.patch_size
        self.patch_norm = layer_norm("patch_norm", policy, eps=arch.norm_eps)
        self.stages = [SwinStage(dims[max(s - 1, 0)], dims[s], arch.depths[s], arch.num_heads[s], self.grid // 2 ** s,
                                 arch.window_size, s > 0, arch.mlp_ratio, arch.norm_eps, rates[s],
                                 child_seed(seed, f"layers.{s}"), name=f"layers_{s}", dtype=policy)
                       for s in range(len(dims))]
        self.norm = layer_norm("norm", policy, eps=arch.norm_eps)
        self.head = ProjHead(cfg.timm_proj, arch.width, embed_dim, cfg.timm_proj_bias, cfg.timm_drop,
                             child_seed(seed, "head"), name="head", dtype=policy)

    def build(self, input_shape=None):
        p, dim = self.arch.patch_size, self.arch.embed_dim
        self.patch_kernel = self.add_weight(name="patch_kernel", shape=(p, p, 3, dim),
                                            initializer=normal_init((3 * p * p) ** -0.5, self.seed, "patch_kernel"))
        self.patch_bias = self.add_weight(name="patch_bias", shape=(dim,), initializer=constant_init(0.0))
        self.patch_norm.build((None, dim))
        for stage in self.stages:
            stage.build()
        self.norm.build((None, self.arch.width))
        self.head.build()
        self.built = True

    def forward_features(self, images, training: bool = False):
        """Features after the last stage and ``norm``, ``[batch, 7, 7, width]`` (timm's ``forward_features``)."""
        shape, size = ops.shape(images), self.arch.image_size
        if isinstance(shape[1], int) and isinstance(shape[2], int) and (shape[1], shape[2]) != (size, size):
            raise ValueError(f"image of {tuple(shape[1:3])} pixels, but {self.config.timm_model_name} takes "
                             f"{size}x{size} images only (timm's Swin refuses other sizes too)")
        x = self.patch_norm(patch_conv(images, self.patch_kernel, self.patch_bias, self.arch.patch_size))
        for stage in self.stages:
            x = stage(x, training=training)
        return self.norm(x)

    def call(self, images, training: bool = False):
        return self.head(ops.mean(self.forward_features(images, training), axis=(1, 2)), training=training)

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the trunk except its last ``unlocked_groups`` groups (open_clip ``TimmModel.lock``).

        timm's groups, first to last: the patch embedding, each block (a stage's first with its patch
        merging; the last with the final norm). open_clip's ``head`` stays trainable.

        Example:
            >>> model.visual.lock(unlocked_groups=1)  # the last block and the norm stay trainable  # doctest: +SKIP
        """
        groups = [[self.patch_kernel, self.patch_bias, *self.patch_norm.weights]]
        for stage in self.stages:
            merge = [*stage.merge_norm.weights, *stage.merge_reduction.weights] if stage.merge else []
            for j, block in enumerate(stage.blocks):
                groups.append((merge if j == 0 else []) + list(block.weights))
        groups[-1] += list(self.norm.weights)
        lock_groups(self, groups, unlocked_groups, "image tower")
        for var in self.head.weights:
            var.trainable = True
