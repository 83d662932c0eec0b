"""Backend plumbing: run a tower for inference as fast as its backend allows.

JAX: ``jax.jit`` over the layer's stateless call (one compile per input shape); TensorFlow:
``tf.function``; torch: eager under ``torch.no_grad()`` (PyTorch's fused SDPA kernel does the attention).
Inside a trace (a user's ``jax.jit`` or ``tf.function``) the layer is called directly.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
from keras import ops


def _normalize(x):
    norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
    return x / ops.maximum(norm, 1e-12)


def _as_input(x):
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        if x.dtype == np.float64:
            x = x.astype(np.float32)
        elif x.dtype == np.int64:
            x = x.astype(np.int32)
    return x


def compiled(layer: keras.layers.Layer, normalize: bool = False) -> Callable:
    """A cached inference function ``f(x) -> layer(x)`` (L2-normalised if asked) for this backend.

    Example:
        >>> f = compiled(keras.layers.Dense(4))  # doctest: +SKIP
    """
    cache = layer.__dict__.setdefault("_anyclip_compiled", {})
    fn = cache.get(normalize)
    if fn is None:
        fn = cache[normalize] = _BUILDERS[keras.backend.backend()](layer, normalize)
    return fn


def _build_jax(layer, normalize):
    import jax

    def pure(trainable, non_trainable, x):
        y, _ = layer.stateless_call(trainable, non_trainable, x)
        return _normalize(y) if normalize else y

    jitted = jax.jit(pure)

    def run(x):
        if isinstance(x, jax.core.Tracer):
            y = layer(x)
            return _normalize(y) if normalize else y
        return jitted([v.value for v in layer.trainable_variables],
                      [v.value for v in layer.non_trainable_variables], _as_input(x))

    return run


def _build_torch(layer, normalize):
    import torch

    def run(x):
        with torch.no_grad():
            y = layer(ops.convert_to_tensor(_as_input(x)))
            return _normalize(y) if normalize else y

    return run


def _build_tensorflow(layer, normalize):
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def graph(x):
        y = layer(x)
        return _normalize(y) if normalize else y

    def run(x):
        if not tf.executing_eagerly():
            y = layer(x)
            return _normalize(y) if normalize else y
        return graph(tf.convert_to_tensor(_as_input(x)))

    return run


def _build_numpy(layer, normalize):
    def run(x):
        y = layer(_as_input(x))
        return _normalize(y) if normalize else y

    return run


_BUILDERS = {"jax": _build_jax, "torch": _build_torch, "tensorflow": _build_tensorflow,
             "numpy": _build_numpy, "openvino": _build_numpy}
