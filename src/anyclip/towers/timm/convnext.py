"""timm ConvNeXt image towers (open_clip's ``convnext_*`` models), natively in Keras.

open_clip wraps ``timm.create_model(name)`` as ``visual.trunk`` with timm's head reset to no classes: a 4x4
stride-4 patch convolution and LayerNorm (the stem); four stages, each (but the first) opening with a
LayerNorm and a 2x2 stride-2 convolution, then blocks ``x + gamma * fc2(gelu(fc1(norm(dwconv7x7(x)))))``;
an average pool and LayerNorm (timm's ``head.norm``). open_clip's ``visual.head`` projects to ``embed_dim``
(:class:`anyclip.towers.timm.pooled.ProjHead`). Tensors are channels last, ``[batch, H, W, channels]``.
"""

from __future__ import annotations

import keras
from keras import ops

from ...layers.conv import conv2d, patch_conv
from ...layers.dense import LINEAR_TABLE, dense
from ...layers.drop import drop_path
from ...layers.init import child_seed, constant_init, normal_init, seed_generator
from ...layers.mlp import activation
from ...layers.norm import LAYER_NORM_TABLE, layer_norm
from ...layers.transformer import call_layer
from ..base import Tower, lock_groups
from .pooled import PROJ_HEAD_TABLE, ProjHead, TimmConvNeXtConfig

# timm key (relative to ``stages.{i}.blocks.{j}.``) -> attribute path on a ConvNeXtBlock, transform.
BLOCK_TABLE = (
    ("conv_dw.weight", "dw_kernel", "conv"),  # (C, 1, 7, 7) <-> our (7, 7, 1, C)
    ("conv_dw.bias", "dw_bias", None),
    ("norm.", "norm", LAYER_NORM_TABLE),
    ("mlp.fc1.", "fc1", LINEAR_TABLE),
    ("mlp.fc2.", "fc2", LINEAR_TABLE),
    ("gamma", "gamma", None),
)
STAGE_TABLE = (  # the downsample rows are skipped for the first stage, which has none
    ("downsample.0.", "downsample_norm", LAYER_NORM_TABLE),
    ("downsample.1.weight", "downsample_kernel", "conv"),
    ("downsample.1.bias", "downsample_bias", None),
    ("blocks.{i}.", "blocks", BLOCK_TABLE),
)
# open_clip key (relative to ``visual.``) -> attribute path on this tower, transform (anyclip.weights.mapping).
WEIGHT_TABLE = (
    ("trunk.stem.0.weight", "stem_kernel", "conv"),
    ("trunk.stem.0.bias", "stem_bias", None),
    ("trunk.stem.1.", "stem_norm", LAYER_NORM_TABLE),
    ("trunk.stages.{i}.", "stages", STAGE_TABLE),
    ("trunk.head.norm.", "head_norm", LAYER_NORM_TABLE),
    ("head.", "head", PROJ_HEAD_TABLE),
)


