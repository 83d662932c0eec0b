"""open_clip's ``device=`` and ``jit=`` arguments mapped onto Keras: a device scope, and what jit means here."""

from __future__ import annotations

import contextlib
import warnings

__all__ = ["DEFAULT_DEVICE", "device_scope", "model_device_scope", "warn_jit"]

_KINDS = ("cpu", "gpu", "cuda", "tpu", "mps")


class _DefaultDevice(str):
    """``device`` left at open_clip's default ``'cpu'``: anyclip then keeps the backend's own placement."""


DEFAULT_DEVICE = _DefaultDevice("cpu")


def _keras_device_name(kind: str, index, backend: str) -> str:
    """The Keras device name for a device ``kind`` (``"cpu"``, ``"cuda"``...) and ``index`` (None/"" for 0).

    torch has one CPU device and its tensors there carry no index (``"cpu"``). A Keras scope of ``"cpu:0"`` would
    not equal it, and Keras' torch backend would then copy every input of every op "to" cpu:0 (ViTamin-S images:
    420 copies, 12% of the encode time), so on torch the CPU is plain ``"cpu"``.
    """
    if backend == "torch":
        kind = "cuda" if kind == "gpu" else kind
        if kind == "cpu":
            return "cpu"
    elif kind in ("cuda", "mps"):
        kind = "gpu"
    return f"{kind}:{index or 0}"


def device_scope(device):
    """A ``keras.device`` scope for open_clip's ``device`` (``"cpu"``, ``"cuda:0"``, a ``torch.device``...).

    ``device`` left at its default means the Keras backend's own placement (the accelerator when there is one),
    so code that never names a device keeps running on the GPU.

    Example:
        >>> with device_scope("cpu"):  # doctest: +SKIP
        ...     model = CLIP(config)
    """
    if device is None or device is DEFAULT_DEVICE:
        return contextlib.nullcontext()
    name = str(device).lower()
    kind, _, index = name.partition(":")
    if kind not in _KINDS or (index and not index.isdigit()):
        raise ValueError(f"device={device!r} is not a device name; use 'cpu', 'cuda', 'cuda:N', 'gpu:N' or 'tpu:N'")
    import keras
    return keras.device(_keras_device_name(kind, index, keras.backend.backend()))


def model_device_scope(model):
    """On torch, a ``keras.device`` scope on the device holding ``model``'s weights (so after ``model.to(device)``
    inputs go there and outputs come from there); elsewhere no scope (JAX and TensorFlow place arrays themselves).

    Example:
        >>> with model_device_scope(model):  # doctest: +SKIP
        ...     features = model.visual(images)
    """
    import keras
    if keras.backend.backend() != "torch" or not model.weights:
        return contextlib.nullcontext()
    device = model.weights[0].value.device
    return keras.device(_keras_device_name(device.type, device.index, "torch"))


def warn_jit(jit: bool) -> None:
    """``jit=True``: a no-op on JAX and TensorFlow (encoders are compiled anyway); ignored with a warning on torch."""
    if not jit:
        return
    import keras
    if keras.backend.backend() == "torch":
        warnings.warn("jit=True is ignored on the torch backend: anyclip does not build TorchScript models; "
                      "encode_image/encode_text run under torch.no_grad", UserWarning, stacklevel=3)
