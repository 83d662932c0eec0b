"""The native CLIP text transformer (OpenAI / OpenCLIP ``TextTransformer``).

Input: int token ids ``[batch, length]`` with ``length <= context_length``.
Output: pooled, projected features ``[batch, embed_dim]``.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from ...layers.dense import LINEAR_TABLE, dense
from ...layers.init import child_seed, normal_init
from ...layers.norm import LAYER_NORM_TABLE, layer_norm
from ...layers.transformer import BLOCK_TABLE, Transformer
from ..base import Tower, lock_groups, round_up_length
from ..config import _pos_int, _require


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Native text transformer tower (open_clip ``CLIPTextCfg`` fields)."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    ls_init_value: float | None = None
    pad_id: int = 0
    eos_id: int = 2
    no_causal_mask: bool = False
    pool_type: str = "argmax"
    proj_bias: bool = False
    proj_type: str = "linear"  # "none": no text projection (the pooled features are the embedding)
    norm_kwargs: dict | None = None  # LayerNorm options: {"eps": 1e-6} (SigLIP)
    act_kwargs: dict | None = None  # GELU options: {"approximate": "tanh"} (SigLIP2)
    hf_tokenizer_name: str | None = None
    tokenizer_kwargs: dict | None = None
    embed_cls: bool = False  # CoCa: a learned token appended after the text, pooled (pool_type is then unused)
    output_tokens: bool = False  # kept for open_clip's schema; CoCa reads tokens through ``forward_tokens``

    def __post_init__(self):
        w = "text_cfg"
        for name in ("context_length", "vocab_size", "width", "heads", "layers"):
            _pos_int(getattr(self, name), f"{w}.{name}")
        for name in ("embed_cls", "output_tokens"):
            _require(isinstance(getattr(self, name), bool), f"{w}.{name}",
                     f"must be true/false, got {getattr(self, name)!r}")
        _require(self.width % self.heads == 0, f"{w}.heads",
                 f"width {self.width} is not divisible by heads {self.heads}")
        _require(isinstance(self.mlp_ratio, (int, float)) and self.mlp_ratio > 0, f"{w}.mlp_ratio",
                 f"must be positive, got {self.mlp_ratio!r}")
        _require(self.pool_type in ("argmax", "eos", "first", "last"), f"{w}.pool_type",
                 f"must be one of argmax/eos/first/last, got {self.pool_type!r}")
        _require(self.tokenizer_kwargs is None or isinstance(self.tokenizer_kwargs, dict),
                 f"{w}.tokenizer_kwargs", "must be an object")
        _require(self.proj_type in ("linear", "none"), f"{w}.proj_type",
                 f"must be 'linear' or 'none', got {self.proj_type!r}")
        norm = self.norm_kwargs or {}
        _require(isinstance(norm, dict) and set(norm) <= {"eps"}, f"{w}.norm_kwargs",
                 f"only {{'eps': ...}} is supported, got {self.norm_kwargs!r}")
        _require(isinstance(norm.get("eps", 1.0), (int, float)) and norm.get("eps", 1.0) > 0,
                 f"{w}.norm_kwargs.eps", f"must be a positive number, got {norm.get('eps')!r}")
        act = self.act_kwargs or {}
        _require(isinstance(act, dict) and set(act) <= {"approximate"}, f"{w}.act_kwargs",
                 f"only {{'approximate': 'none' | 'tanh'}} is supported, got {self.act_kwargs!r}")
        _require(act.get("approximate", "none") in ("none", "tanh"), f"{w}.act_kwargs.approximate",
                 f"must be 'none' or 'tanh', got {act.get('approximate')!r}")

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def causal(self) -> bool:
        return not self.no_causal_mask

    @property
    def norm_eps(self) -> float:
        """LayerNorm epsilon: ``norm_kwargs.eps``, else torch's 1e-5."""
        return float((self.norm_kwargs or {}).get("eps", 1e-5))

    @property
    def gelu_tanh(self) -> bool:
        """Whether the MLPs use tanh-approximated GELU (``act_kwargs.approximate == "tanh"``)."""
        return (self.act_kwargs or {}).get("approximate") == "tanh"


# open_clip key (relative to the text prefix: "" for CLIP, "text." for custom-text models)
# -> attribute path on this tower, transform. Rows whose attribute is None are skipped.
WEIGHT_TABLE = (
    ("token_embedding.weight", "token_embedding.embeddings", None),
    ("positional_embedding", "positional_embedding", None),
    ("cls_emb", "cls_emb", None),
    ("transformer.resblocks.{i}.", "transformer.resblocks", BLOCK_TABLE),
    ("ln_final.", "ln_final", LAYER_NORM_TABLE),
    ("text_projection", "text_projection", None),
    ("text_projection.", "text_projection_dense", LINEAR_TABLE),
)


@keras.saving.register_keras_serializable(package="anyclip")
class TextTransformer(Tower):
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

    CONFIG = TextConfig
    MODALITY = 'text'
    WEIGHT_TABLE = WEIGHT_TABLE  # how open_clip names this tower's weights (anyclip.weights.mapping)

    def __init__(self, config: TextConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(config, embed_dim, quick_gelu, seed, **kwargs)
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

    def needed_length(self, tokens: np.ndarray) -> int:
        """Positions of ``tokens`` up to the last pooled one, in steps of 8 (see the module's :func:`needed_length`)."""
        return needed_length(np.asarray(tokens), self.config)

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
    return round_up_length(last, full, multiple)


