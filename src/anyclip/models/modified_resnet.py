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

import keras
from keras import ops

from .config import ModifiedResNetConfig
from .layers import attention, child_seed, constant_init, dense, lock_groups, normal_init

BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # torch.nn.BatchNorm2d defaults, used by every open_clip ResNet
_TORCH = keras.backend.backend() == "torch"

# Rows are (open_clip key, attribute path, transform); a tuple of rows as transform is a sub-table for
# the sub-layer at that path, expanded over a list of sub-layers when the key holds "{i}"
# (see anyclip.weights.mapping). num_batches_tracked is an int32 variable, exported as torch's int64.
BATCH_NORM_TABLE = (
    ("weight", "gamma", None),
    ("bias", "beta", None),
    ("running_mean", "moving_mean", None),
    ("running_var", "moving_var", None),
    ("num_batches_tracked", "num_batches_tracked", None),
)
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
    *((f"attnpool.{p}_proj.weight", f"attnpool.{p}_proj.kernel", "linear") for p in "kqvc"),
    *((f"attnpool.{p}_proj.bias", f"attnpool.{p}_proj.bias", None) for p in "kqvc"),
)


@keras.saving.register_keras_serializable(package="anyclip")
class BatchNorm(keras.layers.Layer):
    """``torch.nn.BatchNorm2d`` over the last (channel) axis, in inference and in training.

    Training (``training=True`` and not :attr:`frozen`): normalise with the batch mean and biased
    variance; update ``moving_mean`` / ``moving_var`` as ``0.9 * old + 0.1 * batch`` with the *unbiased*
    batch variance, and add 1 to ``num_batches_tracked`` (``keras.layers.BatchNormalization`` uses the
    biased variance and no counter, so it cannot match). ``frozen = True`` is open_clip's
    ``freeze_bn_stats``: running statistics always, never updated.

    Example:
        >>> bn = BatchNorm(8)
        >>> bn(keras.ops.ones((2, 4, 4, 8)), training=True).shape
        (2, 4, 4, 8)
    """

    def __init__(self, channels: int, zero_gamma: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.zero_gamma = channels, zero_gamma
        self.frozen = False

    def build(self, input_shape=None):
        c = (self.channels,)
        self.gamma = self.add_weight(name="gamma", shape=c, initializer=constant_init(0.0 if self.zero_gamma else 1.0))
        self.beta = self.add_weight(name="beta", shape=c, initializer=constant_init(0.0))
        self.moving_mean = self.add_weight(name="moving_mean", shape=c, initializer=constant_init(0.0),
                                           trainable=False)
        self.moving_var = self.add_weight(name="moving_var", shape=c, initializer=constant_init(1.0),
                                          trainable=False)
        self.num_batches_tracked = self.add_weight(name="num_batches_tracked", shape=(), dtype="int32",
                                                   initializer="zeros", trainable=False)
        self.built = True

    def call(self, x, training: bool = False):
        f32 = "float32"
        gamma, beta = ops.cast(self.gamma, f32), ops.cast(self.beta, f32)
        if training and not self.frozen:
            xf = ops.cast(x, f32)
            mean, var = ops.mean(xf, axis=(0, 1, 2)), ops.var(xf, axis=(0, 1, 2))
            count = 1
            for dim in ops.shape(x)[:3]:
                count = count * dim
            if isinstance(count, int) and count < 2:
                raise ValueError(f"batch norm in training needs more than 1 value per channel, got input "
                                 f"shape {tuple(ops.shape(x))} (as torch.nn.BatchNorm2d)")
            self._update(ops.stop_gradient(mean), ops.stop_gradient(var) * (count / (count - 1)))
            scale = gamma * ops.rsqrt(var + BN_EPS)
            return ops.cast((xf - mean) * scale + beta, x.dtype)
        if _TORCH and keras.backend.standardize_dtype(x.dtype) == self.gamma.dtype:  # torch's kernel, NCHW view
            import torch.nn.functional as F
            y = F.batch_norm(x.permute(0, 3, 1, 2), self.moving_mean.value, self.moving_var.value,
                             self.gamma.value, self.beta.value, False, 0.0, BN_EPS)
            return y.permute(0, 2, 3, 1)
        scale = gamma * ops.rsqrt(ops.cast(self.moving_var, f32) + BN_EPS)
        shift = beta - ops.cast(self.moving_mean, f32) * scale
        return x * ops.cast(scale, x.dtype) + ops.cast(shift, x.dtype)

    def _update(self, mean, unbiased_var):
        for var, batch in ((self.moving_mean, mean), (self.moving_var, unbiased_var)):
            old = ops.cast(var, "float32")
            var.assign(ops.cast(old * (1.0 - BN_MOMENTUM) + batch * BN_MOMENTUM, var.dtype))
        self.num_batches_tracked.assign(self.num_batches_tracked + 1)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "zero_gamma": self.zero_gamma}


