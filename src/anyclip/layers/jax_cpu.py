"""The forms of attention and layer norm that JAX's CPU backend runs fastest, with their gradients in closed form.

Each computes what Keras' JAX op computes (the same forward values op for op where stated, float32 statistics and
scores); XLA:CPU runs Keras' and JAX's own forms slower, and XLA's autodiff of them takes more passes than the
closed-form gradient. ``bench/bench_attention.py`` and ``bench/bench_train_parts.py`` measure both. Used by
:func:`anyclip.layers.backend.dot_product_attention` and :class:`anyclip.layers.norm.LayerNorm` when
:func:`~anyclip.layers.backend.jax_on_cpu`; imported only there (it imports JAX).

Example:
    >>> import numpy as np
    >>> x = np.ones((2, 5, 4, 8), np.float32)
    >>> attention(x, x, x, None, None, None, True).shape
    (2, 5, 4, 8)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def attention(q, k, v, mask, bias, scale, causal):
    """Softmax attention of ``[batch, tokens, heads, head_dim]`` arrays, as ``jax.nn.dot_product_attention``'s XLA
    form (float32 scores and softmax, ``-0.7 * max`` at masked keys, ``causal`` and ``mask`` both kept).

    Computed head-major (XLA:CPU runs the token-major einsums 1.5-1.6x slower than batched matmuls) with the softmax
    normalised after the product with v, as torch's fused CPU kernel does (one exponential per score, the division
    on ``[tokens, head_dim]``); the gradient is the closed form on the stored exponentials.
    """
    q, k, v = (jnp.swapaxes(jnp.asarray(t), 1, 2) for t in (q, k, v))  # [batch, heads, tokens, head_dim]
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    logits_dtype = jnp.promote_types(q.dtype, jnp.float32)
    causal_keep = np.tril(np.ones((q.shape[2], k.shape[2]), bool)) if causal else None
    keep = None
    if mask is not None:
        keep = jnp.asarray(mask, bool) if causal_keep is None else jnp.asarray(mask, bool) & causal_keep
    constant = None
    if keep is None and causal:  # a constant added fuses with the softmax (a where costs XLA:CPU a pass)
        lowest = -0.7 * float(jnp.finfo(logits_dtype).max)
        constant = jnp.asarray(np.where(causal_keep, 0.0, lowest), logits_dtype)
    bias = None if bias is None else jnp.asarray(bias)
    out = _attention_fn(scale)(q, k, v, bias, keep, constant)
    return jnp.swapaxes(out, 1, 2)


@functools.lru_cache(maxsize=None)
def _attention_fn(scale: float):
    """``f(q, k, v, bias, keep, constant)`` on head-major arrays with a closed-form gradient (q, k, v, bias)."""

    def scores(q, k, bias, keep, constant):
        logits_dtype = jnp.promote_types(q.dtype, jnp.float32)
        logits = jnp.matmul(q, jnp.swapaxes(k, -1, -2), preferred_element_type=logits_dtype)
        logits = logits * jnp.array(scale, logits_dtype)
        if bias is not None:
            logits = (logits + bias).astype(logits_dtype)
        if keep is not None:
            logits = jnp.where(keep, logits, jnp.asarray(-0.7 * jnp.finfo(logits_dtype).max, logits_dtype))
        elif constant is not None:
            logits = logits + constant
        return logits.astype(jnp.float32)

    def forward(q, k, v, bias, keep, constant):
        logits = scores(q, k, bias, keep, constant)
        weights = jnp.exp(logits - logits.max(-1, keepdims=True))  # the softmax's numerator
        total = weights.sum(-1, keepdims=True)
        out = jnp.matmul(weights.astype(v.dtype), v, preferred_element_type=jnp.float32) / total
        result = out.astype(jnp.promote_types(k.dtype, v.dtype))
        return result, (q, k, v, bias, keep, constant, weights, total, out)

    @jax.custom_vjp
    def attend(q, k, v, bias, keep, constant):
        return forward(q, k, v, bias, keep, constant)[0]

    def backward(residuals, d_out):
        q, k, v, bias, keep, constant, weights, total, out = residuals
        d_out = d_out.astype(jnp.float32) / total  # d(out * total) / d(weights @ v), row by row
        d_v = jnp.matmul(jnp.swapaxes(weights, -1, -2).astype(v.dtype), d_out.astype(v.dtype),
                         preferred_element_type=jnp.float32)
        d_weights = jnp.matmul(d_out.astype(v.dtype), jnp.swapaxes(v, -1, -2), preferred_element_type=jnp.float32)
        d_logits = weights * (d_weights - jnp.sum(d_out * out, -1, keepdims=True))
        if keep is not None:  # where() passes no gradient to masked scores (all-masked rows have weights there)
            d_logits = jnp.where(keep, d_logits, 0.0)
        d_bias = None if bias is None else _sum_to(d_logits, bias.shape).astype(bias.dtype)
        d_raw = (d_logits * scale).astype(q.dtype)
        d_q = jnp.matmul(d_raw, k, preferred_element_type=jnp.float32).astype(q.dtype)
        d_k = jnp.matmul(jnp.swapaxes(d_raw, -1, -2), q, preferred_element_type=jnp.float32).astype(k.dtype)
        no_grad = (None if keep is None else np.zeros(keep.shape, jax.dtypes.float0),
                   None if constant is None else jnp.zeros_like(constant))
        return (d_q, d_k, d_v.astype(v.dtype), d_bias, *no_grad)

    attend.defvjp(forward, backward)
    return attend


def _sum_to(x, shape):
    """``x`` summed over the axes that broadcasting ``shape`` to ``x.shape`` added or stretched."""
    lead = x.ndim - len(shape)
    x = x.sum(tuple(range(lead))) if lead else x
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
    return x.sum(stretched, keepdims=True) if stretched else x


def layer_norm(x, gamma, beta, eps: float):
    """Keras' layer norm over the last axis (``ops.layer_normalization``'s JAX branch, op for op: the same values)
    with the closed-form gradient ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``, ``g = dy * gamma``."""
    return _layer_norm_fn(float(eps))(x, gamma, beta)


@functools.lru_cache(maxsize=None)
def _layer_norm_fn(eps: float):
    def forward(x, gamma, beta):
        x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        mean, variance = jnp.mean(x32, -1, keepdims=True), jnp.var(x32, axis=-1, keepdims=True)
        rstd = jax.lax.rsqrt(variance + eps)
        inv = rstd * gamma.astype(x32.dtype)
        out = (x32 * inv + (-mean * inv + beta.astype(x32.dtype))).astype(x.dtype)
        return out, (x, mean, rstd, gamma, beta)

    @jax.custom_vjp
    def norm(x, gamma, beta):
        return forward(x, gamma, beta)[0]

    def backward(residuals, dy):
        x, mean, rstd, gamma, beta = residuals
        xhat = (x.astype(mean.dtype) - mean) * rstd
        dy = dy.astype(mean.dtype)
        g = dy * gamma.astype(mean.dtype)
        dx = rstd * (g - jnp.mean(g, -1, keepdims=True) - xhat * jnp.mean(g * xhat, -1, keepdims=True))
        rows = tuple(range(x.ndim - 1))
        return (dx.astype(x.dtype), jnp.sum(dy * xhat, rows).astype(gamma.dtype),
                jnp.sum(dy, rows).astype(beta.dtype))

    norm.defvjp(forward, backward)
    return norm
