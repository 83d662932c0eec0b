"""``torch.export`` artifacts: each encoder as an ``ExportedProgram`` saved with ``torch.export.save`` (``.pt2``),
run with ``torch.export.load(path).module()`` and no anyclip or Keras.

The trace is the one the ONNX route makes (:func:`anyclip.export.onnx.encoder_modules` on the torch backend),
saved before any ONNX translation.

Example:
    >>> paths = export_torch(model, "out/")  # doctest: +SKIP
    >>> torch.export.load(paths["image"]).module()(pixels)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .onnx import traceable_ops, traced_encoders

IMAGE_FILE, TEXT_FILE = "image_encoder.pt2", "text_encoder.pt2"


def export_torch(model, folder: str | os.PathLike, batch: str | int = "dynamic", layout: str = "NCHW") -> dict:
    """Write ``image_encoder.pt2`` and ``text_encoder.pt2`` into ``folder``; returns ``{"image", "text"}`` paths.

    Example:
        >>> export_torch(model, "out/")  # doctest: +SKIP
        {'image': PosixPath('out/image_encoder.pt2'), 'text': PosixPath('out/text_encoder.pt2')}
    """
    import torch
    folder = Path(folder)
    files = {"image": IMAGE_FILE, "text": TEXT_FILE}
    paths = {}
    for tower, (module, example, _, shapes) in traced_encoders(model, batch, layout).items():
        with torch.no_grad(), traceable_ops():
            program = torch.export.export(module, (example,), dynamic_shapes=shapes, strict=False)
        paths[tower] = folder / files[tower]
        torch.export.save(program, str(paths[tower]))
    return paths


def torch_runner(path: str | os.PathLike):
    """A function ``inputs (numpy) -> outputs (numpy)`` running a saved encoder with ``torch.export.load``."""
    import torch
    module = torch.export.load(str(path)).module()

    def run(inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(inputs))).numpy()
    return run
