"""The choices of ``anyclip export`` and their checks (no heavy imports: the CLI parser reads them).

Example:
    >>> check_options("onnx", None, 8)
    8
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError

# torch: torch.export programs (.pt2); saved_model / litert: TensorFlow; openvino: OpenVINO IR (.xml/.bin);
# hf: a transformers CLIPModel (or SiglipModel) folder
FORMATS = ("onnx", "torch", "saved_model", "litert", "openvino", "hf")
QUANTIZATIONS = ("int8", "int4")  # float8: no CPU runtime computes in it (README, Quantization)
LAYOUTS = ("NCHW", "NHWC")
BACKEND_OF_FORMAT = {"onnx": "torch", "torch": "torch", "saved_model": "tensorflow", "litert": "tensorflow",
                     "openvino": "torch", "hf": None}  # the Keras backend each format is exported from (None: any)


def check_out_folder(out: str | os.PathLike) -> Path:
    """``out`` as a Path; a usage error when it is a file or a folder that is not empty.

    Example:
        >>> check_out_folder("new-folder/")
        PosixPath('new-folder')
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: already exists and is not an empty folder; choose a new --out or remove it")
    return out


def check_options(format: str, quantize: str | None, batch, layout: str = "NCHW") -> str | int:
    """Validate the export options of the Python API; returns ``batch`` (``"dynamic"`` or a positive int).

    The command line parses ``--batch`` with :func:`anyclip.cli_args.batch_or_dynamic` before this runs.

    Example:
        >>> check_options("onnx", "int8", "dynamic")
        'dynamic'
    """
    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    if quantize not in (None, *QUANTIZATIONS):
        raise UsageError(f"unknown quantization {quantize!r}; choose from {', '.join(QUANTIZATIONS)}")
    if quantize and format != "onnx":
        raise UsageError(f"--quantize applies to --format onnx; {format} artifacts keep the float32 weights "
                         f"(anyclip.export.quantize quantizes the Keras model itself)")
    if layout not in LAYOUTS:
        raise UsageError(f"unknown image layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if batch != "dynamic" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise UsageError(f"batch={batch!r}: give 'dynamic' or a whole number of at least 1")
    return batch
