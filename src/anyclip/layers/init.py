"""Host-side initialisation: seeded numpy initial values, derived seeds, and a layer that makes its weights up front.

Every anyclip weight is initialised on the host with numpy (no device kernel per variable), from a seed derived
from its parent's seed and its name, so the same seed gives the same model on every backend.
"""

from __future__ import annotations

import zlib

import keras
import numpy as np


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
        if self.seed is None or self.std == 0.0:
            return np.full(shape, self.constant, dtype=np.float32)
        rng = np.random.default_rng(self.seed)
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(self.std)

    def get_config(self):
        return {"std": self.std, "seed": self.seed, "constant": self.constant}



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

