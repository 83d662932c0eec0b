"""``anyclip export``: a model's encoders as deployable artifacts in a folder, verified before it appears.

The folder is built under a temporary name beside ``out`` and renamed to ``out`` only after every artifact
ran in its own runtime and matched the Keras model (see :mod:`anyclip.export.verify`): a failed or interrupted
export leaves nothing behind.

Example:
    >>> export_model("ViT-B-32", "openai", "vit-b-32-onnx/", format="onnx")  # doctest: +SKIP
    PosixPath('vit-b-32-onnx')
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UsageError
from . import verify
from .manifest import build_manifest, write_manifest
from .options import BACKEND_OF_FORMAT, check_options, check_out_folder


def _keras_features(model, images, tokens) -> dict:
    import keras
    return {"image": keras.ops.convert_to_numpy(model.encode_image(images, normalize=True)),
            "text": keras.ops.convert_to_numpy(model.encode_text(tokens.astype(np.int32), normalize=True))}


def in_batches(run, inputs: np.ndarray, batch) -> np.ndarray:
    """``run`` over ``inputs`` in fixed batches (the last one padded by repetition) when ``batch`` is an int."""
    if batch == "dynamic":
        return run(inputs)
    outputs = []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start:start + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        outputs.append(run(padded)[:len(chunk)])
    return np.concatenate(outputs)


def export_model(model_name: str, pretrained: str | None, out: str | os.PathLike, format: str = "onnx",
                 quantize: str | None = None, batch: str | int = "dynamic", layout: str = "NCHW",
                 cache_dir: str | None = None) -> Path:
    """Create ``model_name`` with ``pretrained`` weights and export it to the folder ``out`` (see :func:`export`).

    MobileCLIP (FastViT) image towers are re-parameterised first (the same outputs, faster inference).

    Example:
        >>> export_model("ViT-B-32", "openai", "vit-b-32-onnx/")  # doctest: +SKIP
        PosixPath('vit-b-32-onnx')
    """
    batch = check_options(format, quantize, batch, layout)
    out = check_out_folder(out)
    from ..factory import create_model, get_tokenizer
    model = create_model(model_name, pretrained, cache_dir=cache_dir)
    if type(model.config.vision_cfg).__name__ == "TimmFastViTConfig":  # MobileCLIP: its fast inference form
        from ..weights.reparameterize import reparameterize
        model = reparameterize(model)
    tokenizer = get_tokenizer(model_name, cache_dir=cache_dir)
    return export(model, tokenizer, out, format=format, quantize=quantize, batch=batch, layout=layout,
                  model_name=model_name, pretrained=pretrained)


def export(model, tokenizer, out: str | os.PathLike, format: str = "onnx", quantize: str | None = None,
           batch: str | int = "dynamic", layout: str = "NCHW", model_name: str | None = None,
           pretrained: str | None = None) -> Path:
    """Export ``model``'s image and text encoders, ``tokenizer``'s files and ``manifest.json`` to the folder ``out``.

    ``tokenizer=None``: the text encoder is verified on random token ids and no tokenizer files are written.

    Every artifact is run in its runtime on photos and captions first: float32 outputs must match the Keras
    model's unit vectors to 1e-4, quantized ones reach cosine similarity 0.99, else
    :class:`~anyclip.export.verify.ExportVerificationError` and no folder. ONNX needs the torch backend.

    Example:
        >>> model = anyclip.create_model("ViT-B-32", "openai")  # doctest: +SKIP
        >>> export(model, anyclip.get_tokenizer("ViT-B-32"), "vit-b-32-onnx/")  # doctest: +SKIP
        PosixPath('vit-b-32-onnx')
    """
    import keras
    batch = check_options(format, quantize, batch, layout)
    out = check_out_folder(out)
    backend = BACKEND_OF_FORMAT[format]
    if backend and keras.backend.backend() != backend:
        raise UsageError(f"{format} export runs on the {backend} Keras backend, this process uses "
                         f"{keras.backend.backend()}: set KERAS_BACKEND={backend}")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        if format == "hf":
            _write_hf(model, tokenizer, work)
        else:
            write_manifest(work, _write_artifacts(model, tokenizer, work, format, quantize, batch, layout,
                                                  model_name, pretrained))
        os.chmod(work, 0o755)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def _vocab_size(model) -> int:
    return int(getattr(model.text, "vocab_size", None) or model.config.text_cfg.vocab_size)


def _write_hf(model, tokenizer, work: Path) -> None:
    """A transformers CLIPModel (SiglipModel for models with a logit bias) folder, loaded back with transformers
    and compared (1e-5) before it is kept."""
    import torch
    import transformers

    from .hf_siglip import check_siglip_logits, save_hf_siglip
    from .hf_transformers import save_hf_clip
    siglip = model.config.init_logit_bias is not None
    (save_hf_siglip if siglip else save_hf_clip)(model, tokenizer, work)
    images, tokens = verify.sample_inputs(model.preprocess_cfg, tokenizer, model.context_length)
    expected = _keras_features(model, images, tokens)
    hf_tokens = transformers.AutoTokenizer.from_pretrained(str(work))(
        list(verify.CAPTIONS), padding="max_length", truncation=True, max_length=model.context_length)["input_ids"]
    if not np.array_equal(np.asarray(hf_tokens), tokens):
        raise verify.ExportVerificationError("the transformers tokenizer written gives other token ids than the "
                                             "model's tokenizer (nothing written)")
    hf = (transformers.SiglipModel if siglip else transformers.CLIPModel).from_pretrained(str(work)).eval()
    with torch.no_grad():
        image = hf.get_image_features(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
        text = hf.get_text_features(input_ids=torch.from_numpy(tokens))
    for what, ours, theirs in (("image", expected["image"], image), ("text", expected["text"], text)):
        theirs = getattr(theirs, "pooler_output", theirs)  # transformers 5 returns an output object
        verify.compare(f"{what} features (transformers {type(hf).__name__})", ours, theirs.numpy(),
                       max_abs=verify.HF_MAX_ABS)
    if siglip:
        check_siglip_logits(hf, model, images, tokens)


def _export_encoders(model, work: Path, format, quantize, batch, layout) -> tuple[dict, dict]:
    """Write the two encoders in ``format``; returns their paths and a runner per tower in its own runtime."""
    if format == "torch":
        from .torch_export import export_torch, torch_runner
        paths = export_torch(model, work, batch=batch, layout=layout)
        return paths, {tower: torch_runner(path) for tower, path in paths.items()}
    if format == "openvino":
        from .openvino_export import export_openvino, openvino_runner
        paths = export_openvino(model, work, batch=batch, layout=layout)
        return paths, {tower: openvino_runner(path) for tower, path in paths.items()}
    if format in ("saved_model", "litert"):
        from . import tensorflow_export as tfx
        write, runner = {"saved_model": (tfx.export_saved_model, tfx.saved_model_runner),
                         "litert": (tfx.export_litert, tfx.litert_runner)}[format]
        paths = write(model, work, batch=batch, layout=layout)
        return paths, {tower: runner(path) for tower, path in paths.items()}
    from .onnx import export_onnx, onnx_session, run_onnx
    paths = export_onnx(model, work, batch=batch, layout=layout)
    if quantize:
        from .quantization import quantize_onnx
        paths = {tower: quantize_onnx(path, mode=quantize) for tower, path in paths.items()}
    runners = {}
    for tower, path in paths.items():
        try:
            session = onnx_session(path)
        except Exception as error:  # onnxruntime's own errors (InvalidGraph, Fail) share no public base class
            raise verify.ExportVerificationError(
                f"{tower} encoder ({format}): onnxruntime cannot load the exported graph: "
                f"{' '.join(str(error).split())[:300]} (nothing written)") from error
        runners[tower] = lambda x, s=session: run_onnx(s, np.ascontiguousarray(x))
    return paths, runners


def _write_artifacts(model, tokenizer, work: Path, format, quantize, batch, layout, model_name, pretrained) -> dict:
    from .tokenizer_files import write_tokenizer
    images, tokens = verify.sample_inputs(model.preprocess_cfg, tokenizer, model.context_length, _vocab_size(model))
    expected = _keras_features(model, images, tokens)
    paths, runners = _export_encoders(model, work, format, quantize, batch, layout)
    inputs = {"image": images.transpose(0, 3, 1, 2) if layout == "NCHW" else images, "text": tokens}
    report = {}
    for tower, path in paths.items():
        actual = in_batches(runners[tower], inputs[tower], batch)
        what = f"{tower} encoder ({format}{', ' + quantize if quantize else ''})"
        if quantize:
            report[tower] = verify.compare(what, expected[tower], actual, max_abs=None,
                                           min_cosine=verify.QUANTIZED_MIN_COSINE)
        else:
            report[tower] = verify.compare(what, expected[tower], actual)
        report[tower]["samples"] = len(actual)
    tokenizer_files = [] if tokenizer is None else write_tokenizer(tokenizer, work, model.context_length)
    kind = {"NoneType": None, "CLIPTokenizer": "clip_bpe"}.get(type(tokenizer).__name__, "huggingface")
    pad_id = None if tokenizer is None else int(tokenizer.pad_token_id)
    manifest = build_manifest(model, model_name=model_name, pretrained=pretrained, format=format,
                              files={tower: path.name for tower, path in paths.items()}, layout=layout, batch=batch,
                              tokenizer_files=tokenizer_files, tokenizer_kind=kind, pad_id=pad_id,
                              quantize=quantize, verification=report)
    if format == "openvino":  # compile_model's configuration the verification used (float32, not bfloat16)
        from .openvino_export import RUNTIME_CONFIG
        manifest["runtime_config"] = dict(RUNTIME_CONFIG)
    return manifest
