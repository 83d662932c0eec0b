"""RoBERTa / XLM-RoBERTa encoder (``transformers`` ``RobertaModel`` / ``XLMRobertaModel``) in keras ops.

Post-LN BERT blocks; learned positions counted over non-pad tokens from ``pad_token_id + 1`` (fairseq's
``make_positions``); the all-zero token type embedding; embedding LayerNorm; optional ``pooler``
(``tanh(dense(h[:, 0]))``, built only for open_clip's ``cls_pooler``).
"""

from __future__ import annotations

import keras
from keras import ops

from ...layers.attention import masked_attention, split_heads
from ...layers.dense import LINEAR_TABLE, dense
from ...layers.init import child_seed
from ...layers.norm import LAYER_NORM_TABLE, layer_norm
from ...layers.transformer import call_layer
from .common import embedding, hf_activation
from .config import HFArch

# open_clip key (under "text.") -> attribute on the tower (see anyclip.weights.mapping)
LAYER_TABLE = (
    ("attention.self.query.", "query", LINEAR_TABLE),
    ("attention.self.key.", "key", LINEAR_TABLE),
    ("attention.self.value.", "value", LINEAR_TABLE),
    ("attention.output.dense.", "attention_output", LINEAR_TABLE),
    ("attention.output.LayerNorm.", "attention_norm", LAYER_NORM_TABLE),
    ("intermediate.dense.", "intermediate", LINEAR_TABLE),
    ("output.dense.", "output_dense", LINEAR_TABLE),
    ("output.LayerNorm.", "output_norm", LAYER_NORM_TABLE),
)
WEIGHT_TABLE = (
    ("transformer.embeddings.word_embeddings.weight", "transformer.word_embeddings.embeddings", None),
    ("transformer.embeddings.position_embeddings.weight", "transformer.position_embeddings.embeddings", None),
    ("transformer.embeddings.token_type_embeddings.weight", "transformer.token_type_embeddings.embeddings", None),
    ("transformer.embeddings.LayerNorm.", "transformer.embeddings_norm", LAYER_NORM_TABLE),
    ("transformer.encoder.layer.{i}.", "transformer.layers", LAYER_TABLE),
    ("transformer.pooler.dense.", "transformer.pooler", LINEAR_TABLE),
)


# config.json model types this encoder reads -> transformers' defaults for the keys a config.json may leave out
HF_MODEL_TYPES: dict[str, dict] = {
    'roberta': {'vocab_size': 50265, 'hidden_size': 768, 'num_hidden_layers': 12, 'num_attention_heads': 12, 'intermediate_size': 3072, 'hidden_act': 'gelu', 'max_position_embeddings': 512, 'type_vocab_size': 2, 'layer_norm_eps': 1e-12, 'pad_token_id': 1},
    'xlm-roberta': {'vocab_size': 30522, 'hidden_size': 768, 'num_hidden_layers': 12, 'num_attention_heads': 12, 'intermediate_size': 3072, 'hidden_act': 'gelu', 'max_position_embeddings': 512, 'type_vocab_size': 2, 'layer_norm_eps': 1e-12, 'pad_token_id': 1},
}

def position_ids(mask, pad_token_id: int):
    """RoBERTa's positions: ``pad + 1, pad + 2, ...`` over real tokens, ``pad`` at padding (int32)."""
    m = ops.cast(mask, "int32")
    return ops.cumsum(m, axis=1) * m + pad_token_id


