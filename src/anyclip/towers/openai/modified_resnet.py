"""OpenAI's ModifiedResNet image tower (CLIP RN50, RN101, RN50x4, RN50x16, RN50x64).

Differences from a torchvision ResNet, as in open_clip: a stem of three 3x3 convolutions followed by a
2x2 average pool; anti-aliased strides (a stride-``s`` average pool before the last 1x1 convolution of a
strided block, and before the 1x1 convolution of its shortcut); an attention-pool head instead of global
average pooling. Input: float images ``[batch, H, W, 3]`` (channels last); output ``[batch, embed_dim]``.

Batch norm follows ``torch.nn.BatchNorm2d`` exactly (:class:`BatchNorm`): running statistics in
inference; batch statistics when training, with torch's running-average update (momentum 0.1, the
*unbiased* batch variance for ``running_var``) and its ``num_batches_tracked`` counter.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import keras

from ...layers import backend
from ...layers.conv import Conv
from ...layers.dense import LINEAR_TABLE
from ...layers.init import child_seed
from ...layers.norm import BATCH_NORM_TABLE, BatchNorm
from ...layers.pooling import AttentionPool
from ..base import Tower, lock_groups
from ..config import ConfigError, _check_fields, _pos_int, _require, is_positive_int

_RESNET_UNUSED = {"patch_size": (None, 16), "mlp_ratio": (4.0,), "ls_init_value": (None,), "patch_dropout": (0.0,),
                  "no_ln_pre": (False,), "final_ln_after_pool": (False,), "pool_type": ("tok",)}


@dataclasses.dataclass(frozen=True)
class ModifiedResNetConfig:
    """OpenAI's ModifiedResNet image tower (RN50...); open_clip picks it when ``vision_cfg.layers`` is a list.

    ``layers``: Bottleneck blocks in each of the 4 stages; ``width``: stem width (stage widths are
    ``width * 4, 8, 16, 32``); the attention pool has ``width * 32 // head_width`` heads over a
    ``image_size // 32`` square grid.

    Example:
        >>> ModifiedResNetConfig(layers=[3, 4, 6, 3], width=64, image_size=224).grid_size
        (7, 7)
    """

    layers: list = dataclasses.field(default_factory=lambda: [3, 4, 6, 3])
    width: int = 64
    head_width: int = 64
    image_size: int = 224

    def __post_init__(self):
        w = "vision_cfg"
        ok = isinstance(self.layers, (list, tuple)) and len(self.layers) == 4 and all(
            is_positive_int(n) for n in self.layers)
        _require(ok, f"{w}.layers", f"a list selects the ModifiedResNet tower and must hold 4 positive integers "
                 f"(blocks per stage), got {self.layers!r}")
        object.__setattr__(self, "layers", [int(n) for n in self.layers])
        _require(isinstance(self.width, int) and not isinstance(self.width, bool) and self.width >= 2,
                 f"{w}.width", f"must be an integer >= 2, got {self.width!r}")
        _pos_int(self.head_width, f"{w}.head_width")
        embed = self.width * 32
        _require(self.head_width <= embed and embed % (embed // self.head_width) == 0, f"{w}.head_width",
                 f"{self.head_width} gives {embed // max(self.head_width, 1)} heads, which do not divide the "
                 f"attention-pool width {embed} (width * 32)")
        _require(isinstance(self.image_size, int) and not isinstance(self.image_size, bool), f"{w}.image_size",
                 f"ModifiedResNet takes one integer size, got {self.image_size!r}")
        _pos_int(self.image_size, f"{w}.image_size")
        grid = -(-self.image_size // 2) // 16  # stem conv (stride 2, padding 1), then four 2x poolings
        _require(self.image_size >= 32 and grid == self.image_size // 32, f"{w}.image_size",
                 f"{self.image_size} gives a {grid}x{grid} feature grid but an attention-pool grid of "
                 f"{self.image_size // 32}x{self.image_size // 32}; use a size >= 32 whose grids agree "
                 "(any multiple of 32 does)")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "ModifiedResNetConfig":
        """Validate a ``vision_cfg`` dict whose ``layers`` is a list (unused ViT keys must hold their defaults)."""
        values = dict(values)
        for key, allowed in _RESNET_UNUSED.items():
            if key in values and values.pop(key) not in allowed:
                raise ConfigError(f"vision_cfg.{key} is not used by the ModifiedResNet tower (layers is a list); "
                                  f"only {' or '.join(map(repr, allowed))} is accepted")
        return cls(**_check_fields(cls, values, "vision_cfg"))

    @property
    def heads(self) -> int:
        return self.width * 32 // self.head_width

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.image_size // 32, self.image_size // 32


# conv1/bn1 .. conv3/bn3: the stem and every bottleneck name their three conv + BatchNorm pairs alike.
THREE_CONV_TABLE = tuple(row for n in (1, 2, 3) for row in (
    (f"conv{n}.weight", f"conv{n}.kernel", "conv"), (f"bn{n}.", f"bn{n}", BATCH_NORM_TABLE)))
BOTTLENECK_TABLE = (
    *THREE_CONV_TABLE,
    ("downsample.0.weight", "downsample_conv.kernel", "conv"),  # skipped for blocks without a shortcut conv
    ("downsample.1.", "downsample_bn", BATCH_NORM_TABLE),
)
WEIGHT_TABLE = (
    *THREE_CONV_TABLE,
    *((f"layer{n}.{{i}}.", f"layer{n}", BOTTLENECK_TABLE) for n in (1, 2, 3, 4)),
    ("attnpool.positional_embedding", "attnpool.positional_embedding", None),
    *((f"attnpool.{p}_proj.", f"attnpool.{p}_proj", LINEAR_TABLE) for p in "kqvc"),
)


def resnet_conv(cin: int, cout: int, k: int, stride: int, seed: int | None, name: str, dtype=None) -> Conv:
    """OpenAI's bias-free convolution (padding ``k // 2``), initialised with std ``(3 * fan_in) ** -0.5``."""
    return Conv(cin, cout, k, stride, bias=False, std=(3 * k * k * cin) ** -0.5, build_now=False,
                seed=child_seed(seed, name), name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="anyclip")
