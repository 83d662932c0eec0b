"""Conversion: a model (name + pretrained weights) to an open_clip checkpoint folder or a Keras file.

``anyclip convert MODEL PRETRAINED OUT --to open_clip|keras`` on the command line.

Example:
    >>> from anyclip.export.convert import convert
    >>> convert("ViT-B-32", "laion2b_s34b_b79k", "vit-b-32/", to="open_clip")  # doctest: +SKIP
    PosixPath('vit-b-32/open_clip_model.safetensors')
"""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import atomic_write
from ..weights.export import save_open_clip_checkpoint

FORMATS = ("open_clip", "keras")
KERAS_SUFFIXES = (".keras", ".weights.h5")


def save_keras(model, out: str | os.PathLike) -> Path:
    """Save ``model`` atomically as a whole Keras model (``.keras``) or its weights alone (``.weights.h5``).

    A ``.keras`` file loads back with ``keras.saving.load_model`` (anyclip imported: its layers are registered);
    a ``.weights.h5`` file with ``model.load_weights`` on the same architecture.

    Example:
        >>> save_keras(model, "vit.keras")  # doctest: +SKIP
        >>> keras.saving.load_model("vit.keras").encode_image(images)  # doctest: +SKIP
    """
    out = Path(out)
    if out.name.endswith(".weights.h5"):
        return atomic_write(out, model.save_weights, suffix=".weights.h5")
    if out.suffix == ".keras":
        return atomic_write(out, model.save, suffix=".keras")
    raise ValueError(f"{out}: a Keras output must end with {' or '.join(KERAS_SUFFIXES)}")


def convert(model_name: str, pretrained: str | None, out: str | os.PathLike, to: str = "open_clip",
            cache_dir: str | None = None, precision: str = "fp32") -> Path:
    """Load ``model_name`` with ``pretrained`` weights and write it to ``out`` in format ``to``.

    ``to="open_clip"``: a folder with ``open_clip_model.safetensors`` and ``open_clip_config.json`` (open_clip
    loads it with ``create_model("local-dir:OUT")``), or a single ``.safetensors`` file. ``to="keras"``: ``OUT``
    ending in ``.keras`` or ``.weights.h5`` (see :func:`save_keras`). Returns the path written.

    Example:
        >>> convert("RN50", "openai", "rn50.keras", to="keras")  # doctest: +SKIP
        PosixPath('rn50.keras')
    """
    if to not in FORMATS:
        raise ValueError(f"unknown output format {to!r}; choose from {', '.join(FORMATS)}")
    if to == "keras" and not str(out).endswith(KERAS_SUFFIXES):
        raise ValueError(f"{out}: a Keras output must end with {' or '.join(KERAS_SUFFIXES)}")
    from ..factory import create_model
    model = create_model(model_name, pretrained, cache_dir=cache_dir, precision=precision)
    if to == "open_clip":
        return save_open_clip_checkpoint(model, out)
    return save_keras(model, out)
