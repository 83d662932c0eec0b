"""Building blocks of timm's FastViT (MobileCLIP image towers), channels last, with their weight tables.

Every re-parameterisable block (:class:`MobileOne`, :class:`LargeKernel`, :class:`RepMixer`, :class:`PosEnc`)
is built in timm's train-time form (parallel conv + BatchNorm branches) or, with ``inference``, as one
biased convolution ``reparam_conv``; ``fuse(state, prefix)`` computes the latter from the former on an
open_clip state dict (numpy, torch layouts), as timm's ``reparameterize()`` does.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from ...layers.attention import attention
from ...layers.conv import CONV_TABLE, Conv, conv2d
from ...layers.init import HostModule
from ...layers.mlp import gelu
from ...layers.norm import BATCH_NORM_TABLE, BN_EPS, batch_norm, layer_norm

CONV_BN_TABLE = (("conv.weight", "kernel", "conv"), ("bn.", "bn", BATCH_NORM_TABLE))
SE_TABLE = (("fc1.", "fc1", CONV_TABLE), ("fc2.", "fc2", CONV_TABLE))
REP_TABLE = (("reparam_conv.", "reparam_conv", CONV_TABLE), ("se.", "se", SE_TABLE))
MOBILEONE_TABLE = (*REP_TABLE, ("identity.", "identity", BATCH_NORM_TABLE),
                   ("conv_kxk.{i}.", "conv_kxk", CONV_BN_TABLE), ("conv_scale.", "conv_scale", CONV_BN_TABLE))
LARGE_KERNEL_TABLE = (*REP_TABLE, ("large_conv.", "large_conv", CONV_BN_TABLE),
                      ("small_conv.", "small_conv", CONV_BN_TABLE))
REPMIXER_TABLE = (("reparam_conv.", "reparam_conv", CONV_TABLE), ("norm.", "norm", MOBILEONE_TABLE),
                  ("mixer.", "mixer", MOBILEONE_TABLE), ("layer_scale.gamma", "layer_scale", None))
MLP_TABLE = (("conv.", "conv", CONV_BN_TABLE), ("fc1.", "fc1", CONV_TABLE), ("fc2.", "fc2", CONV_TABLE))
BLOCK_TABLE = (
    ("token_mixer.", "repmixer", REPMIXER_TABLE),  # RepMixer blocks
    ("norm.", "norm_bn", BATCH_NORM_TABLE), ("norm.weight", "ln.gamma", None), ("norm.bias", "ln.beta", None),
    ("token_mixer.qkv.weight", "qkv", "linear"), ("token_mixer.proj.weight", "proj", "linear"),
    ("token_mixer.proj.bias", "proj_bias", None),
    ("layer_scale.gamma", "layer_scale", None), ("layer_scale_1.gamma", "layer_scale_1", None),
    ("layer_scale_2.gamma", "layer_scale_2", None), ("mlp.", "mlp", MLP_TABLE),
)
STAGE_TABLE = (
    ("downsample.proj.0.", "down_conv", LARGE_KERNEL_TABLE), ("downsample.proj.1.", "down_mix", MOBILEONE_TABLE),
    ("pos_emb.pos_enc.", "pos_enc", CONV_TABLE), ("pos_emb.reparam_conv.", "pos_reparam", CONV_TABLE),
    ("blocks.{i}.", "blocks", BLOCK_TABLE),
)


class ConvBN(HostModule):
    """timm ``ConvNormAct`` without activation: a bias-free convolution then BatchNorm."""

    def __init__(self, cin, cout, k, stride=1, groups=1, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride
        self.kernel = self.weight("kernel", (k, k, cin // groups, cout), std=(k * k * cin // groups) ** -0.5)
        self.bn = batch_norm("bn", cout, self.dtype_policy)
        self.built = True

    def call(self, x, training=False):
        return self.bn(conv2d(x, self.kernel, None, self.stride), training=training)


class SqueezeExcite(HostModule):
    """timm ``SEModule``: mean over the grid, 1x1 conv, ReLU, 1x1 conv, sigmoid gate."""

    def __init__(self, channels, reduced, **kwargs):
        super().__init__(**kwargs)
        self.fc1 = self.sub(Conv, "fc1", channels, reduced, 1)
        self.fc2 = self.sub(Conv, "fc2", reduced, channels, 1)
        self.built = True

    def call(self, x):
        s = ops.mean(x, axis=(1, 2), keepdims=True)
        return x * ops.sigmoid(self.fc2(ops.relu(self.fc1(s))))


def make_divisible(v, divisor):
    """timm's ``make_divisible`` with ``round_limit=0``."""
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


