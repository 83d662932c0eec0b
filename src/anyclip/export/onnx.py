"""ONNX export of a model's two encoders, and running the files with onnxruntime.

Route: the Keras model on the **torch backend**, each tower wrapped in a small ``torch.nn.Module`` (layout
change, tower, L2 normalisation) and handed to ``torch.onnx.export(..., dynamo=True)``. Why this one:

* Keras 3 layers on the torch backend *are* ``torch.nn.Module``\\ s, so ``torch.export`` traces the real model
  code with every weight; nothing is re-implemented, and a dynamic batch axis is a ``torch.export.Dim``.
* The TorchScript exporter (``dynamo=False``) fails on Keras' LayerNormalization (a shape read as a tensor:
  "Failed to export ... because it is not constant"). ``keras.Model.export(format="onnx")`` on the torch
  backend picks exactly that exporter whenever an axis is dynamic (``keras/src/export/onnx.py``), and it
  exports one whole-model signature, while deployment wants each encoder on its own with named inputs.
* On TF/JAX, Keras converts through tf2onnx (which Keras patches at run time for numpy 2): one more package
  and one more translation (TF graph to ONNX). Not measured here; the torch route met every check first.

Example:
    >>> paths = export_onnx(model, "out/", batch="dynamic", layout="NCHW")  # doctest: +SKIP
    >>> run_onnx(paths["image"], pixels)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IMAGE_FILE, TEXT_FILE = "image_encoder.onnx", "text_encoder.onnx"
IMAGE_INPUT, TEXT_INPUT = "pixel_values", "input_ids"
IMAGE_OUTPUT, TEXT_OUTPUT = "image_embeds", "text_embeds"
OPSET = 18
LAYOUTS = ("NCHW", "NHWC")


def encoder_modules(model, layout: str = "NCHW"):
    """``(image_module, text_module)``: torch modules giving a Keras model's unit-length embeddings.

    The image module takes float32 pixels in ``layout``; the text module int64 token ids. Needs the torch backend.

    Example:
        >>> image_module, text_module = encoder_modules(model, "NCHW")  # doctest: +SKIP
    """
    import torch
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")

    def unit(y):
        return y / torch.linalg.vector_norm(y, dim=-1, keepdim=True).clamp_min(1e-12)

    class ImageEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = model.visual

        def forward(self, pixel_values):
            if layout == "NCHW":
                pixel_values = pixel_values.permute(0, 2, 3, 1)
            return unit(self.visual(pixel_values, training=False).float())

    class TextEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.text = model.text

        def forward(self, input_ids):
            return unit(self.text(input_ids.to(torch.int32), training=False).float())

    return ImageEncoder().eval(), TextEncoder().eval()


def traceable_ops():
    """A context in which ``torch.take_along_dim`` runs as ``expand`` + ``gather``, for ``torch.export``.

    Keras' ``ops.take_along_axis`` (the text towers' end-token pooling) calls ``torch.take_along_dim``, whose
    C++ broadcasting fixes the batch size while tracing ("you marked batch as dynamic but your code
    specialized it"); the same values through ``gather`` keep the batch axis dynamic.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    class GatherForTakeAlongDim(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.take_along_dim:
                values, indices = args[0], args[1]
                dim = kwargs.get("dim", args[2] if len(args) > 2 else None)
                if dim is not None:
                    dim %= values.ndim
                    sizes = [indices.size(i) if i == dim else values.size(i) for i in range(values.ndim)]
                    return torch.gather(values, dim, indices.expand(*sizes))
            return func(*args, **kwargs)

    return GatherForTakeAlongDim()


def example_inputs(image_hw: tuple[int, int], context_length: int, batch: int, layout: str):
    """Zero images and token ids of the shapes the encoders are traced with (``batch`` rows)."""
    h, w = image_hw
    shape = (batch, 3, h, w) if layout == "NCHW" else (batch, h, w, 3)
    tokens = np.zeros((batch, context_length), dtype=np.int64)
    tokens[:, :2] = 1, 2  # ids every vocabulary has: the trace does not depend on them
    return np.zeros(shape, dtype=np.float32), tokens


def traced_encoders(model, batch: str | int, layout: str) -> dict:
    """What both torch routes (ONNX, ``torch.export``) trace: per tower, its module, an example input, the input
    name and the ``dynamic_shapes`` argument (a ``torch.export.Dim`` batch axis, or ``None`` for a fixed batch).

    Example:
        >>> module, example, input_name, shapes = traced_encoders(model, "dynamic", "NCHW")["image"]  # doctest: +SKIP
    """
    import torch
    image_module, text_module = encoder_modules(model, layout)
    dynamic = batch == "dynamic"
    rows = 2 if dynamic else int(batch)  # torch.export specialises sizes 0 and 1: trace a dynamic batch with 2
    pixels, tokens = example_inputs(model.image_size, model.context_length, rows, layout)
    jobs = {}
    for tower, module, example, name in (("image", image_module, pixels, IMAGE_INPUT),
                                         ("text", text_module, tokens, TEXT_INPUT)):
        shapes = {name: {0: torch.export.Dim("batch")}} if dynamic else None
        jobs[tower] = (module, torch.from_numpy(example), name, shapes)
    return jobs


def export_onnx(model, folder: str | os.PathLike, batch: str | int = "dynamic", layout: str = "NCHW") -> dict:
    """Write ``image_encoder.onnx`` and ``text_encoder.onnx`` into ``folder``; returns ``{"image", "text"}`` paths.

    ``batch``: ``"dynamic"`` (any batch size) or a fixed int. Needs the torch backend.

    Example:
        >>> export_onnx(model, "out/")  # doctest: +SKIP
        {'image': PosixPath('out/image_encoder.onnx'), 'text': PosixPath('out/text_encoder.onnx')}
    """
    import torch
    folder = Path(folder)
    outputs = {"image": (IMAGE_OUTPUT, IMAGE_FILE), "text": (TEXT_OUTPUT, TEXT_FILE)}
    paths = {}
    for tower, (module, example, input_name, shapes) in traced_encoders(model, batch, layout).items():
        output_name, filename = outputs[tower]
        with torch.no_grad(), traceable_ops():
            program = torch.onnx.export(module, (example,), None, input_names=[input_name],
                                        output_names=[output_name], dynamic_shapes=shapes, dynamo=True,
                                        opset_version=OPSET, verbose=False, optimize=True)
        paths[tower] = folder / filename
        program.save(str(paths[tower]), external_data=_needs_external_data(module))
    return paths


def _needs_external_data(module) -> bool:
    """ONNX files hold at most 2 GB: larger models keep their weights in a ``.data`` file beside the graph."""
    return sum(p.numel() * p.element_size() for p in module.parameters()) > 1.8e9


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session for ``path`` (``threads``: intra-op threads, onnxruntime's default if None)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path_or_session, inputs: np.ndarray) -> np.ndarray:
    """The first output of an ONNX encoder for ``inputs`` (one batch).

    Example:
        >>> run_onnx("out/text_encoder.onnx", tokens).shape  # doctest: +SKIP
        (5, 512)
    """
    session = onnx_session(path_or_session) if isinstance(path_or_session, (str, os.PathLike)) else path_or_session
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]
