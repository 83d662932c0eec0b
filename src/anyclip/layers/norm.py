"""Normalisation layers with torch's semantics: LayerNorm, RMSNorm and BatchNorm2d (channels last)."""

from __future__ import annotations

import keras
from keras import ops

from . import backend
from .init import constant_init

LN_EPS = 1e-5  # torch.nn.LayerNorm default, used by every open_clip tower



def layer_norm(name: str, dtype=None, eps: float = LN_EPS) -> keras.layers.LayerNormalization:
    """A torch ``nn.LayerNorm`` (weights ``gamma``/``beta`` = torch ``weight``/``bias``), epsilon torch's default.

    Example:
        >>> layer_norm("ln", eps=1e-6).epsilon
        1e-06
    """
    return LayerNorm(epsilon=eps, name=name, dtype=dtype,
                     gamma_initializer=constant_init(1.0), beta_initializer=constant_init(0.0))


@keras.saving.register_keras_serializable(package="anyclip")
class LayerNorm(keras.layers.LayerNormalization):
    """``keras.layers.LayerNormalization`` with a hand-written gradient on JAX's CPU backend.

    The forward pass is Keras' own formula, op for op (the same values); XLA's autodiff of it takes several
    passes more than the closed form ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``, ``g = dy * gamma``
    (forward + backward of a ViT-B-32 image layer norm at batch 32, as bare functions: 8.9 ms autodiff, 5.3 ms
    closed form, torch's fused kernel 5.0 ms). See :func:`anyclip.layers.jax_cpu.layer_norm`.

    Example:
        >>> LayerNorm(epsilon=1e-5)(keras.ops.ones((2, 3, 4))).shape
        (2, 3, 4)
    """

    def call(self, inputs):
        if (backend.jax_on_cpu() and self.center and self.scale and not self.rms_scaling
                and self.axis in (-1, [-1], len(inputs.shape) - 1, [len(inputs.shape) - 1])):
            from .jax_cpu import layer_norm as jax_cpu_layer_norm
            gamma, beta = ops.convert_to_tensor(self.gamma), ops.convert_to_tensor(self.beta)
            out = jax_cpu_layer_norm(ops.convert_to_tensor(inputs), gamma, beta, self.epsilon)
            return ops.cast(out, self.compute_dtype)
        return super().call(inputs)


# torch ``LayerNorm`` keys -> attribute path on a Keras ``LayerNormalization``, transform (anyclip.weights.mapping).
LAYER_NORM_TABLE = (("weight", "gamma", None), ("bias", "beta", None))
BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # torch.nn.BatchNorm2d defaults, used by every open_clip ResNet


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
        return backend.batch_norm_inference(x, self.moving_mean.value, self.moving_var.value, self.gamma.value,
                                            self.beta.value, BN_EPS)

    def _update(self, mean, unbiased_var):
        for var, batch in ((self.moving_mean, mean), (self.moving_var, unbiased_var)):
            old = ops.cast(var, "float32")
            var.assign(ops.cast(old * (1.0 - BN_MOMENTUM) + batch * BN_MOMENTUM, var.dtype))
        self.num_batches_tracked.assign(self.num_batches_tracked + 1)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "zero_gamma": self.zero_gamma}


@keras.saving.register_keras_serializable(package="anyclip")
class RMSNorm(keras.layers.Layer):
    """Root-mean-square norm: ``weight * x / sqrt(mean(x^2) + eps)``, statistics in float32 (T5's ``layer_norm``).

    Example:
        >>> RMSNorm(4, 1e-6)(keras.ops.ones((2, 4))).shape
        (2, 4)
    """

    def __init__(self, width: int, eps: float, **kwargs):
        super().__init__(**kwargs)
        self.width, self.eps = width, eps

    def build(self, input_shape=None):
        self.weight = self.add_weight(name="weight", shape=(self.width,), initializer=constant_init(1.0))
        self.built = True

    def call(self, x):
        variance = ops.mean(ops.square(ops.cast(x, "float32")), axis=-1, keepdims=True)
        x = ops.cast(ops.cast(x, "float32") * ops.rsqrt(variance + self.eps), x.dtype)
        return ops.cast(self.weight, x.dtype) * x


TIMM_LN_EPS = 1e-6  # timm's LayerNorm default


def batch_norm(name: str, channels: int, dtype=None) -> BatchNorm:
    """A built :class:`BatchNorm` (torch's fresh ``BatchNorm2d``: gain 1, shift 0, statistics 0 / 1).

    Example:
        >>> batch_norm("bn", 8).moving_var.shape
        (8,)
    """
    layer = BatchNorm(channels, name=name, dtype=dtype)
    layer.build()
    return layer
