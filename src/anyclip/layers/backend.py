"""The one place that decides backend-specific fast paths.

Keras fixes its backend once per process. Layers call the kernels here instead of asking
``keras.backend.backend()`` themselves: on torch (run eagerly by Keras) torch's own fused kernels on the NCHW view
of channels-last activations beat a chain of ``keras.ops`` calls; on JAX's CPU backend some ops take an
XLA:CPU-friendlier form. Every fast path returns what its portable ``keras.ops`` form returns (to float rounding).
"""

from __future__ import annotations

import functools

import keras
from keras import ops

TORCH = keras.backend.backend() == "torch"


@functools.lru_cache(maxsize=None)
def jax_on_cpu() -> bool:
    """Whether Keras runs on JAX with the CPU as its default device (some ops take a CPU-friendlier form)."""
    if keras.backend.backend() != "jax":
        return False
    import jax
    return jax.default_backend() == "cpu"


def linear(x, kernel, bias=None):
    """``x @ kernel + bias`` over the last axis; one fused GEMM on torch (the kernel as a transposed view).

    Example:
        >>> linear(keras.ops.ones((2, 3)), keras.ops.ones((3, 4)), keras.ops.zeros(4)).shape
        (2, 4)
    """
    if TORCH and bias is not None:
        import torch.nn.functional as F
        return F.linear(x, kernel.T, bias)
    shape = tuple(x.shape)
    if len(shape) > 2 and None not in shape and jax_on_cpu():  # one 2-D GEMM: a faster gradient (layers.dense.Linear)
        y = ops.reshape(ops.matmul(ops.reshape(x, (-1, shape[-1])), kernel), (*shape[:-1], kernel.shape[-1]))
    else:
        y = ops.matmul(x, kernel)
    return y + bias if bias is not None else y


def dot_product_attention(q, k, v, mask=None, bias=None, scale: float | None = None, causal: bool = False):
    """``ops.dot_product_attention`` of ``[batch, tokens, heads, head_dim]`` tensors (same heads in q, k and v).

    On torch this is ``F.scaled_dot_product_attention`` on the head-major views of q, k and v. Keras' torch form
    makes each a contiguous head-major copy first (three copies per attention); torch's kernels read the strided
    views as they are (the attention op alone 1.1-1.4x faster on a CPU, the same values bit for bit). ``mask``
    (True = may attend) becomes the same additive mask Keras builds, and a mask with ``causal`` keeps both. On
    JAX's CPU backend it is :func:`anyclip.layers.jax_cpu.attention` (the same values as JAX's XLA form); on
    other JAX devices and on TensorFlow, ``ops.dot_product_attention`` itself.

    Example:
        >>> x = keras.ops.ones((2, 5, 4, 8))
        >>> dot_product_attention(x, x, x, causal=True).shape
        (2, 5, 4, 8)
    """
    if jax_on_cpu():
        from .jax_cpu import attention
        return attention(q, k, v, mask, bias, scale, causal)
    if not TORCH:
        return ops.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale, is_causal=causal)
    import torch
    import torch.nn.functional as F
    dtype = keras.backend.result_type(q.dtype, k.dtype, v.dtype)
    q, k, v = (ops.cast(ops.convert_to_tensor(t), dtype) for t in (q, k, v))  # numpy in, torch out, as ops does
    additive = None
    if mask is not None:
        mask = ops.convert_to_tensor(mask, "bool")
        if causal:  # torch takes a mask or is_causal, not both
            mask = mask & torch.ones((q.shape[1], k.shape[1]), dtype=torch.bool, device=mask.device).tril()
            causal = False
        lowest = -0.7 * (65500.0 if q.dtype == torch.float16 else 3.38953e38)  # Keras' "large negative"
        additive = torch.where(mask, torch.zeros((), dtype=q.dtype, device=mask.device),
                               torch.full((), lowest, dtype=q.dtype, device=mask.device))
    if bias is not None:
        if additive is not None:
            raise ValueError("give attention a mask or a bias, not both")
        additive = ops.convert_to_tensor(bias, q.dtype)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         attn_mask=additive, is_causal=causal, scale=scale)
    return out.transpose(1, 2)


def torch_conv2d(x, kernel, bias, stride: int, padding: int, groups: int):
    """torch's ``conv2d`` on the NCHW view of channels-last ``x`` (kernel HWIO); torch backend only.

    An ungrouped HWIO kernel becomes OIHW in channels-last memory with one 2-D transpose, the layout torch's
    channels-last convolution wants; grouped kernels are passed as a permuted view.
    """
    import torch.nn.functional as F
    if groups == 1:
        k, cin = kernel.shape[0], kernel.shape[2]
        weight = kernel.reshape(k * k * cin, -1).t().contiguous().view(-1, k, k, cin).permute(0, 3, 1, 2)
    else:
        weight = kernel.permute(3, 2, 0, 1)
    y = F.conv2d(x.permute(0, 3, 1, 2), weight, bias, stride, padding, 1, groups)
    return y.permute(0, 2, 3, 1)


