"""Dropout and drop-path (stochastic depth) with a Keras seed generator."""

from __future__ import annotations

import keras
from keras import ops


def dropout(x, rate: float, generator, per_sample: bool = False):
    """Inverted dropout of ``x`` (``per_sample``: timm's drop path, one draw per batch row); ``rate`` 0 is ``x``.

    Example:
        >>> dropout(keras.ops.ones((2, 3)), 0.0, None).shape
        (2, 3)
    """
    if not rate:
        return x
    shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1) if per_sample else ops.shape(x)
    keep = ops.cast(keras.random.uniform(shape, seed=generator) < 1.0 - rate, x.dtype)
    return x * keep / (1.0 - rate)


def drop_path(x, rate: float, generator):
    """Stochastic depth (timm's ``DropPath``): each batch row's branch is zeroed with probability ``rate``, the
    survivors scaled by ``1 / (1 - rate)``; ``rate`` 0 is ``x``.

    Example:
        >>> drop_path(keras.ops.ones((2, 3, 4)), 0.0, None).shape
        (2, 3, 4)
    """
    return dropout(x, rate, generator, per_sample=True)
