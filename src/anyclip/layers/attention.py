"""Attention: one softmax-attention function for every tower, and the attention layers built on it.

:func:`attention` goes through :func:`~anyclip.layers.backend.dot_product_attention`: torch's fused kernel on strided
head-major views, batched matmuls on head-major copies on JAX's CPU backend, ``keras.ops.dot_product_attention`` else;
:class:`Attention` is self-attention with one fused qkv projection (open_clip's ``in_proj``), :class:`CrossAttention`
attends one sequence over another (CoCa's pooler and decoder), :func:`masked_attention` is the key-padding form of
the Hugging Face encoders. Tensors are batch-first ``[batch, tokens, heads, head_dim]``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .backend import dot_product_attention, jax_on_cpu, linear
from .dense import LINEAR_TABLE, dense
from .init import constant_init, normal_init


def attention_dtype(dtype) -> str:
    """The dtype :func:`attention` computes in for inputs of ``dtype``: float32 for float16 on JAX's CPU
    backend (XLA:CPU has no float16 dot with float32 accumulation, which jax's attention and its gradient ask
    for), else ``dtype`` itself.

    Example:
        >>> attention_dtype("bfloat16")
        'bfloat16'
    """
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype == "float16" and jax_on_cpu() else dtype



def attention(q, k, v, mask=None, bias=None, scale: float | None = None, causal: bool = False):
    """Softmax attention through ``ops.dot_product_attention``, upcast to float32 where the backend needs it.

    ``q``: ``[batch, tokens, heads, head_dim]``, ``k, v``: ``[batch, keys, heads, head_dim]``; ``mask``: boolean,
    broadcastable to ``[batch, heads, tokens, keys]`` (True = may attend); ``bias``: additive, same shape rule;
    ``scale`` defaults to ``head_dim ** -0.5``. The result has ``q``'s shape and dtype; see
    :func:`attention_dtype` for the one case computed in float32.

    Example:
        >>> x = keras.ops.ones((1, 3, 2, 4), dtype="float16")
        >>> attention(x, x, x, causal=True).shape
        (1, 3, 2, 4)
    """
    dtype = keras.backend.standardize_dtype(q.dtype)
    compute = attention_dtype(dtype)
    if compute != dtype:
        q, k, v = (ops.cast(t, compute) for t in (q, k, v))
    if bias is not None:
        bias = ops.cast(bias, compute)
    out = dot_product_attention(q, k, v, mask=mask, bias=bias, scale=scale, causal=causal)
    return ops.cast(out, dtype) if compute != dtype else out



@keras.saving.register_keras_serializable(package="anyclip")
class Attention(keras.layers.Layer):
    """Multi-head self-attention with one fused qkv projection, through :func:`attention`.

    ``in_proj`` maps open_clip's ``attn.in_proj_weight/bias`` and ``out_proj`` its ``attn.out_proj``.
    """

    def __init__(self, width: int, heads: int, proj_std: float | None = None, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.width, self.heads = width, heads
        self.head_dim = width // heads
        self.in_proj = dense(3 * width, width ** -0.5, seed, "in_proj", self.dtype_policy)
        self.out_proj = dense(width, proj_std or width ** -0.5, seed, "out_proj", self.dtype_policy)

    def build(self, input_shape):
        self.in_proj.build(input_shape)
        self.out_proj.build(tuple(input_shape[:-1]) + (self.width,))
        self.built = True

    def call(self, x, causal: bool = False, attn_mask=None):
        """``attn_mask``: optional boolean ``[batch, 1, length, length]`` (True = may attend), and ``causal``."""
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.in_proj(x), (batch, length, 3, self.heads, self.head_dim))
        out = attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], mask=attn_mask, causal=causal)
        return self.out_proj(ops.reshape(out, (batch, length, self.width)))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads}


# torch ``MultiheadAttention`` keys (relative to the module) -> attribute path on :class:`CrossAttention`, transform:
# one fused in_proj when queries and keys have the same width, else separate q/k/v kernels; one bias either way.
CROSS_ATTENTION_TABLE = (
    ("in_proj_weight", "in_proj.kernel", "linear"),
    ("q_proj_weight", "q_proj_weight", "linear"),
    ("k_proj_weight", "k_proj_weight", "linear"),
    ("v_proj_weight", "v_proj_weight", "linear"),
    ("in_proj_bias", "qkv_bias", None),
    ("out_proj.", "out_proj", LINEAR_TABLE),
)


@keras.saving.register_keras_serializable(package="anyclip")
class CrossAttention(keras.layers.Layer):
    """Multi-head attention of queries ``x [B, T, width]`` over a context ``[B, S, kv_width]``.

    The context's keys and values can be projected once with :meth:`project_kv` and reused (the CoCa
    decoder does so for every generated token).

    Example:
        >>> attn = CrossAttention(32, 2, kv_width=48)
        >>> attn(keras.ops.zeros((2, 3, 32)), keras.ops.zeros((2, 5, 48))).shape
        (2, 3, 32)
    """

    def __init__(self, width: int, heads: int, kv_width: int | None = None, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.width, self.heads = width, heads
        self.kv_width = kv_width or width
        self.head_dim = width // heads
        self.fused = self.kv_width == width
        self.seed = seed
        policy = self.dtype_policy
        self.in_proj = dense(3 * width, width ** -0.5, seed, "in_proj", policy) if self.fused else None
        self.out_proj = dense(width, width ** -0.5, seed, "out_proj", policy)

    def build(self, input_shape=None):
        if self.fused:
            self.in_proj.build((None, self.width))
        else:
            def kernel(name, rows):
                return self.add_weight(name=name, shape=(rows, self.width),
                                       initializer=normal_init(rows ** -0.5, self.seed, name))
            self.q_proj_weight = kernel("q_proj_weight", self.width)
            self.k_proj_weight = kernel("k_proj_weight", self.kv_width)
            self.v_proj_weight = kernel("v_proj_weight", self.kv_width)
            self.in_proj_bias = self.add_weight(name="in_proj_bias", shape=(3 * self.width,),
                                                initializer=constant_init(0.0))
        self.out_proj.build((None, self.width))
        self.built = True

    @property
    def qkv_bias(self):
        """The query/key/value bias ``[3 * width]`` (torch's ``in_proj_bias``), fused or separate."""
        return self.in_proj.bias if self.fused else self.in_proj_bias

    def _project(self, x, part: int):
        """``x @ W_part + b_part`` for part 0 (query), 1 (key) or 2 (value), split into heads."""
        e = self.width
        if self.fused:
            kernel, bias = self.in_proj.kernel[:, part * e:(part + 1) * e], self.in_proj.bias[part * e:(part + 1) * e]
        else:
            kernel = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[part]
            bias = self.in_proj_bias[part * e:(part + 1) * e]
        y = linear(x, ops.cast(kernel, x.dtype)) + ops.cast(bias, x.dtype)
        shape = ops.shape(x)
        return ops.reshape(y, (shape[0], shape[1], self.heads, self.head_dim))

    def project_kv(self, context):
        """``(keys, values)`` of a context, each ``[B, S, heads, head_dim]``."""
        return self._project(context, 1), self._project(context, 2)

    def call(self, x, context=None, kv=None):
        k, v = kv if kv is not None else self.project_kv(context)
        q = self._project(x, 0)
        if k.dtype != q.dtype:
            k, v = ops.cast(k, q.dtype), ops.cast(v, q.dtype)
        out = attention(q, k, v)
        shape = ops.shape(x)
        return self.out_proj(ops.reshape(out, (shape[0], shape[1], self.width)))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads, "kv_width": self.kv_width,
                "seed": self.seed}


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



# torch.finfo(dtype).min: the additive "masked" value of HF attention masks
_LOWEST = {"float32": float(np.finfo(np.float32).min), "float16": float(np.finfo(np.float16).min),
           "bfloat16": -3.3895313892515355e38}
