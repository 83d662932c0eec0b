"""M2M100 / NLLB encoder (``transformers`` ``M2M100Model.encoder``) in keras ops.

Token embeddings scaled by ``sqrt(d_model)`` (``scale_embedding``), fairseq sinusoidal positions counted
over non-pad tokens from ``pad_token_id + 1``, pre-LN blocks (ReLU feed-forward for NLLB) and a final
``layer_norm``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from ...layers.attention import masked_attention, split_heads
from ...layers.dense import LINEAR_TABLE, dense
from ...layers.init import child_seed
from ...layers.norm import LAYER_NORM_TABLE, layer_norm
from ...layers.transformer import call_layer
from .common import embedding, hf_activation
from .config import HFArch
from .roberta import position_ids

LAYER_TABLE = (
    *((f"self_attn.{name}.", name, LINEAR_TABLE) for name in ("k_proj", "v_proj", "q_proj", "out_proj")),
    ("self_attn_layer_norm.", "self_attn_layer_norm", LAYER_NORM_TABLE),
    ("fc1.", "fc1", LINEAR_TABLE),
    ("fc2.", "fc2", LINEAR_TABLE),
    ("final_layer_norm.", "final_layer_norm", LAYER_NORM_TABLE),
)
WEIGHT_TABLE = (
    ("transformer.embed_tokens.weight", "transformer.embed_tokens.embeddings", None),
    ("transformer.layers.{i}.", "transformer.layers", LAYER_TABLE),
    ("transformer.layer_norm.", "transformer.layer_norm", LAYER_NORM_TABLE),
)


# config.json model types this encoder reads -> transformers' defaults for the keys a config.json may leave out
HF_MODEL_TYPES: dict[str, dict] = {
    'm2m_100': {'vocab_size': 128112, 'd_model': 1024, 'encoder_layers': 12, 'encoder_attention_heads': 16, 'encoder_ffn_dim': 4096, 'activation_function': 'relu', 'max_position_embeddings': 1024, 'scale_embedding': True, 'pad_token_id': 1},
}

def sinusoidal_table(rows: int, width: int, padding_idx: int) -> np.ndarray:
    """fairseq / ``M2M100SinusoidalPositionalEmbedding`` rows ``[sin(i f) | cos(i f)]`` in float32, row
    ``padding_idx`` zero.

    Example:
        >>> sinusoidal_table(4, 6, 1)[1].tolist()
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    half = width // 2
    step = np.float32(math.log(10000) / (half - 1))
    freqs = np.exp(np.arange(half, dtype=np.float32) * -step)
    angles = np.arange(rows, dtype=np.float32)[:, None] * freqs[None, :]
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if width % 2:
        table = np.concatenate([table, np.zeros((rows, 1), np.float32)], axis=1)
    table[padding_idx] = 0
    return table.astype(np.float32)


@keras.saving.register_keras_serializable(package="anyclip")
class M2M100Layer(keras.layers.Layer):
    """``x + out_proj(attn(LN(x)))`` then ``x + fc2(act(fc1(LN(x))))``."""

    def __init__(self, arch: HFArch, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.arch = arch
        w, policy, std = arch.width, self.dtype_policy, 0.02
        self.self_attn_layer_norm = layer_norm("self_attn_layer_norm", policy, eps=arch.eps)
        self.q_proj = dense(w, std, seed, "q_proj", policy)
        self.k_proj = dense(w, std, seed, "k_proj", policy)
        self.v_proj = dense(w, std, seed, "v_proj", policy)
        self.out_proj = dense(w, std, seed, "out_proj", policy)
        self.final_layer_norm = layer_norm("final_layer_norm", policy, eps=arch.eps)
        self.fc1 = dense(arch.ffn_width, std, seed, "fc1", policy)
        self.fc2 = dense(w, std, seed, "fc2", policy)
        self.act = hf_activation(arch.act)

    def build(self, input_shape=None):
        shape = (None, None, self.arch.width)
        for layer in (self.self_attn_layer_norm, self.q_proj, self.k_proj, self.v_proj, self.out_proj,
                      self.final_layer_norm, self.fc1):
            layer.build(shape)
        self.fc2.build((None, None, self.arch.ffn_width))
        self.built = True

    def call(self, x, mask):
        heads = self.arch.heads
        h = self.self_attn_layer_norm(x)
        q, k, v = (split_heads(layer(h), heads) for layer in (self.q_proj, self.k_proj, self.v_proj))
        x = x + self.out_proj(masked_attention(q, k, v, mask, scale=(self.arch.width // heads) ** -0.5))
        return x + self.fc2(self.act(self.fc1(self.final_layer_norm(x))))


@keras.saving.register_keras_serializable(package="anyclip")
class M2M100Encoder(keras.layers.Layer):
    """Scaled token + sinusoidal position embeddings, ``layers``, ``layer_norm`` -> ``[batch, tokens, width]``.

    Example:
        >>> from anyclip.towers.hf.config import hf_arch
        >>> arch = hf_arch({"model_type": "m2m_100", "vocab_size": 50, "d_model": 16, "encoder_layers": 1,
        ...                 "encoder_attention_heads": 2, "encoder_ffn_dim": 32})
        >>> ids = keras.ops.convert_to_tensor([[7, 5, 2, 1]])
        >>> M2M100Encoder(arch)(ids, ids != 1).shape
        (1, 4, 16)
    """

    WEIGHT_TABLE = WEIGHT_TABLE
    EMBEDDINGS_PREFIX = "transformer.embed_tokens."
    LAYER_PREFIX = None  # open_clip's arch_dict has no layer attribute for m2m_100: no partial unlocking

    def __init__(self, arch: HFArch, with_pooler: bool = False, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.arch = arch
        policy = self.dtype_policy
        self.embed_tokens = embedding(arch.vocab_size, arch.width, 0.02, seed, "embed_tokens", policy)
        self.embed_scale = math.sqrt(arch.width) if arch.scale_embedding else 1.0
        self.layers = [M2M100Layer(arch, child_seed(seed, f"layer{i}"), name=f"layer_{i}", dtype=policy)
                       for i in range(arch.layers)]
        self.layer_norm = layer_norm("layer_norm", policy, eps=arch.eps)
        self.grad_checkpointing = False

    def build(self, input_shape=None):
        self.embed_tokens.build((None, None))
        for layer in self.layers:
            layer.build()
        self.layer_norm.build((None, None, self.arch.width))
        self.built = True

    def call(self, tokens, mask):
        pad, length = self.arch.pad_token_id, tokens.shape[1]
        # positions run up to pad + length; a length unknown until run time gets HF's max_position_embeddings
        rows = length if isinstance(length, int) else self.arch.max_positions
        table = sinusoidal_table(pad + 1 + rows, self.arch.width, pad)
        x = self.embed_tokens(tokens) * self.embed_scale
        x = x + ops.cast(ops.take(ops.convert_to_tensor(table), position_ids(mask, pad), axis=0), x.dtype)
        for layer in self.layers:
            x = call_layer(layer, x, mask, remat=self.grad_checkpointing)
        return self.layer_norm(x)
