"""Transformer blocks shared by every tower: fused-qkv attention, MLP, layer scale, residual block.

Layer and weight attribute names follow open_clip's module names (``ln_1``, ``attn.in_proj``,
``mlp.c_fc``...) so that the weight-name tables in the tower modules stay short and obvious.
Tensors are batch-first ``[batch, tokens, width]``.
"""

from __future__ import annotations

import functools
import zlib

import keras
import numpy as np
from keras import ops

LN_EPS = 1e-5  # torch.nn.LayerNorm default, used by every open_clip tower

# open_clip key (relative to a residual block, ``…resblocks.{i}.``) -> attribute path, transform; see
# anyclip.weights.mapping. Rows whose attribute a block lacks (layer scale) are skipped.
BLOCK_TABLE = (
    ("ln_1.weight", "ln_1.gamma", None),
    ("ln_1.bias", "ln_1.beta", None),
    ("attn.in_proj_weight", "attn.in_proj.kernel", "linear"),
    ("attn.in_proj_bias", "attn.in_proj.bias", None),
    ("attn.out_proj.weight", "attn.out_proj.kernel", "linear"),
    ("attn.out_proj.bias", "attn.out_proj.bias", None),
    ("ls_1.gamma", "ls_1.gamma", None),
    ("ln_2.weight", "ln_2.gamma", None),
    ("ln_2.bias", "ln_2.beta", None),
    ("mlp.c_fc.weight", "mlp.c_fc.kernel", "linear"),
    ("mlp.c_fc.bias", "mlp.c_fc.bias", None),
    ("mlp.c_proj.weight", "mlp.c_proj.kernel", "linear"),
    ("mlp.c_proj.bias", "mlp.c_proj.bias", None),
    ("ls_2.gamma", "ls_2.gamma", None),
)


@keras.saving.register_keras_serializable(package="anyclip")
class HostInit(keras.initializers.Initializer):
    """Initial values made with numpy on the host: ``std * N(0, 1)`` from ``seed``, or a constant.

    Creating variables this way costs no device kernel per variable (JAX compiles one per shape),
    and the same seed always gives the same values. ``seed=None`` means "weights will be loaded":
    every value is the constant (zeros), which is nearly free.
    """

    def __init__(self, std: float = 0.0, seed: int | None = None, constant: float = 0.0):
        self.std, self.seed, self.constant = std, seed, constant

    def __call__(self, shape, dtype=None):
        if self.seed is None or self.std == 0.0:
            return np.full(shape, self.constant, dtype=np.float32)
        rng = np.random.default_rng(self.seed)
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(self.std)

    def get_config(self):
        return {"std": self.std, "seed": self.seed, "constant": self.constant}


def child_seed(seed: int | None, name: str) -> int | None:
    """A stable seed for a sub-layer or variable ``name`` derived from its parent's ``seed``."""
    return None if seed is None else zlib.crc32(f"{seed}/{name}".encode())


def seed_generator(seed: int | None):
    """A ``keras.random.SeedGenerator`` for ``seed`` (``child_seed`` values folded into int32, which torch needs).

    Example:
        >>> seed_generator(2**32 - 1) is not None
        True
    """
    return keras.random.SeedGenerator((seed or 0) % (2**31 - 1))


def normal_init(std: float, seed: int | None, name: str) -> HostInit:
    return HostInit(std=std, seed=child_seed(seed, name))


def constant_init(value: float) -> HostInit:
    return HostInit(constant=value)


@keras.saving.register_keras_serializable(package="anyclip")
class Linear(keras.layers.Dense):
    """``keras.layers.Dense`` whose bias add is fused into the matmul on the torch backend.

    Keras runs torch eagerly, so ``matmul`` then ``add`` are two kernels and a full extra pass over the
    activations; ``torch.nn.functional.linear`` does both in one GEMM (the kernel is passed as a
    transposed view, no copy). Other backends compile the graph and fuse it themselves.
    """

    def call(self, inputs, training=None):
        if _TORCH_FUSED and self.bias is not None and self.lora_rank is None and self.quantization_mode is None:
            import torch.nn.functional as F
            kernel = ops.cast(self.kernel, inputs.dtype)
            return F.linear(inputs, kernel.T, ops.cast(self.bias, inputs.dtype))
        return super().call(inputs, training=training)


_TORCH_FUSED = keras.backend.backend() == "torch"


@functools.lru_cache(maxsize=None)
def jax_on_cpu() -> bool:
    """Whether Keras runs on JAX with the CPU as its default device (some ops take a CPU-friendlier form)."""
    if keras.backend.backend() != "jax":
        return False
    import jax
    return jax.default_backend() == "cpu"


def dense(units: int, std: float, seed: int | None, name: str, dtype=None, bias: bool = True) -> Linear:
    """A Dense layer (torch ``Linear``) with normal(std) kernel and zero bias (none if not ``bias``),
    initialised on the host.

    Example:
        >>> dense(4, 0.02, 0, "q", bias=False).use_bias
        False
    """
    return Linear(units, use_bias=bias, kernel_initializer=normal_init(std, seed, name),
                  bias_initializer=constant_init(0.0), name=name, dtype=dtype)