class Bottleneck(keras.layers.Layer):
    """1x1 -> 3x3 -> (avg pool) -> 1x1 (x4 channels) with batch norms, plus an (avg pool + 1x1 + BN) shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.planes, self.stride = in_channels, planes, stride
        out, policy = planes * self.expansion, self.dtype_policy

        def conv(name, cin, cout, k):
            return resnet_conv(cin, cout, k, 1, seed, name, policy)

        self.conv1, self.bn1 = conv("conv1", in_channels, planes, 1), BatchNorm(planes, name="bn1", dtype=policy)
        self.conv2, self.bn2 = conv("conv2", planes, planes, 3), BatchNorm(planes, name="bn2", dtype=policy)
        self.conv3 = conv("conv3", planes, out, 1)
        self.bn3 = BatchNorm(out, zero_gamma=True, name="bn3", dtype=policy)  # open_clip zero-inits bn3.weight
        self.downsample_conv = self.downsample_bn = None
        if stride > 1 or in_channels != out:
            self.downsample_conv = conv("downsample_conv", in_channels, out, 1)
            self.downsample_bn = BatchNorm(out, name="downsample_bn", dtype=policy)

    def build(self, input_shape=None):
        for layer in (self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3, self.downsample_conv,
                      self.downsample_bn):
            if layer is not None:
                layer.build()
        self.built = True

    def call(self, x, training: bool = False):
        out = backend.relu(self.bn1(self.conv1(x), training=training))
        out = backend.relu(self.bn2(self.conv2(out), training=training))
        out = self.bn3(self.conv3(backend.avg_pool(out, self.stride)), training=training)
        identity = x
        if self.downsample_conv is not None:
            identity = self.downsample_bn(self.downsample_conv(backend.avg_pool(x, self.stride)), training=training)
        return backend.add_relu(out, identity)

    def get_config(self):
        return {**super().get_config(), "in_channels": self.in_channels, "planes": self.planes,
                "stride": self.stride}


@keras.saving.register_keras_serializable(package="anyclip")
class ModifiedResNet(Tower):
    """ResNet image tower of OpenAI CLIP: 3-conv stem, 4 stages of anti-aliased Bottlenecks, attention pool.

    ``quick_gelu`` is accepted for the tower signature and unused (a ResNet has no GELU).

    Example:
        >>> cfg = ModifiedResNetConfig(layers=[1, 1, 1, 1], width=8, head_width=32, image_size=64)
        >>> tower = ModifiedResNet(cfg, embed_dim=16)
        >>> tower(keras.ops.zeros((2, 64, 64, 3))).shape
        (2, 16)
    """

    CONFIG = ModifiedResNetConfig
    WEIGHT_TABLE = WEIGHT_TABLE  # how open_clip names this tower's weights (anyclip.weights.mapping)

    def __init__(self, config: ModifiedResNetConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(config, embed_dim, quick_gelu, seed, **kwargs)
        cfg, policy = self.config, self.dtype_policy
        w = cfg.width
        self.conv1 = resnet_conv(3, w // 2, 3, 2, seed, "conv1", policy)
        self.bn1 = BatchNorm(w // 2, name="bn1", dtype=policy)
        self.conv2 = resnet_conv(w // 2, w // 2, 3, 1, seed, "conv2", policy)
        self.bn2 = BatchNorm(w // 2, name="bn2", dtype=policy)
        self.conv3 = resnet_conv(w // 2, w, 3, 1, seed, "conv3", policy)
        self.bn3 = BatchNorm(w, name="bn3", dtype=policy)
        channels = w
        for n, blocks in enumerate(cfg.layers, start=1):
            planes, stage = w * 2 ** (n - 1), []
            for i in range(blocks):
                stride = 2 if n > 1 and i == 0 else 1
                stage.append(Bottleneck(channels, planes, stride, child_seed(seed, f"layer{n}.{i}"),
                                        name=f"layer{n}_{i}", dtype=policy))
                channels = planes * Bottleneck.expansion
            setattr(self, f"layer{n}", stage)
        self.attnpool = AttentionPool(cfg.grid_size[0], w * 32, cfg.heads, embed_dim, child_seed(seed, "attnpool"),
                                      name="attnpool", dtype=policy)

    @property
    def blocks(self) -> list:
        """Every Bottleneck, stage by stage."""
        return [*self.layer1, *self.layer2, *self.layer3, *self.layer4]

    @property
    def batch_norms(self) -> list:
        """Every :class:`BatchNorm` of the tower (stem, then each block's, shortcut last)."""
        blocks = [bn for b in self.blocks for bn in (b.bn1, b.bn2, b.bn3, b.downsample_bn) if bn is not None]
        return [self.bn1, self.bn2, self.bn3] + blocks

    def build(self, input_shape=None):
        for layer in (self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3, *self.blocks, self.attnpool):
            layer.build()
        self.built = True

    def stem(self, images, training: bool = False):
        """Three 3x3 conv + BN + ReLU (the first with stride 2), then a 2x2 average pool."""
        x = backend.relu(self.bn1(self.conv1(images), training=training))
        x = backend.relu(self.bn2(self.conv2(x), training=training))
        x = backend.relu(self.bn3(self.conv3(x), training=training))
        return backend.avg_pool(x, 2)

    def call(self, images, training: bool = False):
        x = self.stem(images, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self.attnpool(x)

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the whole tower (open_clip's ``ModifiedResNet.lock``); partial locking is not supported.

        ``freeze_bn_stats=True`` also keeps every batch norm on its running statistics when training
        (open_clip swaps in ``FrozenBatchNorm2d``); without it, training still updates them, as in torch.
        Set it before the first training step: compiled steps keep the behaviour they were traced with.

        Example:
            >>> model.visual.lock(freeze_bn_stats=True)  # doctest: +SKIP
        """
        if isinstance(unlocked_groups, bool) or unlocked_groups != 0:
            raise ValueError(f"image tower: ModifiedResNet supports only unlocked_groups=0 (partial locking is not "
                             f"supported, as in open_clip), got {unlocked_groups!r}")
        lock_groups(self, [], 0, "image tower")
        if freeze_bn_stats:
            for bn in self.batch_norms:
                bn.frozen = True