def _fuse_bn(state, prefix, kernel):
    """Fold the BatchNorm at ``prefix`` into ``kernel`` (OIHW): ``(kernel * g / std, b - mean * g / std)``."""
    t = state[prefix + "weight"] / np.sqrt(state[prefix + "running_var"] + BN_EPS)
    return kernel * t[:, None, None, None], state[prefix + "bias"] - state[prefix + "running_mean"] * t


def _identity_kernel(channels, per_group, k):
    kernel = np.zeros((channels, per_group, k, k))
    kernel[np.arange(channels), np.arange(channels) % per_group, k // 2, k // 2] = 1.0
    return kernel


def _pad_to(kernel, k):
    p = (k - kernel.shape[-1]) // 2
    return np.pad(kernel, ((0, 0), (0, 0), (p, p), (p, p)))


def _take(state, prefix):
    """Pop every entry under ``prefix`` (float64 for floats) -> ``{suffix: array}``."""
    out = {}
    for key in [k for k in state if k.startswith(prefix)]:
        value = np.asarray(state.pop(key))
        out[key[len(prefix):]] = value.astype(np.float64) if np.issubdtype(value.dtype, np.floating) else value
    return out


class _Reparam(HostModule):
    """A block with a train-time (branches) and an inference (``reparam_conv``) form."""

    def fuse(self, state: dict, prefix: str) -> None:
        """Replace this block's branch weights in ``state`` by ``reparam_conv.weight`` / ``.bias`` (in place)."""
        kernel, bias = self.fused(state, prefix)
        state[prefix + "reparam_conv.weight"], state[prefix + "reparam_conv.bias"] = kernel, bias


class MobileOne(_Reparam):
    """timm ``MobileOneBlock``: ``act(se(identity BN + conv_kxk (conv+BN) + 1x1 conv_scale (conv+BN)))``."""

    def __init__(self, cin, cout, k, stride=1, depthwise=False, se=False, act=True, scale_branch=True,
                 branches=1, inference=False, **kwargs):
        super().__init__(**kwargs)
        self.cin, self.k, self.stride, self.act = cin, k, stride, act
        self.groups = cin if depthwise else 1
        self.se = self.sub(SqueezeExcite, "se", cout, make_divisible(cout / 16, 1)) if se else None
        self.reparam_conv, self.identity, self.conv_kxk, self.conv_scale = None, None, [], None
        if inference:
            self.reparam_conv = self.sub(Conv, "reparam_conv", cin, cout, k, stride, self.groups)
        else:
            if cin == cout and stride == 1:
                self.identity = batch_norm("identity", cin, self.dtype_policy)
            self.conv_kxk = [self.sub(ConvBN, f"conv_kxk_{i}", cin, cout, k, stride, self.groups)
                             for i in range(branches)]
            if k > 1 and scale_branch:
                self.conv_scale = self.sub(ConvBN, "conv_scale", cin, cout, 1, stride, self.groups)
        self.built = True

    def call(self, x, training=False):
        if self.reparam_conv is not None:
            out = self.reparam_conv(x)
        else:
            out = self.identity(x, training=training) if self.identity is not None else 0.0
            if self.conv_scale is not None:
                out = out + self.conv_scale(x, training=training)
            for branch in self.conv_kxk:
                out = out + branch(x, training=training)
        if self.se is not None:
            out = self.se(out)
        return gelu(out) if self.act else out

    def fused(self, state, prefix):
        kernel, bias = 0.0, 0.0
        if self.identity is not None:
            k, b = _fuse_bn(_take(state, prefix + "identity."), "",
                            _identity_kernel(self.cin, self.cin // self.groups, self.k))
            kernel, bias = kernel + k, bias + b
        branches = [(f"conv_kxk.{i}.", self.k) for i in range(len(self.conv_kxk))]
        branches += [("conv_scale.", 1)] if self.conv_scale is not None else []
        for name, size in branches:
            part = _take(state, prefix + name)
            k, b = _fuse_bn(part, "bn.", part["conv.weight"])
            kernel, bias = kernel + _pad_to(k, self.k), bias + b
        return kernel, bias


class LargeKernel(_Reparam):
    """timm ``ReparamLargeKernelConv`` (depthwise 7x7 + 3x3 conv+BN branches, stride 2), SE, GELU."""

    def __init__(self, cin, cout, se=False, inference=False, **kwargs):
        super().__init__(**kwargs)
        self.se = self.sub(SqueezeExcite, "se", cout, make_divisible(cout * 0.25, 8)) if se else None
        self.reparam_conv = self.large_conv = self.small_conv = None
        if inference:
            self.reparam_conv = self.sub(Conv, "reparam_conv", cin, cout, 7, 2, cin)
        else:
            self.large_conv = self.sub(ConvBN, "large_conv", cin, cout, 7, 2, cin)
            self.small_conv = self.sub(ConvBN, "small_conv", cin, cout, 3, 2, cin)
        self.built = True

    def call(self, x, training=False):
        if self.reparam_conv is not None:
            out = self.reparam_conv(x)
        else:
            out = self.large_conv(x, training=training) + self.small_conv(x, training=training)
        if self.se is not None:
            out = self.se(out)
        return gelu(out)

    def fused(self, state, prefix):
        large, small = _take(state, prefix + "large_conv."), _take(state, prefix + "small_conv.")
        k1, b1 = _fuse_bn(large, "bn.", large["conv.weight"])
        k2, b2 = _fuse_bn(small, "bn.", small["conv.weight"])
        return k1 + _pad_to(k2, 7), b1 + b2


class RepMixer(_Reparam):
    """timm ``RepMixer``: ``x + gamma * (mixer(x) - norm(x))`` with depthwise 3x3 MobileOne blocks."""

    def __init__(self, dim, inference=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.reparam_conv = self.norm = self.mixer = self.layer_scale = None
        if inference:
            self.reparam_conv = self.sub(Conv, "reparam_conv", dim, dim, 3, 1, dim)
        else:
            self.norm = self.sub(MobileOne, "norm", dim, dim, 3, depthwise=True, act=False, scale_branch=False,
                                 branches=0)
            self.mixer = self.sub(MobileOne, "mixer", dim, dim, 3, depthwise=True, act=False)
            self.layer_scale = self.weight("layer_scale", (dim, 1, 1), value=1e-5)
        self.built = True

    def call(self, x, training=False):
        if self.reparam_conv is not None:
            return self.reparam_conv(x)
        gamma = ops.cast(ops.reshape(self.layer_scale, (self.dim,)), x.dtype)
        return x + gamma * (self.mixer(x, training=training) - self.norm(x, training=training))

    def fused(self, state, prefix):
        km, bm = self.mixer.fused(state, prefix + "mixer.")
        kn, bn = self.norm.fused(state, prefix + "norm.")
        gamma = np.asarray(state.pop(prefix + "layer_scale.gamma"), np.float64).reshape(-1)
        kernel = _identity_kernel(self.dim, 1, 3) + gamma[:, None, None, None] * (km - kn)
        return kernel, gamma * (bm - bn)


class ConvMlp(HostModule):
    """timm ``ConvMlp``: depthwise 7x7 conv + BN, 1x1 conv, GELU, 1x1 conv."""

    def __init__(self, dim, hidden, **kwargs):
        super().__init__(**kwargs)
        self.conv = self.sub(ConvBN, "conv", dim, dim, 7, 1, dim)
        self.fc1 = self.sub(Conv, "fc1", dim, hidden, 1)
        self.fc2 = self.sub(Conv, "fc2", hidden, dim, 1)
        self.built = True

    def call(self, x, training=False):
        return self.fc2(gelu(self.fc1(self.conv(x, training=training))))


class Block(HostModule):
    """A FastViT block: RepMixer or (norm, attention with 32-wide heads, layer scale), then ConvMlp + layer scale."""

    def __init__(self, dim, mlp_ratio, mixer, layer_norm_=False, inference=False, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.mixer = dim, mixer
        self.repmixer = self.norm_bn = self.ln = self.qkv = self.proj = self.proj_bias = None
        self.layer_scale = self.layer_scale_1 = self.layer_scale_2 = None
        if mixer == "repmixer":
            self.repmixer = self.sub(RepMixer, "token_mixer", dim, inference=inference)
            self.layer_scale = self.weight("layer_scale", (dim, 1, 1), value=1e-5)
        else:
            if layer_norm_:
                self.ln = layer_norm("norm", self.dtype_policy, eps=1e-5)
                self.ln.build((None, dim))
            else:
                self.norm_bn = batch_norm("norm", dim, self.dtype_policy)
            self.qkv = self.weight("qkv", (dim, 3 * dim), std=dim ** -0.5)
            self.proj = self.weight("proj", (dim, dim), std=dim ** -0.5)
            self.proj_bias = self.weight("proj_bias", (dim,))
            self.layer_scale_1 = self.weight("layer_scale_1", (dim, 1, 1), value=1e-5)
            self.layer_scale_2 = self.weight("layer_scale_2", (dim, 1, 1), value=1e-5)
        self.mlp = self.sub(ConvMlp, "mlp", dim, int(dim * mlp_ratio))
        self.built = True

    def _scale(self, gamma, x):
        return ops.cast(ops.reshape(gamma, (self.dim,)), x.dtype) * x

    def call(self, x, training=False):
        if self.repmixer is not None:
            x = self.repmixer(x, training=training)
            return x + self._scale(self.layer_scale, self.mlp(x, training=training))
        y = self.ln(x) if self.ln is not None else self.norm_bn(x, training=training)
        shape = ops.shape(y)
        heads = self.dim // 32
        qkv = ops.matmul(ops.reshape(y, (shape[0], -1, self.dim)), ops.cast(self.qkv, y.dtype))
        q, k, v = (ops.reshape(t, (shape[0], -1, heads, 32)) for t in ops.split(qkv, 3, axis=-1))
        y = ops.reshape(attention(q, k, v), (shape[0], -1, self.dim))
        y = ops.matmul(y, ops.cast(self.proj, y.dtype)) + ops.cast(self.proj_bias, y.dtype)
        x = x + self._scale(self.layer_scale_1, ops.reshape(y, shape))
        return x + self._scale(self.layer_scale_2, self.mlp(x, training=training))


class Stage(HostModule):
    """A FastViT stage: patch embedding (:class:`LargeKernel` + 1x1 :class:`MobileOne`), positional encoding
    (``x + depthwise 7x7 conv(x)``, re-parameterised as one conv), blocks."""

    def __init__(self, cin, cout, depth, mixer, mlp_ratio, downsample, se, pos_emb, layer_norm_, inference=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.dim = cout
        self.down_conv = self.down_mix = self.pos_enc = self.pos_reparam = None
        if downsample:
            self.down_conv = self.sub(LargeKernel, "down_conv", cin, cout, se=se, inference=inference)
            self.down_mix = self.sub(MobileOne, "down_mix", cout, cout, 1, inference=inference)
        if pos_emb:
            name = "pos_reparam" if inference else "pos_enc"
            setattr(self, name, self.sub(Conv, name, cout, cout, 7, 1, cout))
        self.blocks = [self.sub(Block, f"block_{i}", cout, mlp_ratio, mixer, layer_norm_, inference)
                       for i in range(depth)]
        self.built = True

    def call(self, x, training=False):
        if self.down_conv is not None:
            x = self.down_mix(self.down_conv(x, training=training), training=training)
        if self.pos_enc is not None:
            x = x + self.pos_enc(x)
        elif self.pos_reparam is not None:
            x = self.pos_reparam(x)
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def fuse(self, state: dict, prefix: str) -> None:
        """Re-parameterise this stage's weights in ``state`` (in place), as timm's ``reparameterize_model``."""
        if self.down_conv is not None:
            self.down_conv.fuse(state, prefix + "downsample.proj.0.")
            self.down_mix.fuse(state, prefix + "downsample.proj.1.")
        if self.pos_enc is not None:
            part = _take(state, prefix + "pos_emb.pos_enc.")
            state[prefix + "pos_emb.reparam_conv.weight"] = _identity_kernel(self.dim, 1, 7) + part["weight"]
            state[prefix + "pos_emb.reparam_conv.bias"] = part["bias"]
        for i, block in enumerate(self.blocks):
            if block.repmixer is not None:
                block.repmixer.fuse(state, prefix + f"blocks.{i}.token_mixer.")
