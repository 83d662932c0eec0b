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

from .onnx import (
    IMAGE_INPUT,
    TEXT_INPUT,
    encoder_modules,
    example_inputs,
    traceable_ops,
)

IMAGE_FILE, TEXT_FILE = "image_encoder.pt2", "text_encoder.pt2"


def export_torch(model, folder: str | os.PathLike, batch: str | int = "dynamic", layout: str = "NCHW") -> dict:
    """Write ``image_encoder.pt2`` and ``text_encoder.pt2`` into ``folder``; returns ``{"image", "text"}`` paths.

    Example:
        >>> export_torch(model, "out/")  # doctest: +SKIP
        {'image': PosixPath('out/image_encoder.pt2'), 'text': PosixPath('out/text_encoder.pt2')}
    """
    import torch
    folder = Path(folder)
    image_module, text_module = encoder_modules(model, layout)
    dynamic = batch == "dynamic"
    pixels, tokens = example_inputs(model.image_size, model.context_length, 2 if dynamic else int(batch), layout)
    paths = {}
    for tower, module, example, name, filename in (("image", image_module, pixels, IMAGE_INPUT, IMAGE_FILE),
                                                   ("text", text_module, tokens, TEXT_INPUT, TEXT_FILE)):
        shapes = {name: {0: torch.export.Dim("batch")}} if dynamic else None
        with torch.no_grad(), traceable_ops():
            program = torch.export.export(module, (torch.from_numpy(example),), dynamic_shapes=shapes, strict=False)
        paths[tower] = folder / filename
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
