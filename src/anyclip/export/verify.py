"""Checking an exported artifact against the Keras model it came from, on photos and captions.

The photos are scikit-image's astronaut, coffee and chelsea when scikit-image is installed, and two images
of anyclip's shapes data set always; the captions are fixed. Outputs are compared as unit vectors.

Example:
    >>> images, tokens = sample_inputs(model.preprocess_cfg, tokenizer)  # doctest: +SKIP
    >>> compare("image", keras_features, onnx_features, max_abs=1e-4)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

CAPTIONS = ("a photo of an astronaut", "a cup of coffee on a saucer", "a cat lying on a rug",
            "two red triangles on a grey background", "")
FP32_MAX_ABS = 1e-4  # largest |difference| of unit vectors for a float32 artifact
HF_MAX_ABS = 1e-5  # the same network in transformers (torch, float32)
QUANTIZED_MIN_COSINE = 0.99  # least cosine similarity of a quantized artifact's vectors to the float32 model's


class ExportVerificationError(DataError):
    """An artifact's outputs are not the Keras model's (exit status 1; nothing is left at the output path).

    Example:
        >>> str(ExportVerificationError("image encoder (onnx): max |difference| 0.2 > 1e-4"))
        'image encoder (onnx): max |difference| 0.2 > 1e-4'
    """


def sample_photos() -> list:
    """PIL images to verify with: scikit-image's photos (when installed) and two rendered shapes images."""
    from PIL import Image

    from ..data.shapes import ShapesDataset
    photos = []
    try:
        import skimage.data
        photos = [Image.fromarray(getattr(skimage.data, name)()) for name in ("astronaut", "coffee", "chelsea")]
    except ImportError:
        pass
    shapes = ShapesDataset(split="test", size=2)
    return photos + [shapes[i][0] for i in range(len(shapes))]


def sample_inputs(preprocess_cfg, tokenizer, context_length: int,
                  vocab_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images [n, h, w, 3] float32, preprocessed; tokens [m, context_length] int64)`` for verification.

    Without a ``tokenizer``, the tokens are random ids below ``vocab_size`` (fixed seed).

    Example:
        >>> images, tokens = sample_inputs(model.preprocess_cfg, anyclip.get_tokenizer("ViT-B-32"), 77)  # doctest: +SKIP
    """
    from ..transforms import image_transform
    preprocess = image_transform(preprocess_cfg, output="numpy")
    images = np.stack([np.asarray(preprocess(photo), dtype=np.float32) for photo in sample_photos()])
    if tokenizer is None:
        tokens = np.random.default_rng(0).integers(1, vocab_size, (len(CAPTIONS), context_length))
    else:
        tokens = np.asarray(tokenizer(list(CAPTIONS), context_length=context_length))
    return images, np.asarray(tokens, dtype=np.int64)


def unit(x) -> np.ndarray:
    """Rows of ``x`` scaled to length 1 (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def compare(what: str, expected, actual, max_abs: float | None = FP32_MAX_ABS,
            min_cosine: float | None = None) -> dict:
    """Raise :class:`ExportVerificationError` unless ``actual`` matches ``expected`` as unit vectors; returns
    ``{"max_abs_diff", "min_cosine"}``.

    Example:
        >>> compare("image encoder", np.eye(2), np.eye(2))["max_abs_diff"]
        0.0
    """
    expected, actual = unit(expected), unit(actual)
    if expected.shape != actual.shape:
        raise ExportVerificationError(f"{what}: output shape {actual.shape}, expected {expected.shape}")
    diff = float(np.abs(expected - actual).max()) if expected.size else 0.0
    cosine = float((expected * actual).sum(-1).min()) if expected.size else 1.0
    if not np.isfinite(actual).all():
        raise ExportVerificationError(f"{what}: the artifact's outputs are not finite")
    if max_abs is not None and diff > max_abs:
        raise ExportVerificationError(f"{what}: max |difference| {diff:.3g} > {max_abs:g} on unit vectors; "
                                      f"the artifact does not compute the model (nothing written)")
    if min_cosine is not None and cosine < min_cosine:
        raise ExportVerificationError(f"{what}: cosine similarity {cosine:.4f} < {min_cosine} to the float32 "
                                      f"model; this model does not quantize well (nothing written)")
    return {"max_abs_diff": diff, "min_cosine": cosine}
