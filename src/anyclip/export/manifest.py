"""``manifest.json``: everything a consumer of exported encoders needs besides the files themselves.

Example:
    >>> import json
    >>> manifest = json.load(open("out/manifest.json"))  # doctest: +SKIP
    >>> manifest["image_encoder"]["input"], manifest["preprocess"]["size"]  # doctest: +SKIP
    ('pixel_values', [224, 224])
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def _scalar(model, name: str) -> float | None:
    import keras
    weight = getattr(model, name, None)
    return None if weight is None else float(np.asarray(keras.ops.convert_to_numpy(weight), dtype=np.float64))


def build_manifest(model, *, model_name: str, pretrained: str | None, format: str, files: dict, layout: str,
                   batch: str | int, tokenizer_files: list[str], tokenizer_kind: str, pad_id: int,
                   quantize: str | None, verification: dict, input_dtypes: dict | None = None) -> dict:
    """The manifest of an export: encoders (file, input/output names, shapes, dtypes), preprocessing,
    tokenizer, embedding width, logit scale/bias, provenance and the verification figures.

    Example:
        >>> build_manifest(model, model_name="ViT-B-32", ...)["embedding_width"]  # doctest: +SKIP
        512
    """
    from .. import __version__
    cfg = model.preprocess_cfg
    h, w = cfg.hw
    rows = "batch" if batch == "dynamic" else int(batch)
    image_shape = [rows, 3, h, w] if layout == "NCHW" else [rows, h, w, 3]
    dtypes = {"image": "float32", "text": "int64", **(input_dtypes or {})}
    scale = _scalar(model, "logit_scale")
    return {
        "manifest_version": MANIFEST_VERSION,
        "format": format,
        "quantization": quantize,
        "model": model_name,
        "pretrained": pretrained,
        "anyclip_version": __version__,
        "image_encoder": {"file": files["image"], "input": files.get("image_input", "pixel_values"),
                          "output": files.get("image_output", "image_embeds"), "layout": layout,
                          "shape": image_shape, "dtype": dtypes["image"]},
        "text_encoder": {"file": files["text"], "input": files.get("text_input", "input_ids"),
                         "output": files.get("text_output", "text_embeds"),
                         "shape": [rows, model.context_length], "dtype": dtypes["text"]},
        "outputs_normalized": True,
        "embedding_width": int(model.config.embed_dim),
        "logit_scale": None if scale is None else float(np.exp(scale)),
        "logit_bias": _scalar(model, "logit_bias"),
        "preprocess": {"size": [h, w], "mean": list(cfg.mean), "std": list(cfg.std),
                       "interpolation": cfg.interpolation, "resize_mode": cfg.resize_mode,
                       "crop": "center", "fill_color": cfg.fill_color, "pixel_scale": "0-1 (divide uint8 by 255)",
                       "channels": "RGB"},
        "tokenizer": {"kind": tokenizer_kind, "files": tokenizer_files, "context_length": model.context_length,
                      "pad_id": pad_id},
        "verification": verification,
    }


def write_manifest(folder: str | os.PathLike, manifest: dict) -> Path:
    """Write ``manifest`` as ``folder/manifest.json`` (atomically)."""
    return atomic_write_text(Path(folder) / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of an export folder.

    Example:
        >>> read_manifest("out/")["format"]  # doctest: +SKIP
        'onnx'
    """
    return json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
