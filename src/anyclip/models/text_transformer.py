"""The native CLIP text transformer (OpenAI / OpenCLIP ``TextTransformer``).

Input: int token ids ``[batch, length]`` with ``length <= context_length``.
Output: pooled, projected features ``[batch, embed_dim]``.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from .config import TextConfig
from .layers import Transformer, child_seed, dense, layer_norm, lock_groups, normal_init

# open_clip key (relative to the text prefix: "" for CLIP, "text." for custom-text models)
# -> attribute path on this tower, transform. Rows whose attribute is None are skipped.
WEIGHT_TABLE = (
    ("token_embedding.weight", "token_embedding.embeddings", None),
    ("positional_embedding", "positional_embedding", None),
    ("cls_emb", "cls_emb", None),
    ("transformer.resblocks.{i}.", "transformer.resblocks.{i}.", "block"),
    ("ln_final.weight", "ln_final.gamma", None),
    ("ln_final.bias", "ln_final.beta", None),
    ("text_projection", "text_projection", None),
    ("text_projection.weight", "text_projection_dense.kernel", "linear"),
    ("text_projection.bias", "text_projection_dense.bias", None),
)


@keras.saving.register_keras_serializable(package="anyclip")
class TextTransformer(keras.layers.Layer):
    """Text tower: token + position embeddings, (causal) blocks, ``ln_final``, pooling, projection.

    Pooling follows ``pool_type``: ``argmax`` (the eot token has the largest id), ``eos`` (first
    ``eos_id``), ``first`` or ``last``. With a causal mask and argmax/eos/first pooling the result does
    not depend on tokens after the pooled position, so callers may pass ids cut after the last eot
    (see :func:`needed_length`).

    SigLIP options: ``norm_kwargs.eps`` sets every LayerNorm's epsilon, ``act_kwargs.approximate = "tanh"``
    the tanh GELU, ``proj_type = "none"`` drops the projection (pooled features are the embedding).

    ``embed_cls`` (CoCa): a learned ``cls_emb`` token is appended after the text with its own position;
    its output, after ``ln_final``, is the pooled feature, and the text positions (before ``ln_final``)
    are the tokens. Keys are masked as open_clip does it for CoCa checkpoints: key ``j > 0`` is hidden
    when token ``j - 1`` is ``pad_id`` (open_clip's legacy, shifted class-token mask).

    Example:
        >>> cfg = TextConfig(context_length=8, vocab_size=100, width=32, heads=2, layers=1)
        >>> tower = TextTransformer(cfg, embed_dim=8)
        >>> tower(keras.ops.ones((2, 8), dtype="int32")).shape
        (2, 8)
    """

    WEIGHT_TABLE = WEIGHT_TABLE  # how open_clip names this tower's weights (anyclip.weights.mapping)

    def __init__(self, config: TextConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.config = config if isinstance(config, TextConfig) else TextConfig(**config)
        self.embed_dim, self.quick_gelu = embed_dim, quick_gelu
        cfg, policy = self.config, self.dtype_policy
        self.token_embedding = keras.layers.Embedding(
            cfg.vocab_size, cfg.width, embeddings_initializer=normal_init(0.02, seed, "token_embedding"),
            name="token_embedding", dtype=policy)
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_width, quick_gelu,
                                       cfg.ls_init_value, child_seed(seed, "transformer"), cfg.norm_eps,
                                       cfg.gelu_tanh, name="transformer", dtype=policy)  # SigLIP(2): 1e-6, tanh
        self.ln_final = layer_norm("ln_final", policy, eps=cfg.norm_eps)
        self.cls_emb = None
        self.text_projection_dense = (dense(embed_dim, cfg.width ** -0.5, seed, "text_projection_dense", policy)
                                      if cfg.proj_bias and cfg.proj_type != "none" else None)
        self.text_projection = None

    def build(self, input_shape=None):
        cfg = self.config
        self.token_embedding.build((None, None))
        positions = cfg.context_length + int(cfg.embed_cls)
        self.positional_embedding = self.add_weight(
            name="positional_embedding", shape=(positions, cfg.width),
            initializer=normal_init(0.01, self.seed, "positional_embedding"))
        if cfg.embed_cls:
            self.cls_emb = self.add_weight(name="cls_emb", shape=(cfg.width,),
                                           initializer=normal_init(0.01, self.seed, "cls_emb"))
        self.transformer.build((None, positions, cfg.width))
        self.ln_final.build((None, cfg.width))
        if self.text_projection_dense is not None:
            self.text_projection_dense.build((None, cfg.width))
        elif cfg.proj_type != "none":
            self.text_projection = self.add_weight(
                name="text_projection", shape=(cfg.width, self.embed_dim),
                initializer=normal_init(cfg.width ** -0.5, self.seed, "text_projection"))
        self.built = True

    def pool_index(self, tokens):
        """Index of the pooled token per sequence, ``[batch]`` int32."""
        cfg = self.config
        if cfg.pool_type == "argmax":
            return ops.cast(ops.argmax(tokens, axis=-1), "int32")
        if cfg.pool_type == "eos":
            return ops.cast(ops.argmax(ops.cast(ops.equal(tokens, cfg.eos_id), "int32"), axis=-1), "int32")
        length = ops.shape(tokens)[1]
        return ops.zeros((ops.shape(tokens)[0],), "int32") + (0 if cfg.pool_type == "first" else length - 1)

    def _cls_mask(self, tokens, length: int):
        """CoCa's key mask ``[batch, 1, length, length]``: key 0 always, key j if token j-1 is not pad."""
        cfg = self.config
        valid = ops.not_equal(tokens[:, :length - 1], cfg.pad_id)
        valid = ops.concatenate([ops.ones_like(valid[:, :1]), valid], axis=1)[:, None, None, :]
        if not cfg.causal:
            return ops.broadcast_to(valid, (ops.shape(tokens)[0], 1, length, length))
        pos = ops.arange(length, dtype="int32")
        return ops.logical_and(valid, (pos[None, :] <= pos[:, None])[None, None])

    def forward_tokens(self, tokens, training: bool = False, with_cls: bool = True):
        """``(features [batch, embed_dim], tokens [batch, length, width])``: open_clip's ``output_tokens`` result.

        With ``embed_cls`` the tokens are the text positions before ``ln_final``; ``with_cls=False`` skips
        the class token (features are then ``None``), which leaves the tokens unchanged under the causal
        mask (CoCa's caption generation uses it).

        Example:
            >>> feats, tokens = model.text.forward_tokens(ids)  # doctest: +SKIP
        """
        cfg = self.config
        length = tokens.shape[1]
        if isinstance(length, int) and length > cfg.context_length:
            raise ValueError(f"text of {length} tokens is longer than context_length={cfg.context_length}")
        x = self.token_embedding(tokens)
        if cfg.embed_cls:
            if with_cls:
                cls = ops.broadcast_to(ops.cast(self.cls_emb, x.dtype), (ops.shape(x)[0], 1, cfg.width))
                x = ops.concatenate([x, cls], axis=1)
            n = x.shape[1]
            x = x + ops.cast(self.positional_embedding[:n], x.dtype)
            x = self.transformer(x, attn_mask=self._cls_mask(tokens, n))
            if not with_cls:
                return None, x
            return self.project(self.ln_final(x[:, -1])), x[:, :-1]
        x = x + ops.cast(self.positional_embedding[:length], x.dtype)
        x = self.ln_final(self.transformer(x, causal=cfg.causal))
        idx = self.pool_index(tokens)
        pooled = ops.take_along_axis(x, idx[:, None, None], axis=1)[:, 0]
        return self.project(pooled), x

    def project(self, pooled):
        """The text projection of pooled features."""
        if self.text_projection_dense is not None:
            return self.text_projection_dense(pooled)
        if self.text_projection is None:  # proj_type "none"
            return pooled
        return ops.matmul(pooled, ops.cast(self.text_projection, pooled.dtype))

    def call(self, tokens, training: bool = False):
        return self.forward_tokens(tokens, training=training)[0]

    def lock(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        """Freeze the tower except its last ``unlocked_layers`` layer groups (open_clip's ``lock_text_tower``).

        Groups, first to last: [token and position embeddings, cls_emb], each block but the last, [last block,
        ln_final], [text projection]. LayerNorms are frozen like every other weight
        (``freeze_layer_norm=False`` is refused, as in open_clip).

        Example:
            >>> model.text.lock(unlocked_layers=1)  # doctest: +SKIP
        """
        if not freeze_layer_norm:
            raise ValueError("freeze_layer_norm=False is not supported: LayerNorms are locked like other weights")
        blocks = self.transformer.resblocks
        projection = self.text_projection_dense.weights if self.text_projection_dense is not None else [
            v for v in [self.text_projection] if v is not None]
        embeddings = self.token_embedding.weights + [self.positional_embedding]
        embeddings += [self.cls_emb] if self.cls_emb is not None else []
        groups = [embeddings, *[b.weights for b in blocks[:-1]],
                  blocks[-1].weights + self.ln_final.weights, projection]
        lock_groups(self, groups, unlocked_layers, "text tower")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (see :class:`Transformer`)."""
        self.transformer.grad_checkpointing = bool(enable)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embed_dim)

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config),
                "embed_dim": self.embed_dim, "quick_gelu": self.quick_gelu, "seed": self.seed}


def needed_length(tokens: np.ndarray, config: TextConfig, multiple: int = 8) -> int:
    """How many leading positions of ``tokens`` decide the pooled output, rounded up to ``multiple``.

    Only a causal tower with argmax/eos/first pooling can be cut; otherwise the full length is returned.

    Example:
        >>> needed_length(np.array([[49406, 320, 49407, 0, 0, 0, 0, 0, 0, 0]]), TextConfig(), multiple=4)
        4
    """
    full = tokens.shape[1]
    if not config.causal or config.pool_type == "last" or config.embed_cls or full == 0:
        return full  # (the class token of embed_cls sits after the full text and attends to all of it)
    if config.pool_type == "first":
        last = 0
    elif config.pool_type == "argmax":
        last = int(np.argmax(tokens, axis=-1).max())
    else:
        last = int(np.argmax(tokens == config.eos_id, axis=-1).max())
    need = -(-(last + 1) // multiple) * multiple
    return min(full, need)
