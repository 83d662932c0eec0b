"""The native CLIP vision transformer (OpenAI / OpenCLIP ``VisionTransformer``).

Input: float images ``[batch, height, width, 3]`` (channels last), already normalised.
Output: pooled, projected features ``[batch, embed_dim]``.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from ...layers.attention import CROSS_ATTENTION_TABLE
from ...layers.conv import patch_conv
from ...layers.init import child_seed, normal_init
from ...layers.norm import LAYER_NORM_TABLE, layer_norm
from ...layers.pooling import AttentionalPooler
from ...layers.transformer import BLOCK_TABLE, Transformer
from ..base import Tower, lock_groups
from ..config import _pair, _pos_int, _require


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """Native vision transformer tower (open_clip ``CLIPVisionCfg`` fields)."""

    layers: int = 12
    width: int = 768
    head_width: int = 64
    mlp_ratio: float = 4.0
    patch_size: int | tuple[int, int] = 16
    image_size: int | tuple[int, int] = 224
    ls_init_value: float | None = None
    patch_dropout: float = 0.0
    no_ln_pre: bool = False
    final_ln_after_pool: bool = False
    pool_type: str = "tok"
    attentional_pool: bool = False  # CoCa: queries attend to the tokens; pool_type then picks among the queries
    attn_pooler_queries: int = 256
    attn_pooler_heads: int = 8
    output_tokens: bool = False  # kept for open_clip's schema; CoCa reads tokens through ``forward_tokens``

    def __post_init__(self):
        w = "vision_cfg"
        _require(isinstance(self.attentional_pool, bool), f"{w}.attentional_pool",
                 f"must be true/false (open_clip's experimental 'parallel'/'cascade' pools are not supported), "
                 f"got {self.attentional_pool!r}")
        _require(isinstance(self.output_tokens, bool), f"{w}.output_tokens",
                 f"must be true/false, got {self.output_tokens!r}")
        _pos_int(self.attn_pooler_heads, f"{w}.attn_pooler_heads")
        _pos_int(self.attn_pooler_queries, f"{w}.attn_pooler_queries")
        _require(not self.attentional_pool or self.pool_type == "avg" or self.attn_pooler_queries >= 2,
                 f"{w}.attn_pooler_queries", "token pooling over the attentional pool needs >= 2 queries "
                 "(the first is pooled, the others are the tokens)")
        _require(isinstance(self.layers, int) and self.layers > 0, f"{w}.layers",
                 f"must be a positive integer (a list of 4 selects ModifiedResNetConfig), got {self.layers!r}")
        _pos_int(self.width, f"{w}.width")
        _pos_int(self.head_width, f"{w}.head_width")
        _require(self.width % self.head_width == 0, f"{w}.head_width",
                 f"width {self.width} is not divisible by head_width {self.head_width}")
        _require(isinstance(self.mlp_ratio, (int, float)) and self.mlp_ratio > 0, f"{w}.mlp_ratio",
                 f"must be positive, got {self.mlp_ratio!r}")
        ps, ims = _pair(self.patch_size, f"{w}.patch_size"), _pair(self.image_size, f"{w}.image_size")
        _require(ims[0] >= ps[0] and ims[1] >= ps[1], f"{w}.image_size",
                 f"{self.image_size!r} is smaller than patch_size {self.patch_size!r}")
        _require(self.ls_init_value is None or isinstance(self.ls_init_value, (int, float)),
                 f"{w}.ls_init_value", f"must be a number or null, got {self.ls_init_value!r}")
        _require(isinstance(self.patch_dropout, (int, float)) and 0 <= self.patch_dropout < 1,
                 f"{w}.patch_dropout", f"must be in [0, 1), got {self.patch_dropout!r}")
        _require(self.pool_type in ("tok", "avg"), f"{w}.pool_type",
                 f"must be 'tok' or 'avg', got {self.pool_type!r}")

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid_size(self) -> tuple[int, int]:
        (ih, iw), (ph, pw) = _pair(self.image_size, ""), _pair(self.patch_size, "")
        return ih // ph, iw // pw

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)


# The attentional pooler (CoCa), relative to ``visual.attn_pool.``; its attention is torch's MultiheadAttention.
ATTN_POOL_TABLE = (
    ("query", "query", None),
    ("attn.", "attn", CROSS_ATTENTION_TABLE),
    ("ln_q.", "ln_q", LAYER_NORM_TABLE),
    ("ln_k.", "ln_k", LAYER_NORM_TABLE),
)

# open_clip key (relative to ``visual.``) -> attribute path on this tower, transform.
# Rows whose attribute is None on a given config (ln_pre for CLIPA, layer scale, attn_pool) are skipped.
WEIGHT_TABLE = (
    ("conv1.weight", "conv1.kernel", "conv"),
    ("class_embedding", "class_embedding", None),
    ("positional_embedding", "positional_embedding", None),
    ("ln_pre.", "ln_pre", LAYER_NORM_TABLE),
    ("transformer.resblocks.{i}.", "transformer.resblocks", BLOCK_TABLE),
    ("attn_pool.", "attn_pool", ATTN_POOL_TABLE),
    ("ln_post.", "ln_post", LAYER_NORM_TABLE),
    ("proj", "proj", None),
)


@keras.saving.register_keras_serializable(package="anyclip")
class VisionTransformer(Tower):
    """ViT image tower: patchify, class token, learned positions, pre-norm blocks, pool, project.

    Example:
        >>> cfg = VisionConfig(layers=1, width=64, head_width=32, patch_size=16, image_size=32)
        >>> tower = VisionTransformer(cfg, embed_dim=8)
        >>> tower(keras.ops.zeros((2, 32, 32, 3))).shape
        (2, 8)
    """

    CONFIG = VisionConfig
    WEIGHT_TABLE = WEIGHT_TABLE  # how open_clip names this tower's weights (anyclip.weights.mapping)

    def __init__(self, config: VisionConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(config, embed_dim, quick_gelu, seed, **kwargs)
        cfg, policy = self.config, self.dtype_policy
        patch = cfg.patch_size if isinstance(cfg.patch_size, (tuple, list)) else (cfg.patch_size,) * 2
        self.conv1 = keras.layers.Conv2D(cfg.width, tuple(patch), strides=tuple(patch), use_bias=False,
                                         padding="valid", data_format="channels_last", name="conv1",
                                         kernel_initializer=normal_init((3 * patch[0] * patch[1]) ** -0.5, seed, "conv1"),
                                         dtype=policy)
        self.ln_pre = None if cfg.no_ln_pre else layer_norm("ln_pre", policy)
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_width, quick_gelu,
                                       cfg.ls_init_value, child_seed(seed, "transformer"), name="transformer",
                                       dtype=policy)
        # CoCa's attentional pool: queries of width embed_dim, then ln_post/proj act on that width.
        self.attn_pool = AttentionalPooler(embed_dim, cfg.width, cfg.attn_pooler_heads, cfg.attn_pooler_queries,
                                           child_seed(seed, "attn_pool"), name="attn_pool",
                                           dtype=policy) if cfg.attentional_pool else None
        self.pool_width = embed_dim if cfg.attentional_pool else cfg.width
        self.ln_post = layer_norm("ln_post", policy)
        self.num_tokens = cfg.grid_size[0] * cfg.grid_size[1] + 1
        self.seed_generator = keras.random.SeedGenerator(0) if cfg.patch_dropout > 0 else None

    def build(self, input_shape=None):
        cfg = self.config
        scale = cfg.width ** -0.5
        self.conv1.build((None, None, None, 3))
        self.class_embedding = self.add_weight(name="class_embedding", shape=(cfg.width,),
                                               initializer=normal_init(scale, self.seed, "class_embedding"))
        self.positional_embedding = self.add_weight(
            name="positional_embedding", shape=(self.num_tokens, cfg.width),
            initializer=normal_init(scale, self.seed, "positional_embedding"))
        token_shape = (None, self.num_tokens, cfg.width)
        if self.ln_pre is not None:
            self.ln_pre.build(token_shape)
        self.transformer.build(token_shape)
        if self.attn_pool is not None:
            self.attn_pool.build()
        self.ln_post.build((None, self.pool_width))
        self.proj = self.add_weight(name="proj", shape=(self.pool_width, self.embed_dim),
                                    initializer=normal_init(scale, self.seed, "proj"))
        self.built = True

    def embed(self, images, training: bool = False):
        """Patch + class-token + position embeddings (with patch dropout when training)."""
        x = self.patchify(images)
        batch = ops.shape(x)[0]
        patches = ops.shape(x)[1]
        if isinstance(patches, int) and patches != self.num_tokens - 1:
            raise ValueError(
                f"image of {tuple(ops.shape(images)[1:3])} gives {ops.shape(x)[1]} patches, but this model "
                f"expects {self.config.image_size} images ({self.num_tokens - 1} patches)")
        cls = ops.broadcast_to(ops.cast(self.class_embedding, x.dtype), (batch, 1, self.config.width))
        x = ops.concatenate([cls, x], axis=1) + ops.cast(self.positional_embedding, x.dtype)
        if training and self.config.patch_dropout > 0:
            x = self._patch_dropout(x)
        if self.ln_pre is not None:
            x = self.ln_pre(x)
        return x

    def patchify(self, images):
        """``conv1`` as one matmul over non-overlapping patches -> ``[batch, patches, width]``.

        A stride-equals-kernel convolution is a reshape plus a matmul; this form is faster than a
        convolution on CPU and gives the same sums. Pixels that do not fill a whole patch are dropped,
        as the convolution drops them.
        """
        x = patch_conv(images, self.conv1.kernel, None, self.conv1.kernel_size)
        return ops.reshape(x, (ops.shape(x)[0], -1, self.config.width))

    def _patch_dropout(self, x):
        # Keep a random subset of patch tokens per sample (the class token is always kept).
        cls, patches = x[:, :1], x[:, 1:]
        n = patches.shape[1]
        keep = max(1, int(n * (1.0 - self.config.patch_dropout)))
        noise = keras.random.normal((ops.shape(x)[0], n), seed=self.seed_generator)
        _, idx = ops.top_k(noise, keep)
        patches = ops.take_along_axis(patches, idx[:, :, None], axis=1)
        return ops.concatenate([cls, patches], axis=1)

    def pool_tokens(self, x):
        """``(pooled, tokens)`` before projection, as open_clip's ``_pool``.

        Token or average pooling with ``ln_post`` before or after it; with an attentional pool the
        queries' outputs go through ``ln_post`` and are then pooled the same way (first query, or the
        mean of the others), the other queries being the tokens.
        """
        cfg = self.config
        if self.attn_pool is not None:
            x = self.ln_post(self.attn_pool(x))
        elif not cfg.final_ln_after_pool:
            x = self.ln_post(x)
        pooled = ops.mean(x[:, 1:], axis=1) if cfg.pool_type == "avg" else x[:, 0]
        if self.attn_pool is None and cfg.final_ln_after_pool:
            pooled = self.ln_post(pooled)
        return pooled, x[:, 1:]

    def pool(self, x):
        """Pooled and projected features ``[batch, embed_dim]`` from the transformer's output."""
        pooled, _ = self.pool_tokens(x)
        return ops.matmul(pooled, ops.cast(self.proj, pooled.dtype))

    def forward_tokens(self, images, training: bool = False):
        """``(features [batch, embed_dim], tokens [batch, n, width])``: open_clip's ``output_tokens`` result.

        Example:
            >>> feats, tokens = model.visual.forward_tokens(images)  # doctest: +SKIP
        """
        pooled, tokens = self.pool_tokens(self.transformer(self.embed(images, training=training)))
        return ops.matmul(pooled, ops.cast(self.proj, pooled.dtype)), tokens

    def call(self, images, training: bool = False):
        return self.pool(self.transformer(self.embed(images, training=training)))

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the tower except its last ``unlocked_groups`` layer groups (open_clip's ``lock``, LiT).

        Groups, first to last: [conv1, class and position embeddings, ln_pre], each block but the last,
        [last block, ln_post], [proj]. ``freeze_bn_stats`` is accepted for open_clip's signature; a ViT
        has no batch norm, so it changes nothing.

        Example:
            >>> model.visual.lock(unlocked_groups=2)  # doctest: +SKIP
        """
        blocks = self.transformer.resblocks
        first = self.conv1.weights + [self.class_embedding, self.positional_embedding]
        first += self.ln_pre.weights if self.ln_pre is not None else []
        groups = [first, *[b.weights for b in blocks[:-1]], blocks[-1].weights + self.ln_post.weights, [self.proj]]
        lock_groups(self, groups, unlocked_groups, "image tower")

