"""CoCa's caption decoder (open_clip ``MultimodalTransformer``).

Each layer is a causal self-attention block over the text tokens followed by a cross-attention block over
the image tokens; then ``ln_final`` and a projection to vocabulary logits. No positional embedding: the
text tower's tokens already carry positions.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from .coca_config import MultimodalConfig
from .cross_attention import CrossAttentionBlock
from .layers import BLOCK_TABLE, Transformer, call_layer, child_seed, layer_norm, normal_init

# One cross-attention block (relative to ``text_decoder.cross_attn.{i}.``): a standard block plus ``ln_1_kv``.
CROSS_BLOCK_TABLE = (*BLOCK_TABLE[:2], ("ln_1_kv.weight", "ln_1_kv.gamma", None),
                     ("ln_1_kv.bias", "ln_1_kv.beta", None), *BLOCK_TABLE[2:])

# open_clip key (relative to ``text_decoder.``) -> attribute path, transform (see anyclip.weights.mapping).
WEIGHT_TABLE = (
    ("resblocks.{i}.", "transformer.resblocks.{i}.", "block"),
    ("cross_attn.{i}.", "cross_attn", CROSS_BLOCK_TABLE),
    ("ln_final.weight", "ln_final.gamma", None),
    ("ln_final.bias", "ln_final.beta", None),
    ("text_projection", "text_projection", None),
)


@keras.saving.register_keras_serializable(package="anyclip")
class MultimodalTransformer(keras.layers.Layer):
    """Text tokens ``[B, L, width]`` + image tokens ``[B, S, width]`` -> logits ``[B, L, vocab_size]``.

    For repeated calls on the same images (caption generation), project the image tokens once with
    :meth:`context_kv` and pass the result as ``context``.

    Example:
        >>> cfg = MultimodalConfig(width=32, heads=2, layers=1, context_length=8)
        >>> dec = MultimodalTransformer(cfg, vocab_size=100)
        >>> dec(keras.ops.zeros((2, 5, 32)), keras.ops.zeros((2, 7, 32))).shape
        (2, 5, 100)
    """

    WEIGHT_TABLE = WEIGHT_TABLE

    def __init__(self, config: MultimodalConfig | dict, vocab_size: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, MultimodalConfig) else MultimodalConfig(**config)
        self.vocab_size, self.quick_gelu, self.seed = vocab_size, quick_gelu, seed
        cfg, policy = self.config, self.dtype_policy
        # The self-attention blocks live in a Transformer container (open_clip keys ``resblocks.{i}``);
        # they are called one at a time, interleaved with the cross-attention blocks.
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_width, quick_gelu,
                                       cfg.ls_init_value, child_seed(seed, "resblocks"), name="transformer",
                                       dtype=policy)
        self.cross_attn = [
            CrossAttentionBlock(cfg.width, cfg.heads, cfg.mlp_width, quick_gelu, cfg.ls_init_value,
                                child_seed(seed, f"cross_attn/{i}"), name=f"cross_attn_{i}", dtype=policy)
            for i in range(cfg.layers)
        ]
        self.ln_final = layer_norm("ln_final", policy)
        self.grad_checkpointing = False

    def build(self, input_shape=None):
        cfg = self.config
        self.transformer.build((None, None, cfg.width))
        for block in self.cross_attn:
            block.build()
        self.ln_final.build((None, cfg.width))
        self.text_projection = self.add_weight(
            name="text_projection", shape=(cfg.width, self.vocab_size),
            initializer=normal_init(cfg.width ** -0.5, self.seed, "text_projection"))
        self.built = True

    def context_kv(self, image_embs):
        """Per-layer projected keys and values of the image tokens (reusable across calls)."""
        return [block.context_kv(image_embs) for block in self.cross_attn]

    def hidden(self, text_embs, context):
        """The blocks' output ``[B, L, width]`` (before ``ln_final``) for ``context`` from :meth:`context_kv`."""
        length = text_embs.shape[1]
        if isinstance(length, int) and length > self.config.context_length:
            raise ValueError(f"the text decoder got {length} tokens, more than its context_length "
                             f"{self.config.context_length}")
        x = text_embs
        remat = self.grad_checkpointing
        for block, cross, kv in zip(self.transformer.resblocks, self.cross_attn, context):
            x = call_layer(block, x, causal=True, remat=remat)
            x = call_layer(cross, x, kv=kv, remat=remat)
        return x

    def project(self, hidden):
        """``ln_final`` then the projection to vocabulary logits (any leading shape)."""
        x = self.ln_final(hidden)
        return ops.matmul(x, ops.cast(self.text_projection, x.dtype))

    def call(self, text_embs, image_embs):
        return self.project(self.hidden(text_embs, self.context_kv(image_embs)))

    def compute_output_shape(self, text_shape, image_shape=None):
        return tuple(text_shape[:-1]) + (self.vocab_size,)

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config), "vocab_size": self.vocab_size,
                "quick_gelu": self.quick_gelu, "seed": self.seed}
