"""Host (numpy) results for the TensorFlow-flavoured faces: arrays with TensorFlow's ``.numpy()``.

tfclip and open_clip_jax code calls ``.numpy()`` (and ``._numpy()``) on what the library returns, which only
TensorFlow's eager tensors have. :class:`HostArray` is a numpy array that also answers those two, and
:func:`to_host` turns a concrete JAX or torch result into one (detached: no grad tracking), leaving symbolic
values (Keras tensors, JAX tracers, TensorFlow graph tensors) and TensorFlow's eager tensors as they are.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = ["HostArray", "to_host"]


class HostArray(np.ndarray):
    """A numpy array with TensorFlow's ``.numpy()`` / ``._numpy()`` (both return a plain ``np.ndarray``).

    Example:
        >>> probs = HostArray.of(np.array([[0.25, 0.75]], "float32"))
        >>> type(probs.numpy()).__name__, probs.numpy().tolist()
        ('ndarray', [[0.25, 0.75]])
    """

    @classmethod
    def of(cls, value) -> HostArray:
        """``value`` (a numpy array or anything ``np.asarray`` reads) viewed as a :class:`HostArray`."""
        return np.asarray(value).view(cls)

    def numpy(self) -> np.ndarray:
        """This array as a plain ``np.ndarray`` (TensorFlow's ``EagerTensor.numpy``)."""
        return self.view(np.ndarray)

    _numpy = numpy  # TensorFlow's private spelling, which open_clip_jax's README calls


def to_host(x):
    """A concrete JAX / torch array as a :class:`HostArray`; anything else unchanged.

    Unchanged: Keras symbolic tensors, JAX tracers (inside ``jax.jit`` / ``jax.grad``), torch meta tensors
    (Keras shape inference), and every TensorFlow tensor (eager ones already have ``.numpy()``).

    Example:
        >>> to_host(keras.ops.ones((2,))).numpy().tolist()  # doctest: +SKIP
        [1.0, 1.0]
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        if not isinstance(x, jax.Array) or isinstance(x, jax.core.Tracer):
            return x
    elif backend == "torch":
        import torch
        if not isinstance(x, torch.Tensor) or x.device.type == "meta":
            return x
    else:
        return x
    return HostArray.of(ops.convert_to_numpy(x))
