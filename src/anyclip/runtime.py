"""Backend plumbing: run a tower for inference as fast as its backend allows.

JAX: ``jax.jit`` over the layer's stateless call (one compile per input shape); TensorFlow:
``tf.function``; torch: eager under ``torch.no_grad()`` (PyTorch's fused SDPA kernel does the attention).
Inside a trace (a user's ``jax.jit`` or ``tf.function``) the layer is called directly. Every call runs
under :func:`anyclip.matmul_precision.matmul_scope` for the model's precision: ``fp32`` means exact float32
products on GPUs too, ``tf32`` allows TF32.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
from keras import ops

from .matmul_precision import matmul_scope


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


def compiled(layer: keras.layers.Layer, normalize: bool = False, precision: str = "fp32") -> Callable:
    """A cached inference function ``f(x) -> layer(x)`` (L2-normalised if asked) for this backend.

    ``precision`` is the model's (``create_model``'s name): ``fp32`` runs float32 products exactly,
    ``tf32`` lets GPUs use TF32 (layers that compute in another dtype keep the backend's default). On JAX, ``f.lower(x)`` gives the ``jax.stages.Lowered`` of the call
    (its HLO text and cost analysis).

    Example:
        >>> f = compiled(keras.layers.Dense(4))  # doctest: +SKIP
    """
    if layer.compute_dtype != "float32":
        precision = None  # bf16 / fp16 products: the precision switches are for float32 only
    cache = layer.__dict__.setdefault("_anyclip_compiled", {})
    key = (normalize, precision)
    fn = cache.get(key)
    if fn is None:
        fn = cache[key] = _BUILDERS[keras.backend.backend()](layer, normalize, precision)
    return fn


def _build_jax(layer, normalize, precision):
    import jax

    def pure(trainable, non_trainable, x):
        y, _ = layer.stateless_call(trainable, non_trainable, x)
        return _normalize(y) if normalize else y

    jitted = jax.jit(pure)

    def arguments(x):
        return ([v.value for v in layer.trainable_variables], [v.value for v in layer.non_trainable_variables],
                _as_input(x))

    def run(x):
        with matmul_scope(precision, "jax"):  # read when tracing; part of jit's cache key
            if isinstance(x, jax.core.Tracer):
                y = layer(x)
                return _normalize(y) if normalize else y
            return jitted(*arguments(x))

    def lower(x):
        with matmul_scope(precision, "jax"):
            return jitted.lower(*arguments(x))

    run.lower = lower
    return run


def _build_torch(layer, normalize, precision):
    import torch

    def run(x):
        with torch.no_grad(), matmul_scope(precision, "torch"):
            y = layer(ops.convert_to_tensor(_as_input(x)))
            return _normalize(y) if normalize else y

    return run


def _build_tensorflow(layer, normalize, precision):
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def graph(x):
        y = layer(x)
        return _normalize(y) if normalize else y

    def run(x):
        with matmul_scope(precision, "tensorflow"):
            if not tf.executing_eagerly():
                y = layer(x)
                return _normalize(y) if normalize else y
            return graph(tf.convert_to_tensor(_as_input(x)))

    return run


def _build_numpy(layer, normalize, precision):
    def run(x):
        y = layer(_as_input(x))
        return _normalize(y) if normalize else y

    return run


_BUILDERS = {"jax": _build_jax, "torch": _build_torch, "tensorflow": _build_tensorflow,
             "numpy": _build_numpy, "openvino": _build_numpy}