@keras.saving.register_keras_serializable(package="anyclip")
class RobertaLayer(keras.layers.Layer):
    """One post-LN block: ``LN(x + attn(x))`` then ``LN(h + out(act(inter(h))))``."""

    def __init__(self, arch: HFArch, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.arch = arch
        w, policy, std = arch.width, self.dtype_policy, 0.02
        self.query = dense(w, std, seed, "query", policy)
        self.key = dense(w, std, seed, "key", policy)
        self.value = dense(w, std, seed, "value", policy)
        self.attention_output = dense(w, std, seed, "attention_output", policy)
        self.attention_norm = layer_norm("attention_norm", policy, eps=arch.eps)
        self.intermediate = dense(arch.ffn_width, std, seed, "intermediate", policy)
        self.output_dense = dense(w, std, seed, "output_dense", policy)
        self.output_norm = layer_norm("output_norm", policy, eps=arch.eps)
        self.act = hf_activation(arch.act)

    def build(self, input_shape):
        width_shape = tuple(input_shape[:-1]) + (self.arch.width,)
        for layer in (self.query, self.key, self.value, self.attention_output, self.intermediate):
            layer.build(width_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.arch.ffn_width,))
        self.attention_norm.build(width_shape)
        self.output_norm.build(width_shape)
        self.built = True

    def call(self, x, mask):
        heads = self.arch.heads
        q, k, v = (split_heads(layer(x), heads) for layer in (self.query, self.key, self.value))
        a = masked_attention(q, k, v, mask, scale=(self.arch.width // heads) ** -0.5)
        x = self.attention_norm(self.attention_output(a) + x)
        return self.output_norm(self.output_dense(self.act(self.intermediate(x))) + x)


@keras.saving.register_keras_serializable(package="anyclip")
class RobertaEncoder(keras.layers.Layer):
    """Embeddings + ``layers`` -> last hidden state ``[batch, tokens, width]``; ``pooled`` for ``cls_pooler``.

    Example:
        >>> from anyclip.towers.hf.config import hf_arch
        >>> arch = hf_arch({"model_type": "roberta", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1,
        ...                 "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 20})
        >>> enc = RobertaEncoder(arch)
        >>> ids = keras.ops.convert_to_tensor([[0, 5, 2, 1]])
        >>> enc(ids, ids != 1).shape
        (1, 4, 16)
    """

    WEIGHT_TABLE = WEIGHT_TABLE
    EMBEDDINGS_PREFIX = "transformer.embeddings."  # open_clip's lock(): the embeddings group...
    LAYER_PREFIX = "transformer.encoder.layer.{i}."  # ... and one group per layer

    def __init__(self, arch: HFArch, with_pooler: bool = False, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.arch = arch
        policy, std = self.dtype_policy, 0.02
        self.word_embeddings = embedding(arch.vocab_size, arch.width, std, seed, "word_embeddings", policy)
        self.position_embeddings = embedding(arch.max_positions, arch.width, std, seed, "position_embeddings", policy)
        self.token_type_embeddings = embedding(arch.type_vocab_size, arch.width, std, seed, "token_type_embeddings",
                                               policy)
        self.embeddings_norm = layer_norm("embeddings_norm", policy, eps=arch.eps)
        self.layers = [RobertaLayer(arch, child_seed(seed, f"layer{i}"), name=f"layer_{i}", dtype=policy)
                       for i in range(arch.layers)]
        self.pooler = dense(arch.width, std, seed, "pooler", policy) if with_pooler else None
        self.grad_checkpointing = False

    def build(self, input_shape=None):
        shape = (None, None, self.arch.width)
        for emb in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            emb.build((None, None))
        self.embeddings_norm.build(shape)
        for layer in self.layers:
            layer.build(shape)
        if self.pooler is not None:
            self.pooler.build((None, self.arch.width))
        self.built = True

    def call(self, tokens, mask):
        length = tokens.shape[1]
        if isinstance(length, int) and length + self.arch.pad_token_id >= self.arch.max_positions:
            raise ValueError(f"text of {length} tokens needs more than max_position_embeddings="
                             f"{self.arch.max_positions} positions")
        x = self.word_embeddings(tokens)
        x = x + ops.cast(self.token_type_embeddings.embeddings[0], x.dtype)  # token_type_ids are all 0
        x = x + self.position_embeddings(position_ids(mask, self.arch.pad_token_id))
        x = self.embeddings_norm(x)
        for layer in self.layers:
            x = call_layer(layer, x, mask, remat=self.grad_checkpointing)
        return x

    def pooled(self, hidden):
        """``tanh(pooler(hidden[:, 0]))``, RoBERTa's ``pooler_output``."""
        return ops.tanh(self.pooler(hidden[:, 0]))
