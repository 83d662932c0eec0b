"""How float32 matrix products and convolutions run: exact ("fp32") or on TF32 tensor cores ("tf32").

GPUs run float32 matmuls in TF32 unless told otherwise (JAX's default precision, TensorFlow's default,
torch's cuDNN convolutions), which is about 1e-4 off open_clip's float32 on unit vectors. anyclip's
``fp32`` asks for full float32; ``tf32`` asks for TF32 on purpose. :func:`matmul_scope` applies the
choice around one call only: JAX through ``jax.default_matmul_precision`` (part of the compile-cache key,
thread-local), torch and TensorFlow by setting their TF32 switches and putting the old values back on exit
(process-wide while the call runs). Other precisions (bf16, fp16, amp) leave the backend's defaults alone.

Example:
    >>> with matmul_scope("fp32"):  # doctest: +SKIP
    ...     features = jitted_encoder(params, images)
"""

from __future__ import annotations

import contextlib
from typing import Iterator

FLOAT32_EXACT = frozenset({"fp32", "float32"})
FLOAT32_TF32 = frozenset({"tf32"})
_JAX_PRECISION = {True: "highest", False: "default"}


def float32_mode(precision: str | None) -> bool | None:
    """``True``: float32 products must be exact; ``False``: TF32 allowed; ``None``: not a float32 precision.

    Example:
        >>> float32_mode("fp32"), float32_mode("tf32"), float32_mode("bf16"), float32_mode(None)
        (True, False, None, None)
    """
    if precision in FLOAT32_EXACT:
        return True
    if precision in FLOAT32_TF32:
        return False
    return None


@contextlib.contextmanager
def matmul_scope(precision: str | None, backend: str | None = None) -> Iterator[None]:
    """Run the body with float32 products exact (``fp32``) or TF32 (``tf32``) on ``backend``.

    ``backend`` defaults to Keras' backend. Nothing changes for other precisions (``None`` included) or backends.

    Example:
        >>> with matmul_scope("tf32", "numpy"):
        ...     pass
    """
    exact = float32_mode(precision)
    if backend is None:
        import keras
        backend = keras.backend.backend()
    if exact is None or backend not in _SCOPES:
        yield
        return
    with _SCOPES[backend](exact):
        yield


def _jax_scope(exact: bool):
    import jax
    return jax.default_matmul_precision(_JAX_PRECISION[exact])


@contextlib.contextmanager
def _torch_scope(exact: bool) -> Iterator[None]:
    import torch
    # The allow_tf32 switches: they keep torch's newer fp32_precision settings consistent (mixing the two APIs
    # makes later reads of either fail).
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = not exact
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


@contextlib.contextmanager
def _tensorflow_scope(exact: bool) -> Iterator[None]:
    import tensorflow as tf
    switch = tf.config.experimental
    saved = switch.tensor_float_32_execution_enabled()
    switch.enable_tensor_float_32_execution(not exact)
    try:
        yield
    finally:
        switch.enable_tensor_float_32_execution(saved)


_SCOPES = {"jax": _jax_scope, "torch": _torch_scope, "tensorflow": _tensorflow_scope}

__all__ = ["FLOAT32_EXACT", "FLOAT32_TF32", "float32_mode", "matmul_scope"]