@keras.saving.register_keras_serializable(package="anyclip")
class ConvNeXtBlock(keras.layers.Layer):
    """``x + drop_path(gamma * fc2(gelu(fc1(norm(dwconv(x))))))`` (timm's ``ConvNeXtBlock``, channels last).

    Example:
        >>> ConvNeXtBlock(8, kernel_size=3)(keras.ops.zeros((1, 4, 4, 8))).shape
        (1, 4, 4, 8)
    """

    def __init__(self, channels: int, kernel_size: int = 7, mlp_ratio: int = 4, norm_eps: float = 1e-6,
                 drop_path: float = 0.0, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.kernel_size, self.mlp_ratio = channels, kernel_size, mlp_ratio
        self.norm_eps, self.drop_path, self.seed = norm_eps, drop_path, seed
        policy, hidden = self.dtype_policy, mlp_ratio * channels
        self.norm = layer_norm("norm", policy, eps=norm_eps)
        self.fc1 = dense(hidden, channels ** -0.5, seed, "fc1", policy)
        self.fc2 = dense(channels, hidden ** -0.5, seed, "fc2", policy)
        self.seed_generator = seed_generator(seed) if drop_path else None

    def build(self, input_shape=None):
        k, c = self.kernel_size, self.channels
        self.dw_kernel = self.add_weight(name="dw_kernel", shape=(k, k, 1, c),
                                         initializer=normal_init(k ** -1, self.seed, "dw_kernel"))
        self.dw_bias = self.add_weight(name="dw_bias", shape=(c,), initializer=constant_init(0.0))
        self.gamma = self.add_weight(name="gamma", shape=(c,), initializer=constant_init(1e-6))
        self.norm.build((None, None, None, c))
        self.fc1.build((None, c))
        self.fc2.build((None, self.mlp_ratio * c))
        self.built = True

    def call(self, x, training: bool = False):
        y = self.norm(conv2d(x, self.dw_kernel, self.dw_bias))
        y = self.fc2(activation(False)(self.fc1(y))) * ops.cast(self.gamma, x.dtype)
        return x + drop_path(y, self.drop_path if training else 0.0, self.seed_generator)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "kernel_size": self.kernel_size,
                "mlp_ratio": self.mlp_ratio, "norm_eps": self.norm_eps, "drop_path": self.drop_path,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="anyclip")
