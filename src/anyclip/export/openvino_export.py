"""OpenVINO IR artifacts: each encoder as ``image_encoder.xml`` / ``.bin`` (and ``text_encoder``), run with
``openvino.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})`` and no anyclip or Keras.

Route: the ONNX files of :func:`anyclip.export.onnx.export_onnx` (Keras on the torch backend, ``torch.export``
trace) converted by ``openvino.convert_model`` and saved with ``openvino.save_model(compress_to_fp16=False)``.
Why this one:

* The ONNX graphs already carry a dynamic batch axis, named inputs and one encoder per file, and the ONNX
  frontend of OpenVINO is its most used one; nothing else is traced again.
* ``keras.Model.export(format="openvino")`` on the torch backend traces with ``torch.jit.trace`` (fixed
  shapes, the TorchScript path the ONNX route avoids, see :mod:`anyclip.export.onnx`) and exports the whole
  model's call, not the two encoders; on TF/JAX it goes through a TensorFlow graph first.
* ``save_model`` compresses weights to float16 unless told not to; and OpenVINO's CPU plugin computes in
  bfloat16 by default on CPUs with AMX / AVX-512 BF16 (about 2e-3 off on unit vectors, measured), so the
  runner and ``manifest.json`` (``runtime_config``) ask for float32 inference.

Example:
    >>> paths = export_openvino(model, "out/")  # doctest: +SKIP
    >>> openvino_runner(paths["image"])(pixels).shape  # doctest: +SKIP
    (4, 512)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .onnx import export_onnx

OPENVINO_FILES = {"image": "image_encoder.xml", "text": "text_encoder.xml"}
# the compile_model configuration that keeps float32 numerics (the CPU plugin's default may be bfloat16)
RUNTIME_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def export_openvino(model, folder: str | os.PathLike, batch: str | int = "dynamic", layout: str = "NCHW") -> dict:
    """Write ``image_encoder.xml``/``.bin`` and ``text_encoder.xml``/``.bin`` into ``folder`` (float32 weights).

    Needs the torch backend and the ``openvino`` package.

    Example:
        >>> export_openvino(model, "out/")  # doctest: +SKIP
        {'image': PosixPath('out/image_encoder.xml'), 'text': PosixPath('out/text_encoder.xml')}
    """
    with tempfile.TemporaryDirectory(prefix="anyclip-openvino-") as tmp:
        return onnx_to_openvino(export_onnx(model, tmp, batch=batch, layout=layout), folder)


def onnx_to_openvino(onnx_paths: dict, folder: str | os.PathLike) -> dict:
    """Convert ``{"image": path.onnx, "text": path.onnx}`` to OpenVINO IR files in ``folder`` (float32 weights).

    Example:
        >>> onnx_to_openvino({"image": "onnx/image_encoder.onnx"}, "out/")  # doctest: +SKIP
        {'image': PosixPath('out/image_encoder.xml')}
    """
    import openvino
    paths = {}
    for tower, onnx_path in onnx_paths.items():
        paths[tower] = Path(folder) / OPENVINO_FILES[tower]
        openvino.save_model(openvino.convert_model(str(onnx_path)), str(paths[tower]), compress_to_fp16=False)
    return paths


def openvino_runner(path: str | os.PathLike):
    """``inputs (numpy) -> outputs (numpy)`` through an OpenVINO CPU compiled model in float32.

    Example:
        >>> openvino_runner("out/text_encoder.xml")(tokens).shape  # doctest: +SKIP
        (5, 512)
    """
    import openvino
    compiled = openvino.Core().compile_model(str(path), "CPU", RUNTIME_CONFIG)
    return lambda inputs: np.asarray(compiled(np.ascontiguousarray(inputs))[0]).copy()
