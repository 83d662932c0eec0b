"""``anyclip convert``: a model and its weights as an open_clip checkpoint folder or a Keras file."""

from __future__ import annotations

from ..cli_args import output_target
from ..errors import UsageError


def register_convert(subparsers) -> None:
    """Add the ``convert`` command to ``anyclip``'s sub-command parsers.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="anyclip")
        >>> register_convert(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["convert", "ViT-B-32", "openai", "out/"]).to
        'open_clip'
    """
    p = subparsers.add_parser("convert",
                              help="write a model and its weights as an open_clip checkpoint or a Keras file")
    p.add_argument("model", help="architecture name, hf-hub:org/repo or local-dir:PATH (with --from hf: "
                                 "a transformers CLIPModel or SiglipModel folder)")
    p.add_argument("pretrained", nargs="?", default=None,
                   help="pretrained tag, checkpoint file or folder ('none': random weights)")
    p.add_argument("out", type=output_target(".safetensors", ".keras", ".weights.h5"), help="output: a folder or .safetensors (open_clip), .keras or .weights.h5 (keras)")
    p.add_argument("--to", choices=["open_clip", "keras"], default="open_clip",
                   help="open_clip: a checkpoint folder or .safetensors (default); keras: a .keras or .weights.h5 file")
    p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="the Keras model's dtype (--to keras); open_clip checkpoints are always float32")
    p.add_argument("--from", dest="source", choices=["anyclip", "hf"], default="anyclip",
                   help="anyclip: MODEL is a model name (default); hf: MODEL is a transformers CLIPModel or "
                        "SiglipModel folder")
    p.set_defaults(run=run_convert)


def run_convert(args) -> int:
    """Run ``anyclip convert`` for parsed ``args``.

    Example:
        >>> from anyclip.cli import main
        >>> main(["convert", "ViT-B-32", "openai", "vit-b-32.keras", "--to", "keras"])  # doctest: +SKIP
        0
    """
    from .convert import KERAS_SUFFIXES, convert
    if args.source == "hf":
        return _convert_from_hf(args, KERAS_SUFFIXES)
    if args.pretrained is None and not args.model.startswith(("hf-hub:", "local-dir:")):
        raise UsageError(f"give the weights to convert (a pretrained tag, a checkpoint file or "
                         f"folder) after {args.model}; 'none' converts random weights")
    pretrained = None if args.pretrained in (None, "none") else args.pretrained
    if args.to == "open_clip" and args.precision != "fp32":
        raise UsageError("open_clip checkpoints are written in float32; --precision applies to --to keras")
    if args.to == "keras" and not str(args.out).endswith(KERAS_SUFFIXES):
        raise UsageError(f"{args.out}: a Keras output (--to keras) must end with {' or '.join(KERAS_SUFFIXES)}")
    path = convert(args.model, pretrained, args.out, to=args.to, cache_dir=args.cache_dir, precision=args.precision)
    print(f"wrote {path}")
    return 0


def _convert_from_hf(args, keras_suffixes) -> int:
    """``anyclip convert --from hf FOLDER OUT``: a transformers CLIPModel / SiglipModel folder to open_clip or
    Keras (a SiglipModel's tokenizer files go into an open_clip folder too)."""
    from pathlib import Path
    if args.pretrained is not None:
        raise UsageError("with --from hf give the transformers folder and the output only: "
                         "anyclip convert --from hf FOLDER OUT")
    if not (Path(args.model) / "config.json").is_file():
        raise UsageError(f"{args.model}: no config.json; give a transformers CLIPModel or SiglipModel folder")
    if args.to == "keras" and not str(args.out).endswith(keras_suffixes):
        raise UsageError(f"{args.out}: a Keras output (--to keras) must end with {' or '.join(keras_suffixes)}")
    if args.to == "open_clip" and args.precision != "fp32":
        raise UsageError("open_clip checkpoints are written in float32; --precision applies to --to keras")
    import json

    from ..atomic import atomic_write_text
    from ..weights.export import save_open_clip_checkpoint
    from .convert import save_keras
    from .hf_siglip import load_hf_siglip
    from .hf_transformers import load_hf_clip
    model_type = json.loads((Path(args.model) / "config.json").read_text(encoding="utf-8")).get("model_type")
    load = {"clip": load_hf_clip, "siglip": load_hf_siglip}.get(model_type)
    if load is None:
        raise UsageError(f"{args.model}: model_type {model_type!r}; only transformers CLIPModel ('clip') and "
                         f"SiglipModel ('siglip') folders are read")
    model = load(args.model, precision=args.precision)
    path = save_open_clip_checkpoint(model, args.out) if args.to == "open_clip" else save_keras(model, args.out)
    if model_type == "siglip" and path.parent == Path(args.out):  # open_clip's local-dir: reads them there
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (Path(args.model) / name).is_file():
                atomic_write_text(Path(args.out) / name, (Path(args.model) / name).read_text(encoding="utf-8"))
    print(f"wrote {path}")
    return 0


__all__ = ["register_convert", "run_convert"]