def batch_norm_inference(x, mean, var, gamma, beta, eps: float):
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` per channel (last axis) with running statistics.

    On torch (same dtype as the statistics) this is torch's kernel on the NCHW view.
    """
    if TORCH and keras.backend.standardize_dtype(x.dtype) == keras.backend.standardize_dtype(gamma.dtype):
        import torch.nn.functional as F
        return F.batch_norm(x.permute(0, 3, 1, 2), mean, var, gamma, beta, False, 0.0, eps).permute(0, 2, 3, 1)
    f32 = "float32"
    scale = ops.cast(gamma, f32) * ops.rsqrt(ops.cast(var, f32) + eps)
    shift = ops.cast(beta, f32) - ops.cast(mean, f32) * scale
    return x * ops.cast(scale, x.dtype) + ops.cast(shift, x.dtype)


def avg_pool(x, size: int):
    """``torch.nn.AvgPool2d(size)`` on channels-last ``x`` (stride = size, no padding, floor).

    Example:
        >>> avg_pool(keras.ops.ones((1, 5, 5, 2)), 2).shape
        (1, 2, 2, 2)
    """
    if size == 1:
        return x
    if TORCH:
        import torch.nn.functional as F
        return F.avg_pool2d(x.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1)
    shape = ops.shape(x)
    h, w = shape[1] // size, shape[2] // size
    x = ops.reshape(x[:, :h * size, :w * size], (shape[0], h, size, w, size, shape[3]))
    return ops.mean(x, axis=(2, 4))


def _no_grad() -> bool:
    if not TORCH:
        return False
    import torch
    return not torch.is_grad_enabled()


def relu(x):
    """ReLU; in place on torch when no gradient is recorded (call it only on a fresh intermediate)."""
    return x.relu_() if _no_grad() else ops.relu(x)


def add_relu(x, identity):
    """``relu(x + identity)``; in place on ``x`` on torch when no gradient is recorded."""
    return x.add_(identity).relu_() if _no_grad() else ops.relu(x + identity)


@functools.lru_cache(maxsize=None)
def _jax_store_gradient():
    """The JAX function behind :func:`store_gradient` (built once: a custom VJP identity)."""
    import jax

    @jax.custom_vjp
    def store(x):
        return x

    def forward(x):
        return x, x.reshape(-1)[:1]

    def backward(first, g):
        # XLA does not fuse across a conditional whose branches differ, so ``g`` is written to memory once here.
        # The branch taken is ``g`` itself; the other, taken only when the block's first output is NaN, makes the
        # whole gradient NaN (never a silent zero), as a NaN activation makes the loss NaN.
        return (jax.lax.cond(first[0] == first[0], lambda t: t, lambda t: t + (first[0] - first[0]), g),)

    store.defvjp(forward, backward)
    return store


def store_gradient(x):
    """``x`` unchanged; on JAX, its gradient is written to memory once in the backward pass.

    Between transformer blocks this stops XLA's CPU fusion from recomputing the gradient of the residual stream
    (a sum over every later block's LayerNorm backward) inside each of its consumers, a cost that grew with
    depth: a ViT-B-32 forward + backward (CLIP loss, batch 32, 2 CPU cores) went from 35 s to 25 s.

    Example:
        >>> store_gradient(keras.ops.ones((2,))).shape
        (2,)
    """
    if keras.backend.backend() != "jax":
        return x
    return _jax_store_gradient()(x)



def host_to_backend(array):
    """A numpy initial value as the backend's own array, without a compiled kernel or an extra host copy.

    Keras would convert numpy initial values itself: on JAX that compiles one program per shape, on torch it
    copies the array first. Here JAX gets a host->device transfer and torch shares the numpy memory.

    Example:
        >>> import numpy as np
        >>> tuple(host_to_backend(np.zeros((2, 3), np.float32)).shape)
        (2, 3)
    """
    backend = keras.backend.backend()
    if backend == "torch":
        import torch
        return torch.from_numpy(array)
    if backend == "jax":
        import jax
        return jax.device_put(array)
    return array


def assign_from_host(variables: list, arrays: list, shared: list) -> None:
    """Set each Keras variable to the numpy array beside it, copying each array at most once.

    ``shared[i]`` says that ``arrays[i]``'s memory still belongs to the caller: the variable must not keep it.
    JAX takes one batched host->device transfer (it copies strided views itself, faster than a numpy transpose,
    but keeps a contiguous array's memory on a CPU, so a shared contiguous array is copied first); torch copies
    into the existing parameter from a tensor view of the array.

    Example:
        >>> import numpy as np
        >>> v = keras.Variable(np.zeros(3, np.float32))
        >>> assign_from_host([v], [np.ones(3, np.float32)], shared=[True])
        >>> keras.ops.convert_to_numpy(v).tolist()
        [1.0, 1.0, 1.0]
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        values = jax.device_put([a.copy() if s and a.flags.c_contiguous else a for a, s in zip(arrays, shared)])
    elif backend == "torch":
        import torch
        values = [torch.from_numpy(a if a.flags.writeable else a.copy()) for a in arrays]
    else:
        values = [a.copy() if s else a for a, s in zip(arrays, shared)]
    for var, value in zip(variables, values):
        var.assign(value)  # torch: copy_ into the parameter
