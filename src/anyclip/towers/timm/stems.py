"""Patch stems of timm's ViTs: the patch convolution, and MobileCLIP's convolutional stem (``vit_base_mci_224``).

Every convolution here has stride equal to its kernel (no overlap, no padding), so it runs as a reshape
plus one matmul over patches (:class:`PatchConv`). MobileCLIP's stem (timm ``ConvStem`` in a ``HybridEmbed``
without projection) is three of them, 4x4 -> 2x2 -> 2x2 (total stride 16): the first two bias-free, each
followed by batch norm (torch's ``BatchNorm2d``, running statistics in inference) and exact GELU; the last
biased, straight to the token width.
"""

from __future__ import annotations

import keras

from ...layers.conv import patch_conv
from ...layers.init import constant_init, normal_init
from ...layers.mlp import activation
from ...layers.norm import BATCH_NORM_TABLE, BatchNorm

# timm keys (relative to ``patch_embed.proj.`` or ``patch_embed.backbone.{i}.``) -> attribute path, transform.
PATCH_TABLE = (
    ("weight", "kernel", "conv"),
    ("bias", "bias", None),
)
CONV_STEM_TABLE = (
    ("conv.weight", "kernel", "conv"),
    ("conv.bias", "bias", None),
    ("bn.", "bn", BATCH_NORM_TABLE),
)
MCI_STAGES = ((4, 4), (2, 4), (2, 1))  # (kernel = stride, output width divisor): 192, 192, 768 for width 768


@keras.saving.register_keras_serializable(package="anyclip")
class PatchConv(keras.layers.Layer):
    """A stride-equals-kernel convolution on ``[batch, H, W, C]`` images as one matmul; optional bias, and
    optional batch norm + exact GELU after it. Pixels that do not fill a whole patch are dropped (as torch).

    Example:
        >>> PatchConv(4, 3, 8, bias=False, norm_act=True)(keras.ops.zeros((1, 16, 16, 3))).shape
        (1, 4, 4, 8)
    """

    def __init__(self, patch: int, in_channels: int, out_channels: int, bias: bool = True, norm_act: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.patch, self.in_channels, self.out_channels = patch, in_channels, out_channels
        self.use_bias, self.norm_act, self.seed = bias, norm_act, seed
        self.bn = BatchNorm(out_channels, name="bn", dtype=self.dtype_policy) if norm_act else None
        self.act = activation(False)

    def build(self, input_shape=None):
        p, c, o = self.patch, self.in_channels, self.out_channels
        self.kernel = self.add_weight(name="kernel", shape=(p, p, c, o),
                                      initializer=normal_init((c * p * p) ** -0.5, self.seed, "kernel"))
        self.bias = self.add_weight(name="bias", shape=(o,), initializer=constant_init(0.0)) if self.use_bias else None
        if self.bn is not None:
            self.bn.build((None, None, None, o))
        self.built = True

    def call(self, x, training: bool = False):
        x = patch_conv(x, self.kernel, self.bias, self.patch)
        if self.bn is not None:
            x = self.act(self.bn(x, training=training))
        return x

    def get_config(self):
        return {**super().get_config(), "patch": self.patch, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "bias": self.use_bias, "norm_act": self.norm_act,
                "seed": self.seed}


def mci_stem(width: int, seed: int | None, dtype=None) -> list[PatchConv]:
    """MobileCLIP's stem for token width ``width`` (timm ``vit_base_mci_224``: 192, 192, 768 channels).

    Example:
        >>> [s.out_channels for s in mci_stem(768, 0)]
        [192, 192, 768]
    """
    stages, channels = [], 3
    for i, (patch, div) in enumerate(MCI_STAGES):
        last = i == len(MCI_STAGES) - 1
        stages.append(PatchConv(patch, channels, width // div, bias=last, norm_act=not last,
                                seed=None if seed is None else seed + i, name=f"backbone_{i}", dtype=dtype))
        channels = width // div
    return stages
