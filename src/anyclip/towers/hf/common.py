"""Pieces shared by the Hugging Face text encoders: activations, embeddings, masked attention.

Tensors are batch-first; attention takes ``[batch, tokens, heads, head_dim]`` and a key mask
``[batch, tokens]`` (True = a real token, as the HF ``attention_mask``).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ...layers.init import normal_init

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def hf_activation(name: str):
    """The ``transformers.activations.ACT2FN[name]`` function in keras ops.

    Example:
        >>> float(hf_activation("relu")(keras.ops.convert_to_tensor(-1.0)))
        0.0
    """
    if name == "gelu":  # torch.nn.functional.gelu, erf form
        return lambda x: keras.activations.gelu(x, approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh"):  # tanh approximation
        return lambda x: 0.5 * x * (1.0 + ops.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * ops.power(x, 3.0))))
    if name == "relu":
        return ops.relu
    if name in ("silu", "swish"):
        return lambda x: x * ops.sigmoid(x)
    if name == "quick_gelu":
        return lambda x: x * ops.sigmoid(1.702 * x)
    raise ValueError(f"unsupported Hugging Face activation {name!r}")


def embedding(rows: int, width: int, std: float, seed: int | None, name: str, dtype=None) -> keras.layers.Embedding:
    """A torch ``nn.Embedding`` (weights normal(std)), initialised on the host."""
    return keras.layers.Embedding(rows, width, embeddings_initializer=normal_init(std, seed, name), name=name,
                                  dtype=dtype)


