"""Convolution on channels-last activations with torch's semantics: one function, one layer.

:func:`conv2d` is torch's ``conv2d`` (zero padding ``k // 2``, any stride, grouped and depthwise kernels) on
``[batch, H, W, C]`` arrays, with each backend's fastest form (:mod:`anyclip.layers.backend`). :class:`Conv` holds its
weights under torch's key names (:data:`CONV_TABLE`); the ResNet, FastViT (MobileCLIP) and ViTamin towers use it.
"""

from __future__ import annotations

import keras  # noqa: F401 (the docstring examples use it)
from keras import ops

from . import backend
from .init import HostModule

# torch ``Conv2d`` keys -> attribute path on :class:`Conv`, transform (anyclip.weights.mapping).
CONV_TABLE = (("weight", "kernel", "conv"), ("bias", "bias", None))


def conv2d(x, kernel, bias=None, stride: int = 1):
    """torch's ``conv2d`` with zero padding ``k // 2`` on channels-last ``x``; kernel HWIO (groups from its I).

    Example:
        >>> conv2d(keras.ops.ones((1, 8, 8, 4)), keras.ops.ones((3, 3, 1, 8)), stride=2).shape
        (1, 4, 4, 8)
    """
    kernel = ops.cast(kernel, x.dtype)
    k, pad, groups = kernel.shape[0], kernel.shape[0] // 2, x.shape[-1] // kernel.shape[2]
    if bias is not None:
        bias = ops.cast(bias, x.dtype)
    if k == 1 and stride == 1 and groups == 1:  # a matmul over channels
        return backend.linear(x, kernel[0, 0], bias)
    if backend.TORCH:
        return backend.torch_conv2d(x, kernel, bias, stride, pad, groups)
    if kernel.shape[2] == 1 and kernel.shape[3] % x.shape[-1] == 0 and backend.jax_on_cpu():  # depthwise (x mult.)
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


class Conv(HostModule):
    """torch's ``Conv2d``: ``kernel`` (HWIO, ``groups`` from ``cin // I``), optional ``bias``, padding ``k // 2``.

    ``std`` is the initial kernel's standard deviation (default ``fan_in ** -0.5``). ``build_now=False`` leaves the
    weights to ``build()``, so that a parent building it from its own ``build`` gives them nested paths.

    Example:
        >>> Conv(3, 8, 3, stride=2, bias=False)(keras.ops.zeros((1, 32, 32, 3))).shape
        (1, 16, 16, 8)
    """

    def __init__(self, cin, cout, k, stride=1, groups=1, bias=True, std: float | None = None, build_now: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.stride, self.use_bias = stride, bias
        self.kernel_shape = (k, k, cin // groups, cout)
        self.std = std or (k * k * cin // groups) ** -0.5
        self.kernel = self.bias = None
        if build_now:  # weights made now have the layer's own path; a parent's build() nests them under its own
            self.build()

    def build(self, input_shape=None):
        if self.kernel is None:
            self.kernel = self.weight("kernel", self.kernel_shape, std=self.std)
            self.bias = self.weight("bias", self.kernel_shape[-1:]) if self.use_bias else None
        self.built = True

    def call(self, x):
        return conv2d(x, self.kernel, self.bias, self.stride)


def patch_conv(x, kernel, bias, size: int | tuple[int, int]):
    """A ``size`` x ``size`` convolution with stride ``size`` (no padding: edge pixels that do not fill a
    patch are dropped, as torch does) as one matmul over patches -> ``[batch, H // size, W // size, out]``.
    ``size``: an int or ``(height, width)``; ``kernel``: HWIO; ``bias`` may be None. On CPU this is faster than a convolution and gives the same sums.

    Example:
        >>> patch_conv(keras.ops.ones((1, 9, 9, 3)), keras.ops.ones((4, 4, 3, 8)), keras.ops.zeros(8), 4).shape
        (1, 2, 2, 8)
    """
    (ph, pw), shape = (size if isinstance(size, (tuple, list)) else (size, size)), ops.shape(x)
    batch, gh, gw, cin = shape[0], shape[1] // ph, shape[2] // pw, shape[3]
    x = ops.reshape(x[:, :gh * ph, :gw * pw, :], (batch, gh, ph, gw, pw, cin))
    x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (batch, gh, gw, ph * pw * cin))
    y = backend.linear(x, ops.reshape(ops.cast(kernel, x.dtype), (ph * pw * cin, -1)))
    return y + ops.cast(bias, x.dtype) if bias is not None else y
