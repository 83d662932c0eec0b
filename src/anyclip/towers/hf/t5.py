"""mT5 encoder (``transformers`` ``MT5Stack`` as ``MT5Model.encoder``) in keras ops.

Pre-norm blocks with T5's RMS LayerNorm (no mean, no bias), attention without logit scaling plus a
bucketed, bidirectional relative position bias computed from block 0's table and shared by every block,
(gated) feed-forward without biases (mT5: ``gelu_new(wi_0 x) * wi_1 x``), and a final LayerNorm.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from ...layers.attention import masked_attention, split_heads
from ...layers.dense import LINEAR_TABLE, dense
from ...layers.init import child_seed
from ...layers.norm import RMSNorm
from ...layers.transformer import call_layer
from .common import embedding, hf_activation
from .config import HFArch

BLOCK_TABLE = (
    *((f"layer.0.SelfAttention.{n}.", n, LINEAR_TABLE) for n in ("q", "k", "v", "o")),
    ("layer.0.SelfAttention.relative_attention_bias.weight", "relative_attention_bias.embeddings", None),
    ("layer.0.layer_norm.weight", "attention_norm.weight", None),
    ("layer.1.DenseReluDense.wi.", "wi", LINEAR_TABLE),
    ("layer.1.DenseReluDense.wi_0.", "wi_0", LINEAR_TABLE),
    ("layer.1.DenseReluDense.wi_1.", "wi_1", LINEAR_TABLE),
    ("layer.1.DenseReluDense.wo.", "wo", LINEAR_TABLE),
    ("layer.1.layer_norm.weight", "ffn_norm.weight", None),
)
WEIGHT_TABLE = (
    ("transformer.embed_tokens.weight", "transformer.embed_tokens.embeddings", None),
    ("transformer.block.{i}.", "transformer.blocks", BLOCK_TABLE),
    ("transformer.final_layer_norm.weight", "transformer.final_layer_norm.weight", None),
)


# config.json model types this encoder reads -> transformers' defaults for the keys a config.json may leave out
HF_MODEL_TYPES: dict[str, dict] = {
    'mt5': {'vocab_size': 250112, 'd_model': 512, 'd_kv': 64, 'd_ff': 1024, 'num_layers': 8, 'num_heads': 6, 'relative_attention_num_buckets': 32, 'relative_attention_max_distance': 128, 'layer_norm_epsilon': 1e-06, 'feed_forward_proj': 'gated-gelu', 'pad_token_id': 0},
}


def _bucket(relative: np.ndarray, num_buckets: int, max_distance: int) -> np.ndarray:
    half = num_buckets // 2
    buckets = (relative > 0).astype(np.int64) * half
    distance = np.abs(relative)
    max_exact = half // 2
    far = np.maximum(distance, max_exact).astype(np.float32)  # the log is only used where distance >= max_exact
    scaled = (np.log(far / np.float32(max_exact))
              / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact))
    large = np.minimum(max_exact + scaled.astype(np.int64), half - 1)
    return (buckets + np.where(distance < max_exact, distance, large)).astype(np.int32)


def bucket_table(num_buckets: int, max_distance: int) -> tuple[np.ndarray, int]:
    """``(table, reach)``: ``table[d + reach]`` is the bucket of ``key - query = d`` for ``|d| <= reach``; every
    farther distance falls in the same bucket as ``±reach`` (the buckets are monotonic and saturate by
    ``max_distance``). Lets :meth:`T5Block.position_bias` take a length known only at run time.

    Example:
        >>> table, reach = bucket_table(32, 128)
        >>> table[reach:reach + 3].tolist()
        [0, 17, 18]
    """
    reach = 2 * max_distance
    return _bucket(np.arange(-reach, reach + 1, dtype=np.int64), num_buckets, max_distance), reach


@keras.saving.register_keras_serializable(package="anyclip")
class T5Block(keras.layers.Layer):
    """``x + o(attn(norm(x)) + bias)`` then ``x + wo(ffn(norm(x)))``; block 0 owns the bias table."""

    def __init__(self, arch: HFArch, has_bias_table: bool = False, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.arch = arch
        d, inner, ff, policy = arch.width, arch.heads * arch.head_dim, arch.ffn_width, self.dtype_policy
        self.attention_norm = RMSNorm(d, arch.eps, name="attention_norm", dtype=policy)
        self.q = dense(inner, (d * arch.head_dim) ** -0.5, seed, "q", policy, bias=False)
        self.k = dense(inner, d ** -0.5, seed, "k", policy, bias=False)
        self.v = dense(inner, d ** -0.5, seed, "v", policy, bias=False)
        self.o = dense(d, inner ** -0.5, seed, "o", policy, bias=False)
        self.relative_attention_bias = (
            embedding(arch.num_buckets, arch.heads, d ** -0.5, seed, "relative_attention_bias", policy)
            if has_bias_table else None)
        self.ffn_norm = RMSNorm(d, arch.eps, name="ffn_norm", dtype=policy)
        if arch.gated:
            self.wi = None
            self.wi_0 = dense(ff, d ** -0.5, seed, "wi_0", policy, bias=False)
            self.wi_1 = dense(ff, d ** -0.5, seed, "wi_1", policy, bias=False)
        else:
            self.wi = dense(ff, d ** -0.5, seed, "wi", policy, bias=False)
            self.wi_0 = self.wi_1 = None
        self.wo = dense(d, ff ** -0.5, seed, "wo", policy, bias=False)
        self.act = hf_activation(arch.act)

    def build(self, input_shape=None):
        a = self.arch
        shape = (None, None, a.width)
        for layer in (self.attention_norm, self.q, self.k, self.v, self.ffn_norm, self.wi, self.wi_0, self.wi_1):
            if layer is not None:
                layer.build(shape)
        self.o.build((None, None, a.heads * a.head_dim))
        self.wo.build((None, None, a.ffn_width))
        if self.relative_attention_bias is not None:
            self.relative_attention_bias.build((None, None))
        self.built = True

    def position_bias(self, length):
        """``[1, heads, length, length]`` additive bias from this block's bucket table (``length``: an int or a
        scalar tensor, e.g. ``ops.shape(tokens)[1]`` of a length unknown until run time)."""
        table, reach = bucket_table(self.arch.num_buckets, self.arch.max_distance)
        pos = ops.arange(length, dtype="int32")
        relative = ops.clip(pos[None, :] - pos[:, None], -reach, reach) + reach
        # a [n, 1] table: on torch, Keras' take of a 1-D table by 2-D indices squeezes a non-unit axis, which
        # ONNX's shape inference refuses (onnxruntime would not load the exported text encoder)
        buckets = ops.take(ops.convert_to_tensor(table[:, None]), relative, axis=0)[..., 0]
        values = self.relative_attention_bias(buckets)  # [q, k, heads]
        return ops.expand_dims(ops.transpose(values, (2, 0, 1)), 0)

    def call(self, x, bias, mask):
        heads = self.arch.heads
        h = self.attention_norm(x)
        q, k, v = (split_heads(layer(h), heads) for layer in (self.q, self.k, self.v))
        x = x + self.o(masked_attention(q, k, v, mask, bias=bias, scale=1.0))
        h = self.ffn_norm(x)
        h = self.act(self.wi_0(h)) * self.wi_1(h) if self.arch.gated else self.act(self.wi(h))
        return x + self.wo(h)


@keras.saving.register_keras_serializable(package="anyclip")
class T5Encoder(keras.layers.Layer):
    """``embed_tokens`` + ``blocks`` + ``final_layer_norm`` -> last hidden state ``[batch, tokens, width]``.

    Example:
        >>> from anyclip.towers.hf.config import hf_arch
        >>> arch = hf_arch({"model_type": "mt5", "vocab_size": 50, "d_model": 16, "d_kv": 4, "d_ff": 24,
        ...                 "num_layers": 2, "num_heads": 4})
        >>> ids = keras.ops.convert_to_tensor([[5, 6, 1, 0]])
        >>> T5Encoder(arch)(ids, ids != 0).shape
        (1, 4, 16)
    """

    WEIGHT_TABLE = WEIGHT_TABLE
    EMBEDDINGS_PREFIX = "transformer.embed_tokens."
    LAYER_PREFIX = "transformer.block.{i}."

    def __init__(self, arch: HFArch, with_pooler: bool = False, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.arch = arch
        policy = self.dtype_policy
        self.embed_tokens = embedding(arch.vocab_size, arch.width, 1.0, seed, "embed_tokens", policy)
        self.blocks = [T5Block(arch, i == 0, child_seed(seed, f"block{i}"), name=f"block_{i}", dtype=policy)
                       for i in range(arch.layers)]
        self.final_layer_norm = RMSNorm(arch.width, arch.eps, name="final_layer_norm", dtype=policy)
        self.grad_checkpointing = False

    def build(self, input_shape=None):
        self.embed_tokens.build((None, None))
        for block in self.blocks:
            block.build()
        self.final_layer_norm.build((None, None, self.arch.width))
        self.built = True

    def call(self, tokens, mask):
        x = self.embed_tokens(tokens)
        bias = self.blocks[0].position_bias(ops.shape(tokens)[1])
        for block in self.blocks:
            x = call_layer(block, x, bias, mask, remat=self.grad_checkpointing)
        return self.final_layer_norm(x)
