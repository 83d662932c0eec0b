"""MLP variants: GELU (exact or tanh) / QuickGELU, open_clip's two-layer MLP, and timm's GeGLU MLP."""

from __future__ import annotations

import keras
from keras import ops

from .dense import dense
from .norm import TIMM_LN_EPS, layer_norm


def activation(quick_gelu: bool, gelu_tanh: bool = False):
    """Exact (erf) GELU as ``torch.nn.GELU``, its tanh form (``GELU(approximate="tanh")``, timm's
    ``gelu_tanh``), or OpenAI's QuickGELU ``x * sigmoid(1.702 x)``.

    Example:
        >>> float(activation(quick_gelu=True)(keras.ops.zeros(())))
        0.0
    """
    if quick_gelu:
        return lambda x: x * ops.sigmoid(1.702 * x)
    return lambda x: keras.activations.gelu(x, approximate=gelu_tanh)



@keras.saving.register_keras_serializable(package="anyclip")
class MLP(keras.layers.Layer):
    """``c_fc`` -> GELU (exact or ``gelu_tanh``) / QuickGELU -> ``c_proj`` (open_clip's ``mlp`` Sequential)."""

    def __init__(self, width: int, hidden: int, quick_gelu: bool = False, proj_std: float | None = None,
                 seed: int | None = 0, gelu_tanh: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.width, self.hidden, self.quick_gelu, self.gelu_tanh = width, hidden, quick_gelu, gelu_tanh
        self.c_fc = dense(hidden, (2 * width) ** -0.5, seed, "c_fc", self.dtype_policy)
        self.c_proj = dense(width, proj_std or width ** -0.5, seed, "c_proj", self.dtype_policy)
        self.act = activation(quick_gelu, gelu_tanh)

    def build(self, input_shape):
        self.c_fc.build(input_shape)
        self.c_proj.build(tuple(input_shape[:-1]) + (self.hidden,))
        self.built = True

    def call(self, x):
        return self.c_proj(self.act(self.c_fc(x)))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "hidden": self.hidden,
                "quick_gelu": self.quick_gelu, "gelu_tanh": self.gelu_tanh}


def gelu(x):
    return keras.activations.gelu(x, approximate=False)


@keras.saving.register_keras_serializable(package="anyclip")
class GeGluMlp(keras.layers.Layer):
    """timm ``GeGluMlp`` (ViTamin): ``w2(gelu(w0(norm(x))) * w1(norm(x)))``, its own LayerNorm (eps 1e-6) first.

    Example:
        >>> GeGluMlp(64, 128)(keras.ops.zeros((2, 5, 64))).shape
        (2, 5, 64)
    """

    def __init__(self, width: int, hidden: int, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.width, self.hidden, policy = width, hidden, self.dtype_policy
        self.norm = layer_norm("norm", policy, eps=TIMM_LN_EPS)
        self.w0 = dense(hidden, width ** -0.5, seed, "w0", policy)
        self.w1 = dense(hidden, width ** -0.5, seed, "w1", policy)
        self.w2 = dense(width, hidden ** -0.5, seed, "w2", policy)
        self.act = activation(False)

    def build(self, input_shape):
        for layer in (self.norm, self.w0, self.w1):
            layer.build(input_shape)
        self.w2.build(tuple(input_shape[:-1]) + (self.hidden,))
        self.built = True

    def call(self, x):
        x = self.norm(x)
        return self.w2(self.act(self.w0(x)) * self.w1(x))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "hidden": self.hidden}