class ConvNeXtStage(keras.layers.Layer):
    """timm's ``ConvNeXtStage``: optional LayerNorm + 2x2 stride-2 convolution, then :class:`ConvNeXtBlock` s.

    Example:
        >>> ConvNeXtStage(4, 8, depth=1, downsample=True)(keras.ops.zeros((1, 6, 6, 4))).shape
        (1, 3, 3, 8)
    """

    def __init__(self, in_channels: int, channels: int, depth: int, downsample: bool, kernel_size: int = 7,
                 mlp_ratio: int = 4, norm_eps: float = 1e-6, drop_paths=None, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.channels, self.depth, self.downsample = in_channels, channels, depth, downsample
        self.kernel_size, self.mlp_ratio, self.norm_eps, self.seed = kernel_size, mlp_ratio, norm_eps, seed
        self.drop_paths = list(drop_paths or [0.0] * depth)
        policy = self.dtype_policy
        self.downsample_norm = layer_norm("downsample_norm", policy, eps=norm_eps) if downsample else None
        self.blocks = [ConvNeXtBlock(channels, kernel_size, mlp_ratio, norm_eps, self.drop_paths[j],
                                     child_seed(seed, f"blocks.{j}"), name=f"blocks_{j}", dtype=policy)
                       for j in range(depth)]
        self.grad_checkpointing = False

    def build(self, input_shape=None):
        if self.downsample:
            self.downsample_norm.build((None, None, None, self.in_channels))
            self.downsample_kernel = self.add_weight(
                name="downsample_kernel", shape=(2, 2, self.in_channels, self.channels),
                initializer=normal_init((4 * self.in_channels) ** -0.5, self.seed, "downsample_kernel"))
            self.downsample_bias = self.add_weight(name="downsample_bias", shape=(self.channels,),
                                                   initializer=constant_init(0.0))
        for block in self.blocks:
            block.build()
        self.built = True

    def call(self, x, training: bool = False):
        if self.downsample:
            x = patch_conv(self.downsample_norm(x), self.downsample_kernel, self.downsample_bias, 2)
        for block in self.blocks:
            x = call_layer(block, x, training=training, remat=self.grad_checkpointing)
        return x

    def get_config(self):
        return {**super().get_config(), "in_channels": self.in_channels, "channels": self.channels,
                "depth": self.depth, "downsample": self.downsample, "kernel_size": self.kernel_size,
                "mlp_ratio": self.mlp_ratio, "norm_eps": self.norm_eps, "drop_paths": self.drop_paths,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="anyclip")
class TimmConvNeXt(Tower):
    """A timm ConvNeXt tower: patch stem, four stages, average pool + LayerNorm, open_clip's projection head.

    ``quick_gelu`` is accepted for the tower signature and unused (timm's GELU, as in open_clip).

    Example:
        >>> cfg = TimmConvNeXtConfig("convnext_tiny", 64, timm_pool="", timm_model_kwargs={"depths": [1, 1, 1, 1]})
        >>> TimmConvNeXt(cfg, embed_dim=32)(keras.ops.zeros((1, 64, 64, 3))).shape
        (1, 32)
    """

    WEIGHT_TABLE = WEIGHT_TABLE  # how open_clip names this tower's weights (anyclip.weights.mapping)
    CONFIG = TimmConvNeXtConfig

    def __init__(self, config: TimmConvNeXtConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(config, embed_dim, quick_gelu, seed, **kwargs)
        cfg, arch, policy = self.config, self.config.arch, self.dtype_policy
        self.arch = arch
        self.stem_norm = layer_norm("stem_norm", policy, eps=arch.norm_eps)
        rates = cfg.drop_path_rates
        self.stages = [ConvNeXtStage(arch.dims[max(s - 1, 0)], dim, depth, s > 0, arch.kernel_size, arch.mlp_ratio,
                                     arch.norm_eps, rates[s], child_seed(seed, f"stages.{s}"), name=f"stages_{s}",
                                     dtype=policy)
                       for s, (dim, depth) in enumerate(zip(arch.dims, arch.depths))]
        self.head_norm = layer_norm("head_norm", policy, eps=arch.norm_eps)
        self.head = ProjHead(cfg.timm_proj, arch.width, embed_dim, cfg.timm_proj_bias, cfg.timm_drop,
                             child_seed(seed, "head"), name="head", dtype=policy)

    def build(self, input_shape=None):
        p, dim = self.arch.patch_size, self.arch.dims[0]
        self.stem_kernel = self.add_weight(name="stem_kernel", shape=(p, p, 3, dim),
                                           initializer=normal_init((3 * p * p) ** -0.5, self.seed, "stem_kernel"))
        self.stem_bias = self.add_weight(name="stem_bias", shape=(dim,), initializer=constant_init(0.0))
        self.stem_norm.build((None, None, None, dim))
        for stage in self.stages:
            stage.build()
        self.head_norm.build((None, self.arch.width))
        self.head.build()
        self.built = True

    def forward_features(self, images, training: bool = False):
        """The last stage's feature map ``[batch, H / 32, W / 32, width]`` (timm's ``forward_features``)."""
        shape, stride = ops.shape(images), self.arch.stride
        if isinstance(shape[1], int) and isinstance(shape[2], int) and min(shape[1], shape[2]) < stride:
            raise ValueError(f"image of {tuple(shape[1:3])} pixels is too small for {self.config.timm_model_name}: "
                             f"both sides must be at least its total stride of {stride} pixels")
        x = self.stem_norm(patch_conv(images, self.stem_kernel, self.stem_bias, self.arch.patch_size))
        for stage in self.stages:
            x = stage(x, training=training)
        return x

    def call(self, images, training: bool = False):
        pooled = self.head_norm(ops.mean(self.forward_features(images, training), axis=(1, 2)))
        return self.head(pooled, training=training)

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the trunk except its last ``unlocked_groups`` groups (open_clip ``TimmModel.lock``).

        timm's groups, first to last: the stem, each block (a stage's first with the stage's downsample),
        the head norm. open_clip's ``head`` (projection) stays trainable. There is no batch norm to freeze.

        Example:
            >>> model.visual.lock(unlocked_groups=2)  # the last block and head norm stay trainable  # doctest: +SKIP
        """
        groups = [[self.stem_kernel, self.stem_bias, *self.stem_norm.weights]]
        for stage in self.stages:
            downsample = [*stage.downsample_norm.weights, stage.downsample_kernel,
                          stage.downsample_bias] if stage.downsample else []
            for j, block in enumerate(stage.blocks):
                groups.append((downsample if j == 0 else []) + list(block.weights))
        groups.append(list(self.head_norm.weights))
        lock_groups(self, groups, unlocked_groups, "image tower")
        for var in self.head.weights:
            var.trainable = True
