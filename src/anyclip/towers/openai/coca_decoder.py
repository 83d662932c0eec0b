"""CoCa's caption decoder (open_clip ``MultimodalTransformer``).

Each layer is a causal self-attention block over the text tokens followed by a cross-attention block over
the image tokens; then ``ln_final`` and a projection to vocabulary logits. No positional embedding: the
text tower's tokens already carry positions.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from ...layers.attention import CrossAttention
from ...layers.backend import linear
from ...layers.init import child_seed, normal_init
from ...layers.mlp import MLP
from ...layers.norm import LAYER_NORM_TABLE, layer_norm
from ...layers.transformer import BLOCK_TABLE, LayerScale, Transformer, call_layer
from ..config import _pos_int, _require


@dataclasses.dataclass(frozen=True)
class MultimodalConfig:
    """The CoCa text decoder (open_clip ``MultimodalCfg``): causal self-attention blocks interleaved with
    cross-attention blocks over the image tokens, then ``ln_final`` and a projection to the vocabulary.

    As in open_clip, the decoder's MLP is always 4x wide and its output size is ``text_cfg.vocab_size``;
    ``mlp_ratio``, ``dim_head``, ``n_queries``, ``attn_pooler_heads`` and ``vocab_size`` are accepted for
    the schema but not used.

    Example:
        >>> MultimodalConfig(width=512, heads=8, layers=12, context_length=76).head_dim
        64
    """

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4
    ls_init_value: float | None = None
    dim_head: int = 64
    n_queries: int = 256
    attn_pooler_heads: int = 8

    def __post_init__(self):
        w = "multimodal_cfg"
        for name in ("context_length", "vocab_size", "width", "heads", "layers", "dim_head", "n_queries",
                     "attn_pooler_heads"):
            _pos_int(getattr(self, name), f"{w}.{name}")
        _require(self.width % self.heads == 0, f"{w}.heads",
                 f"width {self.width} is not divisible by heads {self.heads}")
        _require(self.ls_init_value is None or isinstance(self.ls_init_value, (int, float)),
                 f"{w}.ls_init_value", f"must be a number or null, got {self.ls_init_value!r}")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def mlp_width(self) -> int:
        return 4 * self.width  # open_clip's decoder ignores mlp_ratio


# One cross-attention block (relative to ``text_decoder.cross_attn.{i}.``): a standard block plus ``ln_1_kv``.
CROSS_BLOCK_TABLE = (*BLOCK_TABLE[:2], ("ln_1_kv.weight", "ln_1_kv.gamma", None),
                     ("ln_1_kv.bias", "ln_1_kv.beta", None), *BLOCK_TABLE[2:])

# open_clip key (relative to ``text_decoder.``) -> attribute path, transform (see anyclip.weights.mapping).
WEIGHT_TABLE = (
    ("resblocks.{i}.", "transformer.resblocks", BLOCK_TABLE),
    ("cross_attn.{i}.", "cross_attn", CROSS_BLOCK_TABLE),
    ("ln_final.", "ln_final", LAYER_NORM_TABLE),
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
        return linear(x, ops.cast(self.text_projection, x.dtype))

    def call(self, text_embs, image_embs):
        return self.project(self.hidden(text_embs, self.context_kv(image_embs)))

    def compute_output_shape(self, text_shape, image_shape=None):
        return tuple(text_shape[:-1]) + (self.vocab_size,)

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config), "vocab_size": self.vocab_size,
                "quick_gelu": self.quick_gelu, "seed": self.seed}


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


