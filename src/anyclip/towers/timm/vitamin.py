"""ViTamin's convolutional stem (timm ``vitamin.py``: ``MbConvStages`` inside a ``HybridEmbed``), channels last.

A ViTamin tower is a timm ``VisionTransformer`` (no class token, average pool, GeGLU MLPs: see
:class:`anyclip.towers.timm.vit.TimmViT`) whose patch embedding is this stem, total stride 16:

- ``stem``: 3x3 convolution (stride 2), LayerNorm + exact GELU, 3x3 convolution;
- two stages of pre-norm inverted-bottleneck blocks (``MbConvLNBlock``): LayerNorm, 1x1 expansion (4x),
  GELU, depthwise 3x3 (stride 2 in each stage's first block), GELU, 1x1 projection, plus a shortcut
  (3x3 average pool with stride 2, padding 1 not counted, then a 1x1 convolution where widths differ);
- ``pool``: LayerNorm then a 3x3 convolution with stride 2 to the token width.

Every LayerNorm is over channels with eps 1e-6; every convolution has a bias; padding is ``k // 2``.
"""

from __future__ import annotations

import keras  # noqa: F401 (the docstring examples use it)
from keras import ops

from ...layers.conv import CONV_TABLE, Conv
from ...layers.init import HostModule
from ...layers.mlp import gelu
from ...layers.norm import layer_norm

_EPS = 1e-6
_NORM_TABLE = (("weight", "gamma", None), ("bias", "beta", None))
# timm keys (relative to ``stages.{s}.{b}.``) -> attribute path on a MbConvBlock, transform.
MBCONV_TABLE = (
    ("shortcut.expand.", "shortcut", CONV_TABLE),
    ("pre_norm.", "pre_norm", _NORM_TABLE),
    ("conv1_1x1.", "conv1_1x1", CONV_TABLE),
    ("conv2_kxk.", "conv2_kxk", CONV_TABLE),
    ("conv3_1x1.", "conv3_1x1", CONV_TABLE),
)
# timm keys (relative to ``patch_embed.backbone.``) -> attribute path on a ViTaminStem, transform.
VITAMIN_STEM_TABLE = (
    ("stem.conv1.", "conv1", CONV_TABLE),
    ("stem.norm1.", "norm1", _NORM_TABLE),
    ("stem.conv2.", "conv2", CONV_TABLE),
    ("stages.0.{i}.", "stage0", MBCONV_TABLE),
    ("stages.1.{i}.", "stage1", MBCONV_TABLE),
    ("pool.norm.", "pool_norm", _NORM_TABLE),
    ("pool.proj.", "pool_proj", CONV_TABLE),
)


def avg_pool_3x3_s2(x):
    """torch ``AvgPool2d(3, stride=2, padding=1, count_include_pad=False)`` on ``[batch, H, W, C]``.

    Example:
        >>> avg_pool_3x3_s2(keras.ops.ones((1, 7, 7, 2))).shape
        (1, 4, 4, 2)
    """
    pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
    sums = ops.average_pool(ops.pad(x, pad), 3, strides=2, padding="valid")
    counts = ops.average_pool(ops.pad(ops.ones_like(x[..., :1]), pad), 3, strides=2, padding="valid")
    return sums / counts


def stem_grid(size: int) -> int:
    """Tokens along one side for an image side of ``size`` pixels: four stride-2, padding-1 steps (ceil halving).

    Example:
        >>> stem_grid(224), stem_grid(230)
        (14, 15)
    """
    for _ in range(4):
        size = (size + 1) // 2
    return size


class MbConvBlock(HostModule):
    """timm ``MbConvLNBlock``: ``shortcut(x) + conv3(gelu(dwconv(gelu(conv1(norm(x))))))``."""

    def __init__(self, cin: int, cout: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        mid = 4 * cout  # timm's make_divisible(out * 4) for widths that are multiples of 8
        self.stride = stride
        self.shortcut = self.sub(Conv, "shortcut", cin, cout, 1) if cin != cout else None
        self.pre_norm = layer_norm("pre_norm", self.dtype_policy, eps=_EPS)
        self.pre_norm.build((None, cin))
        self.conv1_1x1 = self.sub(Conv, "conv1_1x1", cin, mid, 1)
        self.conv2_kxk = self.sub(Conv, "conv2_kxk", mid, mid, 3, stride, mid)
        self.conv3_1x1 = self.sub(Conv, "conv3_1x1", mid, cout, 1)
        self.built = True

    def call(self, x):
        short = avg_pool_3x3_s2(x) if self.stride == 2 else x
        if self.shortcut is not None:
            short = self.shortcut(short)
        h = gelu(self.conv1_1x1(self.pre_norm(x)))
        return self.conv3_1x1(gelu(self.conv2_kxk(h))) + short


class ViTaminStem(HostModule):
    """ViTamin's ``MbConvStages``: ``[batch, H, W, 3]`` images -> ``[batch, H/16, W/16, width]`` features.

    ``stem_width``: the stem's channels; ``stage_widths`` / ``stage_depths``: the two MbConv stages.

    Example:
        >>> ViTaminStem(8, (8, 16), (1, 1), 32)(keras.ops.zeros((1, 32, 32, 3))).shape
        (1, 2, 2, 32)
    """

    def __init__(self, stem_width: int, stage_widths: tuple[int, int], stage_depths: tuple[int, int], width: int,
                 **kwargs):
        super().__init__(**kwargs)
        self.conv1 = self.sub(Conv, "conv1", 3, stem_width, 3, 2)
        self.norm1 = layer_norm("norm1", self.dtype_policy, eps=_EPS)
        self.norm1.build((None, stem_width))
        self.conv2 = self.sub(Conv, "conv2", stem_width, stem_width, 3)
        cin, stages = stem_width, []
        for s, (cout, depth) in enumerate(zip(stage_widths, stage_depths)):
            stages.append([self.sub(MbConvBlock, f"stage{s}_{b}", cin if b == 0 else cout, cout, 2 if b == 0 else 1)
                           for b in range(depth)])
            cin = cout
        self.stage0, self.stage1 = stages
        self.pool_norm = layer_norm("pool_norm", self.dtype_policy, eps=_EPS)
        self.pool_norm.build((None, cin))
        self.pool_proj = self.sub(Conv, "pool_proj", cin, width, 3, 2)
        self.built = True

    def call(self, images, training: bool = False):
        x = self.conv2(gelu(self.norm1(self.conv1(images))))
        for block in (*self.stage0, *self.stage1):
            x = block(x)
        return self.pool_proj(self.pool_norm(x))
