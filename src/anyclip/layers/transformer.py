"""Transformer blocks shared by every tower: fused-qkv attention, MLP, layer scale, residual block.

Layer and weight attribute names follow open_clip's module names (``ln_1``, ``attn.in_proj``,
``mlp.c_fc``...) so that the weight-name tables in the tower modules stay short and obvious.
Tensors are batch-first ``[batch, tokens, width]``.
"""

from __future__ import annotations

import functools

import keras
from keras import ops

from .attention import Attention
from .backend import store_gradient
from .dense import LINEAR_TABLE
from .init import child_seed, constant_init
from .mlp import MLP
from .norm import LAYER_NORM_TABLE, LN_EPS, layer_norm

# open_clip key (relative to a residual block, ``…resblocks.{i}.``) -> attribute path, transform; see
# anyclip.weights.mapping. Rows whose attribute a block lacks (layer scale) are skipped.
BLOCK_TABLE = (
    ("ln_1.", "ln_1", LAYER_NORM_TABLE),
    ("attn.in_proj_weight", "attn.in_proj.kernel", "linear"),
    ("attn.in_proj_bias", "attn.in_proj.bias", None),
    ("attn.out_proj.", "attn.out_proj", LINEAR_TABLE),
    ("ls_1.gamma", "ls_1.gamma", None),
    ("ln_2.", "ln_2", LAYER_NORM_TABLE),
    ("mlp.c_fc.", "mlp.c_fc", LINEAR_TABLE),
    ("mlp.c_proj.", "mlp.c_proj", LINEAR_TABLE),
    ("ls_2.gamma", "ls_2.gamma", None),
)


def call_layer(layer, *args, remat: bool = False, **kwargs):
    """``layer(*args, **kwargs)``, rematerialised in the backward pass when ``remat`` (``keras.remat``:
    ``jax.checkpoint``, ``torch.utils.checkpoint``, ``tf.recompute_grad``; same values and gradients). Its
    gradient is stored between blocks (:func:`~anyclip.layers.backend.store_gradient`).

    ``args`` are what is rematerialised (tensors); ``kwargs`` are closed over. A fresh wrapper per call: JAX
    caches checkpointed traces per function object, and a cached trace of the same layer object would carry
    the previous trace's weights (a leaked tracer).

    Example:
        >>> call_layer(keras.layers.Identity(), keras.ops.ones((2,)), remat=True).shape
        (2,)
    """
    if not remat:
        return store_gradient(layer(*args, **kwargs))
    return store_gradient(keras.remat(functools.partial(layer, **kwargs))(*args))


@keras.saving.register_keras_serializable(package="anyclip")
class LayerScale(keras.layers.Layer):
    """Per-channel learned scale ``x * gamma`` (open_clip ``ls_1``/``ls_2``)."""

    def __init__(self, width: int, init_value: float, **kwargs):
        super().__init__(**kwargs)
        self.width, self.init_value = width, init_value

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(self.width,), initializer=constant_init(self.init_value))
        self.built = True

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "init_value": self.init_value}


@keras.saving.register_keras_serializable(package="anyclip")
class ResidualBlock(keras.layers.Layer):
    """Pre-norm transformer block: ``x + ls_1(attn(ln_1(x)))`` then ``x + ls_2(mlp(ln_2(x)))``.

    ``norm_eps`` and ``gelu_tanh`` default to torch's LayerNorm and GELU; timm and SigLIP towers set them.
    """

    def __init__(self, width: int, heads: int, mlp_width: int, quick_gelu: bool = False,
                 ls_init_value: float | None = None, proj_std: float | None = None, seed: int | None = 0,
                 norm_eps: float = LN_EPS, gelu_tanh: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.width, self.heads, self.mlp_width = width, heads, mlp_width
        self.quick_gelu, self.ls_init_value = quick_gelu, ls_init_value
        self.norm_eps, self.gelu_tanh = norm_eps, gelu_tanh
        policy = self.dtype_policy
        self.ln_1 = layer_norm("ln_1", policy, eps=norm_eps)
        self.attn = Attention(width, heads, proj_std, child_seed(seed, "attn"), name="attn", dtype=policy)
        self.ln_2 = layer_norm("ln_2", policy, eps=norm_eps)
        self.mlp = MLP(width, mlp_width, quick_gelu, proj_std, child_seed(seed, "mlp"), gelu_tanh=gelu_tanh,
                       name="mlp", dtype=policy)
        if ls_init_value is not None:
            self.ls_1 = LayerScale(width, ls_init_value, name="ls_1", dtype=policy)
            self.ls_2 = LayerScale(width, ls_init_value, name="ls_2", dtype=policy)
        else:
            self.ls_1 = self.ls_2 = None

    def build(self, input_shape):
        for layer in (self.ln_1, self.attn, self.ln_2, self.mlp, self.ls_1, self.ls_2):
            if layer is not None:
                layer.build(input_shape)
        self.built = True

    def call(self, x, causal: bool = False, attn_mask=None):
        h = self.attn(self.ln_1(x), causal=causal, attn_mask=attn_mask)
        x = x + (self.ls_1(h) if self.ls_1 is not None else h)
        h = self.mlp(self.ln_2(x))
        return x + (self.ls_2(h) if self.ls_2 is not None else h)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads,
                "mlp_width": self.mlp_width, "quick_gelu": self.quick_gelu,
                "ls_init_value": self.ls_init_value, "norm_eps": self.norm_eps, "gelu_tanh": self.gelu_tanh}


@keras.saving.register_keras_serializable(package="anyclip")
class Transformer(keras.layers.Layer):
    """A stack of :class:`ResidualBlock` (open_clip ``transformer.resblocks``).

    ``grad_checkpointing = True`` recomputes each block's activations in the backward pass instead of
    keeping them (``keras.remat``: ``jax.checkpoint``, ``torch.utils.checkpoint``, ``tf.recompute_grad``);
    values and gradients are unchanged, activation memory drops to one block's. ``norm_eps`` and
    ``gelu_tanh``: see :class:`ResidualBlock`.
    """

    def __init__(self, width: int, layers: int, heads: int, mlp_width: int, quick_gelu: bool = False,
                 ls_init_value: float | None = None, seed: int | None = 0, norm_eps: float = LN_EPS,
                 gelu_tanh: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.width, self.layers, self.heads, self.mlp_width = width, layers, heads, mlp_width
        self.quick_gelu, self.ls_init_value = quick_gelu, ls_init_value
        self.norm_eps, self.gelu_tanh = norm_eps, gelu_tanh
        proj_std = width ** -0.5 * (2 * layers) ** -0.5  # open_clip's residual-branch output init
        self.resblocks = [
            ResidualBlock(width, heads, mlp_width, quick_gelu, ls_init_value, proj_std, child_seed(seed, str(i)),
                          norm_eps, gelu_tanh, name=f"resblocks_{i}", dtype=self.dtype_policy)
            for i in range(layers)
        ]
        self.grad_checkpointing = False

    def build(self, input_shape):
        for block in self.resblocks:
            block.build(input_shape)
        self.built = True

    def call(self, x, causal: bool = False, attn_mask=None):
        for block in self.resblocks:
            x = call_layer(block, x, causal=causal, attn_mask=attn_mask, remat=self.grad_checkpointing)
        return x

    def get_config(self):
        return {**super().get_config(), "width": self.width, "layers": self.layers, "heads": self.heads,
                "mlp_width": self.mlp_width, "quick_gelu": self.quick_gelu,
                "ls_init_value": self.ls_init_value, "norm_eps": self.norm_eps, "gelu_tanh": self.gelu_tanh}


