"""Attention of one sequence over another, for CoCa: the attentional pooler and the decoder's cross-attention.

Weight names follow ``torch.nn.MultiheadAttention``: one fused ``in_proj`` (``in_proj_weight/bias``) when
queries and keys have the same width, else separate ``q/k/v_proj_weight`` kernels and one ``in_proj_bias``.
Tensors are batch-first ``[batch, tokens, width]``.
"""

from __future__ import annotations

import keras
from keras import ops

from .layers import MLP, LayerScale, attention, child_seed, constant_init, dense, layer_norm, normal_init


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

    def _project(self, x, part: int):
        """``x @ W_part + b_part`` for part 0 (query), 1 (key) or 2 (value), split into heads."""
        e = self.width
        if self.fused:
            kernel, bias = self.in_proj.kernel[:, part * e:(part + 1) * e], self.in_proj.bias[part * e:(part + 1) * e]
        else:
            kernel = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[part]
            bias = self.in_proj_bias[part * e:(part + 1) * e]
        y = ops.matmul(x, ops.cast(kernel, x.dtype)) + ops.cast(bias, x.dtype)
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


@keras.saving.register_keras_serializable(package="anyclip")
class AttentionalPooler(keras.layers.Layer):
    """``n_queries`` learned queries (``ln_q``) attend to the tokens (``ln_k``): ``[B, n_queries, d_model]``.

    open_clip's ``AttentionalPooler`` (CoCa's image tower head).

    Example:
        >>> pool = AttentionalPooler(16, 32, heads=2, n_queries=4)
        >>> pool(keras.ops.zeros((2, 5, 32))).shape
        (2, 4, 16)
    """

    def __init__(self, d_model: int, context_dim: int, heads: int = 8, n_queries: int = 256,
                 seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.context_dim, self.heads, self.n_queries = d_model, context_dim, heads, n_queries
        self.seed = seed
        policy = self.dtype_policy
        self.attn = CrossAttention(d_model, heads, context_dim, child_seed(seed, "attn"), name="attn", dtype=policy)
        self.ln_q = layer_norm("ln_q", policy)
        self.ln_k = layer_norm("ln_k", policy)

    def build(self, input_shape=None):
        self.query = self.add_weight(name="query", shape=(self.n_queries, self.d_model),
                                     initializer=normal_init(1.0, self.seed, "query"))
        self.attn.build()
        self.ln_q.build((None, self.d_model))
        self.ln_k.build((None, None, self.context_dim))
        self.built = True

    def call(self, x):
        x = self.ln_k(x)
        q = self.ln_q(ops.cast(self.query, x.dtype))
        q = ops.broadcast_to(q[None], (ops.shape(x)[0], self.n_queries, self.d_model))
        return self.attn(q, x)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "context_dim": self.context_dim,
                "heads": self.heads, "n_queries": self.n_queries, "seed": self.seed}


@keras.saving.register_keras_serializable(package="anyclip")
class CrossAttentionBlock(keras.layers.Layer):
    """Pre-norm block ``x + ls_1(attn(ln_1(x), ln_1_kv(context)))`` then ``x + ls_2(mlp(ln_2(x)))``.

    open_clip's ``ResidualAttentionBlock(is_cross_attention=True)`` (CoCa decoder ``cross_attn.{i}``).

    Example:
        >>> block = CrossAttentionBlock(32, 2, 128)
        >>> block(keras.ops.zeros((2, 3, 32)), keras.ops.zeros((2, 5, 32))).shape
        (2, 3, 32)
    """

    def __init__(self, width: int, heads: int, mlp_width: int, quick_gelu: bool = False,
                 ls_init_value: float | None = None, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.width, self.heads, self.mlp_width = width, heads, mlp_width
        self.quick_gelu, self.ls_init_value, self.seed = quick_gelu, ls_init_value, seed
        policy = self.dtype_policy
        self.ln_1 = layer_norm("ln_1", policy)
        self.ln_1_kv = layer_norm("ln_1_kv", policy)
        self.attn = CrossAttention(width, heads, width, child_seed(seed, "attn"), name="attn", dtype=policy)
        self.ln_2 = layer_norm("ln_2", policy)
        self.mlp = MLP(width, mlp_width, quick_gelu, None, child_seed(seed, "mlp"), name="mlp", dtype=policy)
        if ls_init_value is not None:
            self.ls_1 = LayerScale(width, ls_init_value, name="ls_1", dtype=policy)
            self.ls_2 = LayerScale(width, ls_init_value, name="ls_2", dtype=policy)
        else:
            self.ls_1 = self.ls_2 = None

    def build(self, input_shape=None):
        shape = (None, None, self.width)
        for layer in (self.ln_1, self.ln_1_kv, self.attn, self.ln_2, self.mlp, self.ls_1, self.ls_2):
            if layer is not None:
                layer.build(shape)
        self.built = True

    def context_kv(self, context):
        """The context's projected keys and values (compute once, pass as ``kv`` to every call)."""
        return self.attn.project_kv(self.ln_1_kv(context))

    def call(self, x, context=None, kv=None):
        h = self.attn(self.ln_1(x), kv=kv if kv is not None else self.context_kv(context))
        x = x + (self.ls_1(h) if self.ls_1 is not None else h)
        h = self.mlp(self.ln_2(x))
        return x + (self.ls_2(h) if self.ls_2 is not None else h)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads, "mlp_width": self.mlp_width,
                "quick_gelu": self.quick_gelu, "ls_init_value": self.ls_init_value, "seed": self.seed}
