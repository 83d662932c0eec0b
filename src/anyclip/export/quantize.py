"""Quantization: int8 ONNX encoders (onnxruntime dynamic quantization) and the Keras model's own
``quantize`` (int8 weights and activations, int4 weights only).

Example:
    >>> quantize_onnx("out/image_encoder.onnx")  # doctest: +SKIP
    PosixPath('out/image_encoder.int8.onnx')
"""

from __future__ import annotations

import os
from pathlib import Path


def quantize_onnx(path: str | os.PathLike, replace: bool = True) -> Path:
    """Dynamically quantize an ONNX file to int8 weights (activations quantized per batch at run time).

    ``replace=True`` writes over ``path`` and returns it; else writes ``NAME.int8.onnx`` beside it.

    Example:
        >>> quantize_onnx("out/text_encoder.onnx", replace=False)  # doctest: +SKIP
        PosixPath('out/text_encoder.int8.onnx')
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    path = Path(path)
    target = path.with_name(path.stem + ".int8.onnx")
    quantize_dynamic(str(path), str(target), weight_type=QuantType.QInt8)
    if replace:
        os.replace(target, path)
        return path
    return target
