"""Convolutions on channels-last activations with torch's semantics, and host-initialised layer plumbing.

:func:`conv2d` is torch's ``conv2d`` (zero padding ``k // 2``, any stride, grouped kernels) on ``[batch, H, W,
C]`` arrays; on the torch backend it calls torch's own kernel on the NCHW view. :class:`Conv` holds its
weights under timm's key names (:data:`CONV_TABLE`). Used by the FastViT (MobileCLIP) and ViTamin towers.
"""

from __future__ import annotations

import keras
from keras import ops

from .layers import child_seed, constant_init, jax_on_cpu, normal_init
from .modified_resnet import BatchNorm

_TORCH = keras.backend.backend() == "torch"

# torch ``Conv2d`` keys -> attribute path on :class:`Conv`, transform (anyclip.weights.mapping).
CONV_TABLE = (("weight", "kernel", "conv"), ("bias", "bias", None))


def conv2d(x, kernel, bias=None, stride: int = 1):
    """torch's ``conv2d`` with zero padding ``k // 2`` on channels-last ``x``; kernel HWIO (groups from its I).

    Example:
        >>> conv2d(keras.ops.ones((1, 8, 8, 4)), keras.ops.ones((3, 3, 1, 8)), stride=2).shape
        (1, 4, 4, 8)
    """
    kernel = ops.cast(kernel, x.dtype)
    k, pad = kernel.shape[0], kernel.shape[0] // 2
    if bias is not None:
        bias = ops.cast(bias, x.dtype)
    if _TORCH:  # torch's kernel on the NCHW view of the channels-last activations
        import torch.nn.functional as F
        groups = x.shape[-1] // kernel.shape[2]
        y = F.conv2d(x.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1), bias, stride, pad, 1, groups)
        return y.permute(0, 2, 3, 1)
    if k == 1 and stride == 1 and kernel.shape[2] == x.shape[-1]:
        y = ops.matmul(x, kernel[0, 0])
    elif kernel.shape[2] == 1 and kernel.shape[3] % x.shape[-1] == 0 and jax_on_cpu():  # depthwise (x multiplier)
        if kernel.shape[3] != x.shape[-1]:  # torch's group c feeds outputs c * m ... c * m + m - 1
            x = ops.repeat(x, kernel.shape[3] // x.shape[-1], axis=-1)
        y = shifted_depthwise_conv(x, kernel[:, :, 0, :], stride)
    else:
        if pad:
            x = ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        y = ops.conv(x, kernel, strides=stride, padding="valid")
    return y + bias if bias is not None else y


def shifted_depthwise_conv(x, kernel, stride: int = 1):
    """Depthwise ``k`` x ``k`` convolution (zero padding ``k // 2``) as a sum of ``k * k`` shifted, scaled copies.

    ``kernel``: ``(k, k, C)``. XLA's CPU backend runs grouped convolutions as a slow generic loop; this form
    compiles to one fused elementwise loop, 6-20x faster there (the sum order differs: ~1e-6 relative).

    Example:
        >>> shifted_depthwise_conv(keras.ops.ones((1, 5, 5, 2)), keras.ops.ones((3, 3, 2)), stride=2).shape
        (1, 3, 3, 2)
    """
    k, p, (height, width) = kernel.shape[0], kernel.shape[0] // 2, ops.shape(x)[1:3]
    x = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
    out_h, out_w = (height + 2 * p - k) // stride + 1, (width + 2 * p - k) // stride + 1
    y = None
    for i in range(k):
        for j in range(k):
            tap = x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride, :] * kernel[i, j]
            y = tap if y is None else y + tap
    return y


def gelu(x):
    return keras.activations.gelu(x, approximate=False)


class HostModule(keras.layers.Layer):
    """A layer whose weights are made in ``__init__`` (shapes are known), host-initialised from ``seed``."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed

    def weight(self, name, shape, std=None, value=0.0):
        init = normal_init(std, self.seed, name) if std is not None else constant_init(value)
        return self.add_weight(name=name, shape=shape, initializer=init)

    def sub(self, cls, name, *args, **kwargs):
        return cls(*args, seed=child_seed(self.seed, name), name=name, dtype=self.dtype_policy, **kwargs)

    def make_bn(self, name, channels):
        layer = BatchNorm(channels, name=name, dtype=self.dtype_policy)
        layer.build()
        return layer


class Conv(HostModule):
    """A convolution ``kernel`` (HWIO, ``groups`` from ``cin // I``) with optional ``bias`` (torch ``Conv2d``)."""

    def __init__(self, cin, cout, k, stride=1, groups=1, bias=True, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride
        self.kernel = self.weight("kernel", (k, k, cin // groups, cout), std=(k * k * cin // groups) ** -0.5)
        self.bias = self.weight("bias", (cout,)) if bias else None
        self.built = True

    def call(self, x):
        return conv2d(x, self.kernel, self.bias, self.stride)
