"""``anyclip export``: a model's image and text encoders as ONNX files (optionally int8) with a manifest.

The export runs on the Keras backend its format needs (torch for ONNX). When this process already runs
Keras on another backend, the command runs itself again in a child process with ``KERAS_BACKEND`` set.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ..cli_args import batch_or_dynamic, existing_file
from ..errors import UsageError
from .options import (
    BACKEND_OF_FORMAT,
    FORMATS,
    LAYOUTS,
    QUANTIZATIONS,
    check_options,
    check_out_folder,
)


def register_export(subparsers) -> None:
    """Add the ``export`` command to ``anyclip``'s sub-command parsers.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="anyclip")
        >>> register_export(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["export", "ViT-B-32", "--out", "onnx/"]).format
        'onnx'
    """
    p = subparsers.add_parser("export", help="write the image and text encoders as ONNX (or torch.export, "
                                             "SavedModel, LiteRT, OpenVINO) files with a manifest, verified in "
                                             "their runtime")
    p.add_argument("model", help="architecture name, hf-hub:org/repo or local-dir:PATH")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", default=None, help="pretrained tag or checkpoint ('none': random weights)")
    weights.add_argument("--checkpoint", type=existing_file, default=None, help="a checkpoint file to load")
    p.add_argument("--format", choices=FORMATS, default="onnx", 
                   help="onnx: two ONNX encoders + manifest (default); torch: two torch.export programs (.pt2); "
                        "saved_model: two TensorFlow SavedModels; litert: two .tflite files; openvino: two "
                        "OpenVINO IR models (.xml/.bin) (each with a manifest); hf: a transformers CLIPModel folder "
                        "(SiglipModel for SigLIP)")
    p.add_argument("--out", required=True, help="output folder (must not exist, or be empty)")
    p.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                   help="int8: onnxruntime dynamic quantization (int8 weights, activations quantized at run time); "
                        "int4: 4-bit weights in blocks of 16 (MatMulNBits), float32 products")
    p.add_argument("--batch", type=batch_or_dynamic, default="dynamic", metavar="dynamic|N",
                   help="batch axis of the artifacts: 'dynamic' (default) or a fixed size")
    p.add_argument("--layout", choices=LAYOUTS, default="NCHW", help="image input layout (default: NCHW)")
    p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    p.set_defaults(run=run_export)


def _argv(args) -> list[str]:
    argv = ["export", args.model, "--format", args.format, "--out", str(args.out), "--batch", str(args.batch),
            "--layout", args.layout]
    for flag in ("pretrained", "checkpoint", "quantize", "cache_dir"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return argv


def run_export(args) -> int:
    """Run ``anyclip export`` for parsed ``args``.

    Example:
        >>> from anyclip.cli import main
        >>> main(["export", "ViT-B-32", "--pretrained", "openai", "--out", "vit-b-32-onnx"])  # doctest: +SKIP
        0
    """
    check_options(args.format, args.quantize, args.batch, args.layout)  # --batch: parsed by its type
    check_out_folder(args.out)
    if args.pretrained is None and args.checkpoint is None and \
            not args.model.startswith(("hf-hub:", "local-dir:")):
        raise UsageError(f"give the weights of {args.model} with --pretrained TAG or --checkpoint FILE "
                         f"(--pretrained none exports random weights)")
    backend = BACKEND_OF_FORMAT[args.format]
    keras = sys.modules.get("keras")
    if backend and keras is not None and keras.backend.backend() != backend:
        env = {**os.environ, "KERAS_BACKEND": backend}
        return subprocess.run([sys.executable, "-m", "anyclip.cli", *_argv(args)], env=env).returncode
    if backend and keras is None:
        os.environ["KERAS_BACKEND"] = backend  # keras is not imported yet: it starts on this backend
    from .deploy import export_model
    pretrained = args.checkpoint or (None if args.pretrained in (None, "none") else args.pretrained)
    out = export_model(args.model, pretrained, args.out, format=args.format, quantize=args.quantize,
                       batch=args.batch, layout=args.layout, cache_dir=args.cache_dir)
    print(f"wrote {out}")
    return 0


__all__ = ["register_export", "run_export"]
