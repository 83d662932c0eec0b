"""Blocks of timm's vision transformers: block options, timm's block key names, the MAP attention-pool head.

timm's ``Block`` is open_clip's pre-norm residual block under other names (``norm1``, ``attn.qkv``,
``mlp.fc1``...), with the same fused-qkv layout, so the towers reuse :class:`anyclip.models.layers.Transformer`
and map timm's keys onto it with :data:`TIMM_BLOCK_TABLE`.
"""

from __future__ import annotations

import keras
from keras import ops

from .layers import MLP, attention, child_seed, dense, layer_norm, normal_init

TIMM_LN_EPS = 1e-6  # timm's LayerNorm default

# timm key (relative to ``blocks.{i}.``) -> attribute path on a layers.ResidualBlock, transform.
TIMM_BLOCK_TABLE = (
    ("norm1.weight", "ln_1.gamma", None),
    ("norm1.bias", "ln_1.beta", None),
    ("attn.qkv.weight", "attn.in_proj.kernel", "linear"),
    ("attn.qkv.bias", "attn.in_proj.bias", None),
    ("attn.proj.weight", "attn.out_proj.kernel", "linear"),
    ("attn.proj.bias", "attn.out_proj.bias", None),
    ("norm2.weight", "ln_2.gamma", None),
    ("norm2.bias", "ln_2.beta", None),
    ("mlp.fc1.weight", "mlp.c_fc.kernel", "linear"),
    ("mlp.fc1.bias", "mlp.c_fc.bias", None),
    ("mlp.fc2.weight", "mlp.c_proj.kernel", "linear"),
    ("mlp.fc2.bias", "mlp.c_proj.bias", None),
)
# timm ``AttentionPoolLatent`` keys (relative to ``attn_pool.``).
MAP_HEAD_TABLE = (
    ("latent", "latent", None),
    ("q.weight", "q.kernel", "linear"),
    ("q.bias", "q.bias", None),
    ("kv.weight", "kv.kernel", "linear"),
    ("kv.bias", "kv.bias", None),
    ("proj.weight", "proj.kernel", "linear"),
    ("proj.bias", "proj.bias", None),
    ("norm.weight", "norm.gamma", None),
    ("norm.bias", "norm.beta", None),
    ("mlp.fc1.weight", "mlp.c_fc.kernel", "linear"),
    ("mlp.fc1.bias", "mlp.c_fc.bias", None),
    ("mlp.fc2.weight", "mlp.c_proj.kernel", "linear"),
    ("mlp.fc2.bias", "mlp.c_proj.bias", None),
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