@keras.saving.register_keras_serializable(package="anyclip")
class Conv(keras.layers.Layer):
    """Bias-free square convolution with torch's symmetric zero padding ``kernel_size // 2`` (kernel HWIO).

    A 1x1 convolution runs as a matmul over channels; on torch the others call ``F.conv2d`` on the
    channels-last tensor viewed as NCHW (no copies of the activations).

    Example:
        >>> Conv(3, 8, 3, stride=2)(keras.ops.zeros((1, 32, 32, 3))).shape
        (1, 16, 16, 8)
    """

    def __init__(self, in_channels: int, filters: int, kernel_size: int, stride: int = 1, seed: int | None = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.filters, self.kernel_size, self.stride = in_channels, filters, kernel_size, stride
        self.seed = seed

    def build(self, input_shape=None):
        k = self.kernel_size
        fan_in = self.in_channels * k * k
        self.kernel = self.add_weight(name="kernel", shape=(k, k, self.in_channels, self.filters),
                                      initializer=normal_init((3 * fan_in) ** -0.5, self.seed, "kernel"))
        self.built = True

    def call(self, x):
        kernel = ops.cast(self.kernel, x.dtype)
        k, s, pad = self.kernel_size, self.stride, self.kernel_size // 2
        if k == 1 and s == 1:
            return ops.matmul(x, kernel[0, 0])
        if _TORCH:  # HWIO -> OIHW with channels-last memory is one 2-D transpose ([k*k*in, out] -> [out, k*k*in])
            import torch.nn.functional as F
            cin = kernel.shape[2]
            weight = kernel.reshape(k * k * cin, -1).t().contiguous().view(-1, k, k, cin).permute(0, 3, 1, 2)
            y = F.conv2d(x.permute(0, 3, 1, 2), weight, stride=s, padding=pad)
            return y.permute(0, 2, 3, 1)
        if s == 1 and k % 2 == 1:  # "same" pads (k - 1) / 2 on each side, as torch does
            return ops.conv(x, kernel, strides=1, padding="same")
        x = ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return ops.conv(x, kernel, strides=s, padding="valid")

    def get_config(self):
        return {**super().get_config(), "in_channels": self.in_channels, "filters": self.filters,
                "kernel_size": self.kernel_size, "stride": self.stride, "seed": self.seed}


def _relu(x):
    """ReLU; in place on torch when no gradient is recorded (``x`` is always a fresh intermediate here)."""
    if _TORCH:
        import torch
        if not torch.is_grad_enabled():
            return x.relu_()
    return ops.relu(x)


def _add_relu(x, identity):
    """``relu(x + identity)``, in place on ``x`` on torch when no gradient is recorded."""
    if _TORCH:
        import torch
        if not torch.is_grad_enabled():
            return x.add_(identity).relu_()
    return ops.relu(x + identity)


def avg_pool(x, size: int):
    """``torch.nn.AvgPool2d(size)`` on channels-last ``x`` (stride = size, no padding, floor)."""
    if size == 1:
        return x
    if _TORCH:  # torch's kernel on the NCHW view of x (channels-last memory, no copies)
        import torch.nn.functional as F
        return F.avg_pool2d(x.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1)
    shape = ops.shape(x)
    h, w = shape[1] // size, shape[2] // size
    x = ops.reshape(x[:, :h * size, :w * size], (shape[0], h, size, w, size, shape[3]))
    return ops.mean(x, axis=(2, 4))


@keras.saving.register_keras_serializable(package="anyclip")
class Bottleneck(keras.layers.Layer):
    """1x1 -> 3x3 -> (avg pool) -> 1x1 (x4 channels) with batch norms, plus an (avg pool + 1x1 + BN) shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.planes, self.stride = in_channels, planes, stride
        out, policy = planes * self.expansion, self.dtype_policy

        def conv(name, cin, cout, k):
            return Conv(cin, cout, k, seed=child_seed(seed, name), name=name, dtype=policy)

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
        out = _relu(self.bn1(self.conv1(x), training=training))
        out = _relu(self.bn2(self.conv2(out), training=training))
        out = self.bn3(self.conv3(avg_pool(out, self.stride)), training=training)
        identity = x
        if self.downsample_conv is not None:
            identity = self.downsample_bn(self.downsample_conv(avg_pool(x, self.stride)), training=training)
        return _add_relu(out, identity)

    def get_config(self):
        return {**super().get_config(), "in_channels": self.in_channels, "planes": self.planes,
                "stride": self.stride}


@keras.saving.register_keras_serializable(package="anyclip")
class AttentionPool(keras.layers.Layer):
    """open_clip ``AttentionPool2d``: tokens = [mean, grid] + positions; multi-head attention; first token.

    Only the mean token's query is computed: the output is that token's attention result (``c_proj``).
    """

    def __init__(self, grid: int, width: int, heads: int, output_dim: int, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.grid, self.width, self.heads, self.output_dim, self.seed = grid, width, heads, output_dim, seed
        std, policy = width ** -0.5, self.dtype_policy
        self.q_proj = dense(width, std, seed, "q_proj", policy)
        self.k_proj = dense(width, std, seed, "k_proj", policy)
        self.v_proj = dense(width, std, seed, "v_proj", policy)
        self.c_proj = dense(output_dim, std, seed, "c_proj", policy)

    def build(self, input_shape=None):
        self.positional_embedding = self.add_weight(
            name="positional_embedding", shape=(self.grid * self.grid + 1, self.width),
            initializer=normal_init(self.width ** -0.5, self.seed, "positional_embedding"))
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.c_proj):
            proj.build((None, self.width))
        self.built = True

    def call(self, x):
        shape = ops.shape(x)
        batch, tokens = shape[0], shape[1] * shape[2]
        if isinstance(tokens, int) and (shape[1], shape[2]) != (self.grid, self.grid):
            raise ValueError(f"the image gives a {shape[1]}x{shape[2]} feature grid, but this model's attention "
                             f"pool expects {self.grid}x{self.grid} (images of {self.grid * 32} pixels)")
        x = ops.reshape(x, (batch, tokens, self.width))
        x = ops.concatenate([ops.mean(x, axis=1, keepdims=True), x], axis=1)
        x = x + ops.cast(self.positional_embedding, x.dtype)
        head_dim = self.width // self.heads
        q = ops.reshape(self.q_proj(x[:, :1]), (batch, 1, self.heads, head_dim))
        k = ops.reshape(self.k_proj(x), (batch, tokens + 1, self.heads, head_dim))
        v = ops.reshape(self.v_proj(x), (batch, tokens + 1, self.heads, head_dim))
        out = attention(q, k, v)
        return self.c_proj(ops.reshape(out, (batch, self.width)))

    def get_config(self):
        return {**super().get_config(), "grid": self.grid, "width": self.width, "heads": self.heads,
                "output_dim": self.output_dim, "seed": self.seed}


@keras.saving.register_keras_serializable(package="anyclip")
class ModifiedResNet(keras.layers.Layer):
    """ResNet image tower of OpenAI CLIP: 3-conv stem, 4 stages of anti-aliased Bottlenecks, attention pool.

    ``quick_gelu`` is accepted for the tower signature and unused (a ResNet has no GELU).

    Example:
        >>> cfg = ModifiedResNetConfig(layers=[1, 1, 1, 1], width=8, head_width=32, image_size=64)
        >>> tower = ModifiedResNet(cfg, embed_dim=16)
        >>> tower(keras.ops.zeros((2, 64, 64, 3))).shape
        (2, 16)
    """

    WEIGHT_TABLE = WEIGHT_TABLE  # how open_clip names this tower's weights (anyclip.weights.mapping)

    def __init__(self, config: ModifiedResNetConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.config = config if isinstance(config, ModifiedResNetConfig) else ModifiedResNetConfig(**config)
        self.embed_dim, self.quick_gelu = embed_dim, quick_gelu
        cfg, policy = self.config, self.dtype_policy
        w = cfg.width
        self.conv1 = Conv(3, w // 2, 3, stride=2, seed=child_seed(seed, "conv1"), name="conv1", dtype=policy)
        self.bn1 = BatchNorm(w // 2, name="bn1", dtype=policy)
        self.conv2 = Conv(w // 2, w // 2, 3, seed=child_seed(seed, "conv2"), name="conv2", dtype=policy)
        self.bn2 = BatchNorm(w // 2, name="bn2", dtype=policy)
        self.conv3 = Conv(w // 2, w, 3, seed=child_seed(seed, "conv3"), name="conv3", dtype=policy)
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
        x = _relu(self.bn1(self.conv1(images), training=training))
        x = _relu(self.bn2(self.conv2(x), training=training))
        x = _relu(self.bn3(self.conv3(x), training=training))
        return avg_pool(x, 2)

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

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Accepted and ignored, as in open_clip (its ModifiedResNet has no gradient checkpointing)."""

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embed_dim)

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config),
                "embed_dim": self.embed_dim, "quick_gelu": self.quick_gelu, "seed": self.seed}
