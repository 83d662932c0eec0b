"""Pooling heads: attention pools that turn a token sequence (or a feature grid) into one or a few vectors.

:class:`AttentionalPooler` (CoCa), :class:`AttentionPool` (OpenAI's ModifiedResNet ``attnpool``) and
:class:`MAPHead` (timm's multi-head attention pool, SigLIP).
"""

from __future__ import annotations

import keras
from keras import ops

from .attention import CrossAttention, attention
from .dense import LINEAR_TABLE, dense
from .init import child_seed, normal_init
from .mlp import MLP
from .norm import LAYER_NORM_TABLE, TIMM_LN_EPS, layer_norm


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
class AttentionPool(keras.layers.Layer):
    """open_clip ``AttentionPool2d``: tokens = [mean, grid] + positions; multi-head attention; first token.

    Only the mean token's query is computed: the output is that token's attention result (``c_proj``).
    """

    def __init__(self, grid: int, width: int, heads: int, output_dim: int, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.grid, self.width, self.heads, self.output_dim, self.seed = grid, width, heads, output_dim, seed
        std, policy = width ** -0.5, self.dtype_policy
        self.q_proj = dense(width, std, seed, "q_proj", policy)
        self.k_proj = dense(width, std, seed, "k_proj", policy)
        self.v_proj = dense(width, std, seed, "v_proj", policy)
        self.c_proj = dense(output_dim, std, seed, "c_proj", policy)

    def build(self, input_shape=None):
        self.positional_embedding = self.add_weight(
            name="positional_embedding", shape=(self.grid * self.grid + 1, self.width),
            initializer=normal_init(self.width ** -0.5, self.seed, "positional_embedding"))
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.c_proj):
            proj.build((None, self.width))
        self.built = True

    def call(self, x):
        shape = ops.shape(x)
        batch, tokens = shape[0], shape[1] * shape[2]
        if isinstance(tokens, int) and (shape[1], shape[2]) != (self.grid, self.grid):
            raise ValueError(f"the image gives a {shape[1]}x{shape[2]} feature grid, but this model's attention "
                             f"pool expects {self.grid}x{self.grid} (images of {self.grid * 32} pixels)")
        x = ops.reshape(x, (batch, tokens, self.width))
        x = ops.concatenate([ops.mean(x, axis=1, keepdims=True), x], axis=1)
        x = x + ops.cast(self.positional_embedding, x.dtype)
        head_dim = self.width // self.heads
        q = ops.reshape(self.q_proj(x[:, :1]), (batch, 1, self.heads, head_dim))
        k = ops.reshape(self.k_proj(x), (batch, tokens + 1, self.heads, head_dim))
        v = ops.reshape(self.v_proj(x), (batch, tokens + 1, self.heads, head_dim))
        out = attention(q, k, v)
        return self.c_proj(ops.reshape(out, (batch, self.width)))

    def get_config(self):
        return {**super().get_config(), "grid": self.grid, "width": self.width, "heads": self.heads,
                "output_dim": self.output_dim, "seed": self.seed}


# timm ``AttentionPoolLatent`` keys (relative to ``attn_pool.``).
MAP_HEAD_TABLE = (
    ("latent", "latent", None),
    ("q.", "q", LINEAR_TABLE),
    ("kv.", "kv", LINEAR_TABLE),
    ("proj.", "proj", LINEAR_TABLE),
    ("norm.", "norm", LAYER_NORM_TABLE),
    ("mlp.fc1.", "mlp.c_fc", LINEAR_TABLE),
    ("mlp.fc2.", "mlp.c_proj", LINEAR_TABLE),
)



@keras.saving.register_keras_serializable(package="anyclip")
class MAPHead(keras.layers.Layer):
    """timm's ``AttentionPoolLatent`` (one latent query): multi-head attention pool, then ``x + mlp(norm(x))``.

    The learned ``latent`` is projected by ``q``; the tokens by ``kv`` (keys then values); the attention
    output goes through ``proj``, then a pre-norm residual MLP. Input ``[batch, tokens, width]``, output
    ``[batch, width]``.

    Example:
        >>> MAPHead(64, heads=4, mlp_width=128)(keras.ops.zeros((2, 9, 64))).shape
        (2, 64)
    """

    def __init__(self, width: int, heads: int, mlp_width: int, gelu_tanh: bool = False,
                 norm_eps: float = TIMM_LN_EPS, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.width, self.heads, self.mlp_width = width, heads, mlp_width
        self.gelu_tanh, self.norm_eps = gelu_tanh, norm_eps
        self.seed, policy, std = seed, self.dtype_policy, width ** -0.5
        self.q = dense(width, std, seed, "q", policy)
        self.kv = dense(2 * width, std, seed, "kv", policy)
        self.proj = dense(width, std, seed, "proj", policy)
        self.norm = layer_norm("norm", policy, eps=norm_eps)
        self.mlp = MLP(width, mlp_width, seed=child_seed(seed, "mlp"), gelu_tanh=gelu_tanh, name="mlp", dtype=policy)

    def build(self, input_shape=None):
        self.latent = self.add_weight(name="latent", shape=(1, 1, self.width),
                                      initializer=normal_init(self.width ** -0.5, self.seed, "latent"))
        for layer in (self.q, self.kv, self.proj, self.norm, self.mlp):
            layer.build((None, self.width))
        self.built = True

    def call(self, x):
        batch, tokens = ops.shape(x)[0], ops.shape(x)[1]
        head_dim = self.width // self.heads
        q = self.q(ops.cast(self.latent, x.dtype))  # [1, 1, width]: the same query for every image
        q = ops.broadcast_to(ops.reshape(q, (1, 1, self.heads, head_dim)), (batch, 1, self.heads, head_dim))
        kv = ops.reshape(self.kv(x), (batch, tokens, 2, self.heads, head_dim))
        out = self.proj(ops.reshape(attention(q, kv[:, :, 0], kv[:, :, 1]), (batch, self.width)))
        return out + self.mlp(self.norm(out))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads, "mlp_width": self.mlp_width,
                "gelu_tanh": self.gelu_tanh, "norm_eps": self.norm_eps, "seed": self.seed}
