"""timm's ViT block (``timm.models.vision_transformer.Block``) and its weight names.

:class:`TimmBlock` is open_clip's pre-norm residual block under timm's names (``norm1``, ``attn.qkv``,
``mlp.fc1``...) with timm's options (qkv bias or none, layer scale, an additive attention bias, stochastic depth,
GeGLU MLP); :data:`TIMM_VIT_BLOCK_TABLE` maps its keys.
"""

from __future__ import annotations

import keras
from keras import ops

from ...layers.attention import attention
from ...layers.dense import LINEAR_TABLE, dense
from ...layers.drop import drop_path
from ...layers.init import child_seed, seed_generator
from ...layers.mlp import MLP, GeGluMlp
from ...layers.norm import LAYER_NORM_TABLE, TIMM_LN_EPS, layer_norm
from ...layers.transformer import LayerScale

# timm key (relative to ``blocks.{i}.``) -> attribute path on a TimmBlock, transform; absent layers are skipped.
TIMM_VIT_BLOCK_TABLE = (
    ("norm1.", "norm1", LAYER_NORM_TABLE),
    ("attn.qkv.", "qkv", LINEAR_TABLE),
    ("attn.proj.", "proj", LINEAR_TABLE),
    ("ls1.gamma", "ls1.gamma", None),
    ("norm2.", "norm2", LAYER_NORM_TABLE),
    ("mlp.fc1.", "mlp.c_fc", LINEAR_TABLE),
    ("mlp.fc2.", "mlp.c_proj", LINEAR_TABLE),
    ("mlp.norm.", "mlp.norm", LAYER_NORM_TABLE),  # GeGLU MLP (ViTamin)
    ("mlp.w0.", "mlp.w0", LINEAR_TABLE),
    ("mlp.w1.", "mlp.w1", LINEAR_TABLE),
    ("mlp.w2.", "mlp.w2", LINEAR_TABLE),
    ("ls2.gamma", "ls2.gamma", None),
)


@keras.saving.register_keras_serializable(package="anyclip")
class TimmBlock(keras.layers.Layer):
    """timm's ViT ``Block``: ``x + ls1(attn(norm1(x)))`` then ``x + ls2(mlp(norm2(x)))``, each branch dropped per
    sample with probability ``drop_path`` in training (stochastic depth, survivors scaled by ``1 / keep``).

    ``qkv_bias=False``: the fused ``qkv`` projection has no bias; ``ls_init``: layer-scale gains (None: none);
    ``call(x, bias=...)`` adds a ``[1, heads, tokens, tokens]`` bias to the attention logits (relpos ViT);
    ``geglu``: the MLP is :class:`GeGluMlp` (ViTamin).

    Example:
        >>> TimmBlock(64, heads=4, mlp_width=128, qkv_bias=False, ls_init=1e-6)(keras.ops.zeros((2, 5, 64))).shape
        (2, 5, 64)
    """

    def __init__(self, width: int, heads: int, mlp_width: int, qkv_bias: bool = True, ls_init: float | None = None,
                 norm_eps: float = TIMM_LN_EPS, gelu_tanh: bool = False, drop_path: float = 0.0,
                 seed: int | None = 0, geglu: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.width, self.heads, self.mlp_width, self.qkv_bias, self.geglu = width, heads, mlp_width, qkv_bias, geglu
        self.ls_init, self.norm_eps, self.gelu_tanh, self.drop_path, self.seed = (ls_init, norm_eps, gelu_tanh,
                                                                                  drop_path, seed)
        policy, std = self.dtype_policy, width ** -0.5
        self.norm1 = layer_norm("norm1", policy, eps=norm_eps)
        self.qkv = dense(3 * width, std, seed, "qkv", policy, bias=qkv_bias)
        self.proj = dense(width, std, seed, "proj", policy)
        self.norm2 = layer_norm("norm2", policy, eps=norm_eps)
        if geglu:
            self.mlp = GeGluMlp(width, mlp_width, seed=child_seed(seed, "mlp"), name="mlp", dtype=policy)
        else:
            self.mlp = MLP(width, mlp_width, seed=child_seed(seed, "mlp"), gelu_tanh=gelu_tanh, name="mlp",
                           dtype=policy)
        self.ls1 = self.ls2 = None
        if ls_init is not None:
            self.ls1 = LayerScale(width, ls_init, name="ls1", dtype=policy)
            self.ls2 = LayerScale(width, ls_init, name="ls2", dtype=policy)
        self.seed_generator = seed_generator(seed) if drop_path > 0 else None

    def build(self, input_shape):
        shape = (None, None, self.width)
        for layer in (self.norm1, self.qkv, self.norm2, self.mlp, self.ls1, self.ls2):
            if layer is not None:
                layer.build(shape)
        self.proj.build(shape)
        self.built = True

    def attention(self, x, bias=None):
        """Multi-head self-attention (fused ``qkv``, then ``proj``), with an optional additive logit bias."""
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (batch, length, 3, self.heads, self.width // self.heads))
        out = attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], bias=bias)
        return self.proj(ops.reshape(out, (batch, length, self.width)))

    def _branch(self, h, scale, training):
        h = scale(h) if scale is not None else h
        return drop_path(h, self.drop_path if training else 0.0, self.seed_generator)

    def call(self, x, bias=None, training: bool = False):
        x = x + self._branch(self.attention(self.norm1(x), bias), self.ls1, training)
        return x + self._branch(self.mlp(self.norm2(x)), self.ls2, training)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads, "mlp_width": self.mlp_width,
                "qkv_bias": self.qkv_bias, "ls_init": self.ls_init, "norm_eps": self.norm_eps,
                "gelu_tanh": self.gelu_tanh, "drop_path": self.drop_path, "seed": self.seed, "geglu": self.geglu}