def layer_norm(name: str, dtype=None, eps: float = LN_EPS) -> keras.layers.LayerNormalization:
    """A torch ``nn.LayerNorm`` (weights ``gamma``/``beta`` = torch ``weight``/``bias``), epsilon torch's default.

    Example:
        >>> layer_norm("ln", eps=1e-6).epsilon
        1e-06
    """
    return keras.layers.LayerNormalization(epsilon=eps, name=name, dtype=dtype,
                                           gamma_initializer=constant_init(1.0), beta_initializer=constant_init(0.0))


def attention_dtype(dtype) -> str:
    """The dtype :func:`attention` computes in for inputs of ``dtype``: float32 for float16 on JAX's CPU
    backend (XLA:CPU has no float16 dot with float32 accumulation, which jax's attention and its gradient ask
    for), else ``dtype`` itself.

    Example:
        >>> attention_dtype("bfloat16")
        'bfloat16'
    """
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype == "float16" and jax_on_cpu() else dtype


def attention(q, k, v, mask=None, bias=None, scale: float | None = None, causal: bool = False):
    """Softmax attention through ``ops.dot_product_attention``, upcast to float32 where the backend needs it.

    ``q``: ``[batch, tokens, heads, head_dim]``, ``k, v``: ``[batch, keys, heads, head_dim]``; ``mask``: boolean,
    broadcastable to ``[batch, heads, tokens, keys]`` (True = may attend); ``bias``: additive, same shape rule;
    ``scale`` defaults to ``head_dim ** -0.5``. The result has ``q``'s shape and dtype; see
    :func:`attention_dtype` for the one case computed in float32.

    Example:
        >>> x = keras.ops.ones((1, 3, 2, 4), dtype="float16")
        >>> attention(x, x, x, causal=True).shape
        (1, 3, 2, 4)
    """
    dtype = keras.backend.standardize_dtype(q.dtype)
    compute = attention_dtype(dtype)
    if compute != dtype:
        q, k, v = (ops.cast(t, compute) for t in (q, k, v))
    if bias is not None:
        bias = ops.cast(bias, compute)
    out = ops.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale, is_causal=causal)
    return ops.cast(out, dtype) if compute != dtype else out


def call_layer(layer, *args, remat: bool = False, **kwargs):
    """``layer(*args, **kwargs)``, rematerialised in the backward pass when ``remat`` (``keras.remat``:
    ``jax.checkpoint``, ``torch.utils.checkpoint``, ``tf.recompute_grad``; same values and gradients).

    ``args`` are what is rematerialised (tensors); ``kwargs`` are closed over. A fresh wrapper per call: JAX
    caches checkpointed traces per function object, and a cached trace of the same layer object would carry
    the previous trace's weights (a leaked tracer).

    Example:
        >>> call_layer(keras.layers.Identity(), keras.ops.ones((2,)), remat=True).shape
        (2,)
    """
    if not remat:
        return layer(*args, **kwargs)
    return keras.remat(functools.partial(layer, **kwargs))(*args)


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
class Attention(keras.layers.Layer):
    """Multi-head self-attention with one fused qkv projection, through :func:`attention`.

    ``in_proj`` maps open_clip's ``attn.in_proj_weight/bias`` and ``out_proj`` its ``attn.out_proj``.
    """

    def __init__(self, width: int, heads: int, proj_std: float | None = None, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.width, self.heads = width, heads
        self.head_dim = width // heads
        self.in_proj = dense(3 * width, width ** -0.5, seed, "in_proj", self.dtype_policy)
        self.out_proj = dense(width, proj_std or width ** -0.5, seed, "out_proj", self.dtype_policy)

    def build(self, input_shape):
        self.in_proj.build(input_shape)
        self.out_proj.build(tuple(input_shape[:-1]) + (self.width,))
        self.built = True

    def call(self, x, causal: bool = False, attn_mask=None):
        """``attn_mask``: optional boolean ``[batch, 1, length, length]`` (True = may attend), and ``causal``."""
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.in_proj(x), (batch, length, 3, self.heads, self.head_dim))
        out = attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], mask=attn_mask, causal=causal)
        return self.out_proj(ops.reshape(out, (batch, length, self.width)))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads}


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


def lock_groups(layer, groups, unlocked: int, what: str) -> None:
    """Freeze every weight of ``layer`` except those in the last ``unlocked`` of ``groups`` (lists of weights).

    open_clip's tower ``lock`` semantics: ``unlocked=0`` freezes the whole tower, a count larger than the
    number of groups leaves it all trainable. Frozen weights drop out of ``trainable_variables``.

    Example:
        >>> lock_groups(tower, [[tower.proj]], 1, "image tower")  # doctest: +SKIP
    """
    if isinstance(unlocked, bool) or not isinstance(unlocked, (int, np.integer)) or unlocked < 0:
        raise ValueError(f"{what}: the number of unlocked groups must be an integer >= 0, got {unlocked!r}")
    layer.trainable = True
    for var in layer.weights:
        var.trainable = False
    for group in (groups[-int(unlocked):] if unlocked else []):
        for var in group:
            var.trainable = True
