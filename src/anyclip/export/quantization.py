"""Quantization: int8 and int4 ONNX encoders (onnxruntime's dynamic and block-wise weight-only quantizers) and
the Keras model's own ``quantize`` (int8 weights and activations, int4 weights only).

Example:
    >>> quantize_onnx("out/image_encoder.onnx")  # doctest: +SKIP
    PosixPath('out/image_encoder.int8.onnx')
"""

from __future__ import annotations

import os
from pathlib import Path

from anyclip.export.verify import QUANTIZED_MIN_COSINE

ONNX_MODES = ("int8", "int4")


def quantize_onnx(path: str | os.PathLike, replace: bool = True, mode: str = "int8") -> Path:
    """Quantize an ONNX file's weights with onnxruntime's own quantizers.

    ``int8``: dynamic quantization (int8 weights, activations quantized per batch at run time, integer matrix
    products). ``int4``: weight-only, blocks of 16 symmetric 4-bit values with a float scale each, for every
    MatMul (``MatMulNBits``) and the token embedding (``GatherBlockQuantized``); products stay float32 and the
    files shrink about 5x (on the shipped model blocks of 32 lost 2 points of shapes accuracy, blocks of 16 none).
    ``replace=True`` writes over ``path`` and returns it; else writes ``NAME.MODE.onnx`` beside it.

    Example:
        >>> quantize_onnx("out/text_encoder.onnx", replace=False)  # doctest: +SKIP
        PosixPath('out/text_encoder.int8.onnx')
    """
    path = Path(path)
    if mode not in ONNX_MODES:
        raise ValueError(f"mode must be one of {ONNX_MODES}, got {mode!r}")
    target = path.with_name(f"{path.stem}.{mode}.onnx")
    if mode == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(str(path), str(target), weight_type=QuantType.QInt8)
    else:
        _quantize_int4(path, target)
    if replace:
        os.replace(target, path)
        return path
    return target


def _quantize_int4(path: Path, target: Path) -> None:
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    config = DefaultWeightOnlyQuantConfig(block_size=16, is_symmetric=True, op_types_to_quantize=("MatMul", "Gather"),
                                          quant_axes=(("MatMul", 0), ("Gather", 1)))
    quantizer = MatMulNBitsQuantizer(onnx.load(str(path)), algo_config=config)
    logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = logger.level
    logger.setLevel(logging.ERROR)  # one INFO line per node, and a warning that it raises the opset to 21 (needed)
    try:
        quantizer.process()
    finally:
        logger.setLevel(level)
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)


KERAS_MODES = ("int8", "int4")


def quantize(model, mode: str = "int8", tokenizer=None, min_cosine: float = QUANTIZED_MIN_COSINE) -> dict:
    """Quantize an anyclip Keras model in place with Keras' own quantization and check it stayed close.

    ``int8``: int8 weights and activations (quantized per call) in every Linear layer and the token
    embedding; ``int4``: int4 weights only. The image (and, given ``tokenizer``, text) embeddings of the
    verification photos and captions must keep cosine similarity ``min_cosine`` to the float model's, else
    :class:`~anyclip.export.verify.ExportVerificationError` (the model is quantized by then: recreate it).
    Returns ``{"layers": number quantized, "image": {...}, "text": {...}}`` (see ``verify.compare``).

    anyclip's ``Linear`` is a ``keras.layers.Dense`` subclass (a fused torch bias add); Keras refuses
    subclasses by default, so each is quantized with ``type_check=False`` (its ``call`` defers to Dense's
    once quantized).

    Example:
        >>> model = anyclip.create_model("anyclip-shapes", "v1")  # doctest: +SKIP
        >>> quantize(model, "int8")["layers"]  # doctest: +SKIP
        33
    """
    import warnings

    import keras

    from .verify import compare, sample_inputs
    if mode not in KERAS_MODES:
        raise ValueError(f"mode must be one of {KERAS_MODES}, got {mode!r}")
    if tokenizer is not None:
        images, tokens = sample_inputs(model.preprocess_cfg, tokenizer, model.context_length)
        tokens = tokens.astype("int32")
    else:
        from ..transforms import image_transform
        from .verify import sample_photos
        preprocess = image_transform(model.preprocess_cfg, output="numpy")
        images, tokens = [preprocess(p) for p in sample_photos()], None

    def embeddings():
        for tower in (model.visual, model.text):  # anyclip.runtime.compiled caches a function per tower
            tower.__dict__.pop("_anyclip_compiled", None)
        image = keras.ops.convert_to_numpy(model.encode_image(images, normalize=True))
        text = None if tokens is None else keras.ops.convert_to_numpy(model.encode_text(tokens, normalize=True))
        return image, text
    before = embeddings()
    with warnings.catch_warnings():  # layers without a quantized form (LayerNorm, Conv2D) are skipped
        warnings.simplefilter("ignore")
        model.quantize(mode, type_check=False)
    after = embeddings()
    report = {"layers": sum(1 for layer in model._flatten_layers() if getattr(layer, "quantization_mode", None))}
    for tower, ours, theirs in zip(("image", "text"), before, after):
        if ours is not None:
            report[tower] = compare(f"{tower} embeddings ({mode})", ours, theirs, max_abs=None, min_cosine=min_cosine)
    return report
