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


def _jax_has_accelerator_plugin() -> bool:
    """Whether a JAX GPU/TPU plugin (``jax_plugins`` entry point, e.g. ``jax_cuda12_plugin``) is installed."""
    from importlib.metadata import entry_points
    return any(True for _ in entry_points(group="jax_plugins"))


def cpu_bf16_route(precision: str, choice_reason: str, keras_imported: bool, flags: set[str] | None,
                   torch_installed: bool, jax_accelerator: bool) -> str | None:
    """The backend a low ``precision`` should run on instead of JAX on this CPU (``"torch"``), or None.

    Only when nobody chose the backend (``choice_reason`` is anyclip's "first installed" default), Keras is
    not imported yet, JAX would run on the CPU (no GPU/TPU plugin), torch is installed and the CPU has bf16
    instructions: there the torch backend runs ViT-B-32 images in bf16 at 1.33x open_clip's autocast and
    2.8x its own fp32, JAX at 0.34x and 0.7x (``bench/bench_precision.py``).

    Example:
        >>> cpu_bf16_route("bf16", "first installed of jax, torch, tensorflow", False, {"amx_bf16"}, True, False)
        'torch'
        >>> cpu_bf16_route("bf16", "KERAS_BACKEND=jax", False, {"amx_bf16"}, True, False) is None
        True
    """
    from ._backend import FIRST_INSTALLED
    if LOW_PRECISIONS.get(precision) != "bf16" or choice_reason != FIRST_INSTALLED or keras_imported:
        return None
    if not torch_installed or jax_accelerator or not (flags and BF16_CPU_FLAGS & flags):
        return None
    return "torch"


def route_cpu_bf16(precision: str, choice_reason: str) -> str | None:
    """Switch a bf16 job to the torch backend where :func:`cpu_bf16_route` says so; the line saying so, or None.

    ``choice_reason`` is why the current backend was chosen (``anyclip.backend_choice().reason``). Call before
    Keras is imported. ``KERAS_BACKEND=jax`` (or any explicit choice) keeps the chosen backend.

    Example:
        >>> route_cpu_bf16("fp32", "KERAS_BACKEND=jax") is None
        True
    """
    import importlib.util
    import os
    import sys

    if LOW_PRECISIONS.get(precision) != "bf16" or os.environ.get("KERAS_BACKEND") not in (None, "jax"):
        return None
    route = cpu_bf16_route(precision, choice_reason, "keras" in sys.modules, cpu_flags(),
                           importlib.util.find_spec("torch") is not None, _jax_has_accelerator_plugin())
    if route is None:
        return None
    os.environ["KERAS_BACKEND"] = route
    return (f"anyclip: --precision {precision} runs on the {route} backend here: its oneDNN kernels use this CPU's "
            f"bf16 instructions, where JAX's CPU backend runs bf16 slower than fp32 ({_BENCH}); "
            "set KERAS_BACKEND=jax to keep JAX")


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


__all__ = ["BF16_CPU_FLAGS", "LOW_PRECISIONS", "cpu_bf16_route", "cpu_flags", "notice_for_current_backend",
           "precision_notice", "route_cpu_bf16"]
