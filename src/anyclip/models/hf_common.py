"""Pieces shared by the Hugging Face text encoders: activations, embeddings, masked attention.

Tensors are batch-first; attention takes ``[batch, tokens, heads, head_dim]`` and a key mask
``[batch, tokens]`` (True = a real token, as the HF ``attention_mask``).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from .layers import attention, attention_dtype, normal_init

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
# torch.finfo(dtype).min: the additive "masked" value of HF attention masks
_LOWEST = {"float32": float(np.finfo(np.float32).min), "float16": float(np.finfo(np.float16).min),
           "bfloat16": -3.3895313892515355e38}


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


def split_heads(x, heads: int):
    """``[batch, tokens, heads * head_dim]`` -> ``[batch, tokens, heads, head_dim]``."""
    batch, length = ops.shape(x)[0], ops.shape(x)[1]
    return ops.reshape(x, (batch, length, heads, x.shape[-1] // heads))


def masked_attention(q, k, v, key_mask, bias=None, scale: float | None = None):
    """Softmax attention over the keys where ``key_mask`` is True, as HF's SDPA path computes it.

    ``q, k, v``: ``[batch, tokens, heads, head_dim]``; ``key_mask``: bool ``[batch, tokens]``; ``bias``: additive
    ``[1 or batch, heads, tokens, tokens]`` (T5's position bias), replaced by the dtype's minimum at masked keys.
    Returns ``[batch, tokens, heads * head_dim]``.

    Example:
        >>> x = keras.ops.ones((1, 3, 2, 4))
        >>> masked_attention(x, x, x, keras.ops.convert_to_tensor([[True, True, False]])).shape
        (1, 3, 8)
    """
    batch, length = ops.shape(q)[0], ops.shape(q)[1]
    width = q.shape[2] * q.shape[3]
    mask = ops.reshape(key_mask, (batch, 1, 1, length))
    if bias is None:
        out = attention(q, k, v, mask=mask, scale=scale)
    else:  # the masked value is the minimum of the dtype the scores are computed in
        compute = attention_dtype(q.dtype)
        bias = ops.where(mask, ops.cast(bias, compute), _LOWEST.get(compute, _LOWEST["float32"]))
        out = attention(q, k, v, bias=bias, scale=scale)
    return ops.reshape(out, (batch, length, width))
