"""Host-side initialisation: seeded numpy initial values, derived seeds, and a layer that makes its weights up front.

Every anyclip weight is initialised on the host with numpy (no device kernel per variable), from a seed derived
from its parent's seed and its name, so the same seed gives the same model on every backend.
"""

from __future__ import annotations

import zlib

import keras
import numpy as np

from .backend import host_to_backend


@keras.saving.register_keras_serializable(package="anyclip")
class HostInit(keras.initializers.Initializer):
    """Initial values made with numpy on the host: ``std * N(0, 1)`` from ``seed``, or a constant.

    Creating variables this way costs no device kernel per variable (JAX compiles one per shape),
    and the same seed always gives the same values. ``seed=None`` means "weights will be loaded":
    every value is the constant (zeros), which is nearly free.
    """

    def __init__(self, std: float = 0.0, seed: int | None = None, constant: float = 0.0):
        self.std, self.seed, self.constant = std, seed, constant

    def __call__(self, shape, dtype=None):
        value = _aligned_zeros(shape)  # fresh pages: nothing is written to them for weights about to be loaded
        if self.seed is not None and self.std != 0.0:
            np.random.default_rng(self.seed).standard_normal(dtype=np.float32, out=value)
            value *= np.float32(self.std)
        elif self.constant != 0.0:
            value[...] = self.constant
        return host_to_backend(value)

    def get_config(self):
        return {"std": self.std, "seed": self.seed, "constant": self.constant}



def _aligned_zeros(shape) -> np.ndarray:
    """Float32 zeros starting on a 64-byte boundary, which JAX on a CPU keeps as the array's memory (no copy)."""
    size = int(np.prod(shape, dtype=np.int64))
    buffer = np.zeros(size + 16, np.float32)
    start = (-buffer.ctypes.data % 64) // 4
    return buffer[start:start + size].reshape(shape)


def child_seed(seed: int | None, name: str) -> int | None:
    """A stable seed for a sub-layer or variable ``name`` derived from its parent's ``seed``."""
    return None if seed is None else zlib.crc32(f"{seed}/{name}".encode())



def seed_generator(seed: int | None):
    """A ``keras.random.SeedGenerator`` for ``seed`` (``child_seed`` values folded into int32, which torch needs).

    Example:
        >>> seed_generator(2**32 - 1) is not None
        True
    """
    return keras.random.SeedGenerator((seed or 0) % (2**31 - 1))



def normal_init(std: float, seed: int | None, name: str) -> HostInit:
    return HostInit(std=std, seed=child_seed(seed, name))



def constant_init(value: float) -> HostInit:
    return HostInit(constant=value)


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

