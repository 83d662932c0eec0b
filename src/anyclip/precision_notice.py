"""What a low ``--precision`` does on the machine at hand, said when it is not faster than fp32 there.

Measured with ``bench/bench_precision.py`` (ViT-B-32, 2-core CPU with AVX512-BF16 and AMX): on JAX's CPU
backend bf16 runs ViT-B-32 images at 0.7-0.8x of fp32 and full texts at 0.9-1.2x (XLA's CPU matrix products
gain little from bf16 there), while the torch backend's oneDNN kernels run bf16 at 1.6-2.8x of its fp32.
fp16 has no fast CPU kernels on either. On GPUs low precision is the fast path and nothing is said.

Example:
    >>> precision_notice("bf16", "jax", on_gpu=False, cpu_flags={"avx512_bf16"}) is not None
    True
    >>> precision_notice("fp32", "jax", on_gpu=False, cpu_flags=set()) is None
    True
"""

from __future__ import annotations

from pathlib import Path

LOW_PRECISIONS = {"bf16": "bf16", "pure_bf16": "bf16", "amp_bf16": "bf16", "amp_bfloat16": "bf16",
                  "fp16": "fp16", "pure_fp16": "fp16", "amp": "fp16", "amp_fp16": "fp16"}
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_BENCH = "bench/bench_precision.py"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's feature flags (Linux), or None where they cannot be read.

    Example:
        >>> flags = cpu_flags()
        >>> flags is None or isinstance(flags, set)
        True
    """
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None


def precision_notice(precision: str, backend: str, on_gpu: bool, cpu_flags: set[str] | None) -> str | None:
    """One line saying what ``precision`` does here when it is not faster than fp32, else None.

    Example:
        >>> precision_notice("bf16", "torch", on_gpu=False, cpu_flags={"amx_bf16"}) is None
        True
    """
    kind = LOW_PRECISIONS.get(precision)
    if kind is None or on_gpu:
        return None
    head = f"anyclip: --precision {precision} on the {backend} CPU backend"
    has_bf16 = None if cpu_flags is None else bool(BF16_CPU_FLAGS & cpu_flags)
    if kind == "fp16":
        return (f"{head}: float16 has no fast CPU kernels, so this runs slower than fp32 here and only halves the "
                "weights' memory; use fp32 (or bf16 on the torch backend) for speed")
    if has_bf16 is False:
        return (f"{head}: this CPU has no AVX512-BF16 or AMX instructions, so bf16 products are emulated and "
                "slower than fp32; only the weights' memory is halved; use fp32 for speed")
    if backend == "torch":
        return None if has_bf16 else (f"{head}: could not read this CPU's features; bf16 is faster than fp32 only "
                                      "on CPUs with AVX512-BF16 or AMX")
    alternative = (" or KERAS_BACKEND=torch, whose oneDNN kernels use this CPU's bf16 instructions (1.6-2.8x its "
                   "fp32 there)" if has_bf16 else "")
    if backend == "jax":
        return (f"{head}: weights in bfloat16 (half the memory), but XLA's CPU matrix products gain little from "
                f"bf16 (ViT-B-32: images 0.7-0.8x, texts 0.9-1.2x of fp32, {_BENCH}); for speed use fp32{alternative}")
    return (f"{head}: bf16 speed is not measured on this backend and may be below fp32 ({_BENCH} measures it); "
            f"for speed use fp32{alternative}")


def notice_for_current_backend(precision: str) -> str | None:
    """:func:`precision_notice` for Keras' backend and the device it runs on (imports the backend).

    Example:
        >>> notice_for_current_backend("fp32") is None
        True
    """
    if precision not in LOW_PRECISIONS:
        return None
    import keras
    backend = keras.backend.backend()
    return precision_notice(precision, backend, _backend_on_gpu(backend), cpu_flags())


def _backend_on_gpu(backend: str) -> bool:
    if backend == "jax":
        import jax
        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch
        return torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    if backend == "tensorflow":
        import tensorflow as tf
        return bool(tf.config.list_physical_devices("GPU"))
    return False


__all__ = ["BF16_CPU_FLAGS", "LOW_PRECISIONS", "cpu_flags", "notice_for_current_backend", "precision_notice"]
