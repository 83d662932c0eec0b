"""The model flags every model-using command shares (``--model``, ``--pretrained``, ...) and loading from them.

``anyclip classify``, ``embed``, ``search`` and ``eval`` (and the Ray embedding actors) build their model
with :func:`load_model`; nothing heavy is imported until a model is loaded.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_model_arguments(parser)
    >>> args = parser.parse_args([])
    >>> args.model, pretrained_tag(args), model_spec(args)["precision"]
    ('anyclip-shapes', 'v1', 'fp32')
"""

from __future__ import annotations

import argparse
import sys

from .cli_args import positive_int

DEFAULT_MODEL = "anyclip-shapes"  # shipped inside the package: works offline
DEFAULT_PRETRAINED = "v1"
PRECISIONS = ("fp32", "float32", "tf32", "bf16", "pure_bf16", "fp16", "pure_fp16", "amp", "amp_fp16", "amp_bf16",
              "amp_bfloat16")  # factory.create_model's
MODEL_FLAGS = ("model", "pretrained", "checkpoint", "cache_dir", "precision")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--model``, ``--pretrained``, ``--checkpoint``, ``--cache-dir``, ``--batch-size`` and ``--precision``.

    Example:
        >>> parser = argparse.ArgumentParser(); add_model_arguments(parser)
        >>> parser.parse_args(["--model", "ViT-B-32"]).batch_size
        32
    """
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="architecture name (see anyclip models), hf-hub:org/repo or local-dir:PATH")
    p.add_argument("--pretrained", default=None,
                   help=f"pretrained tag, checkpoint file or folder (default {DEFAULT_PRETRAINED} for {DEFAULT_MODEL})")
    p.add_argument("--checkpoint", default=None, help="an open_clip checkpoint file to load (same as --pretrained PATH)")
    p.add_argument("--resize-pos-embed", action="store_true",
                   help="load weights made for another image size or context length, their positional embeddings "
                        "interpolated (without it such weights are an error)")
    p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images or texts per batch (default 32)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="the model's dtype (default fp32: exact float32 products, also on GPUs; tf32: float32 "
                        "weights with TF32 products on GPUs)")


def pretrained_tag(args) -> str | None:
    """The weights the flags ask for: ``--checkpoint``, else ``--pretrained``, else ``v1`` for the default model.

    Example:
        >>> pretrained_tag(argparse.Namespace(model="ViT-B-32", pretrained="openai", checkpoint=None))
        'openai'
    """
    tag = args.checkpoint or args.pretrained
    return DEFAULT_PRETRAINED if tag is None and args.model == DEFAULT_MODEL else tag


def model_spec(args) -> dict:
    """The model flags of ``args`` as a plain dict (for :func:`load_model` in another process).

    Example:
        >>> model_spec(argparse.Namespace(model="RN50", pretrained="openai", checkpoint=None, cache_dir=None,
        ...                               precision="fp32", batch_size=8))
        {'model': 'RN50', 'pretrained': 'openai', 'checkpoint': None, 'cache_dir': None, 'precision': 'fp32', \
'resize_pos_embed': False}
    """
    return {**{k: getattr(args, k) for k in MODEL_FLAGS}, "resize_pos_embed": getattr(args, "resize_pos_embed", False)}


def load_model(model: str = DEFAULT_MODEL, pretrained: str | None = None, checkpoint: str | None = None,
               cache_dir: str | None = None, precision: str = "fp32", resize_pos_embed: bool = False,
               encodes_images: bool = True):
    """``(model, preprocess, tokenizer)`` for the model flags; warns on stderr when the weights will be random
    and when a low ``precision`` is not faster than fp32 on this backend and device (:mod:`anyclip.precision_notice`).

    A bf16 job that encodes images, on a CPU with bf16 instructions where nobody chose the backend and Keras is
    not imported yet, runs on the torch backend and says so (:func:`anyclip.precision_notice.route_cpu_bf16`).

    Example:
        >>> model, preprocess, tokenizer = load_model("anyclip-shapes")  # doctest: +SKIP
    """
    from .precision_notice import notice_for_current_backend
    choose_backend_for(precision, encodes_images)
    from .factory import create_model_and_transforms, get_tokenizer, list_models
    from .weights.pretrained import list_pretrained_tags_by_model
    spec = argparse.Namespace(model=model, pretrained=pretrained, checkpoint=checkpoint)
    tag = pretrained_tag(spec)
    if tag is None and model in list_models():  # an unknown name is reported by create_model, with no warning
        tags = list_pretrained_tags_by_model(model)
        print(f"anyclip: warning: no --pretrained given, so {model} has random weights"
              + (f" (its tags: {', '.join(tags)})" if tags else ""), file=sys.stderr)
    net, _, preprocess = create_model_and_transforms(model, tag, cache_dir=cache_dir, precision=precision,
                                                     resize_pos_embed=resize_pos_embed)
    notice = notice_for_current_backend(precision)  # a low precision that is not faster here says so
    if notice:
        print(notice, file=sys.stderr)
    return net, preprocess, get_tokenizer(model, cache_dir=cache_dir)


def choose_backend_for(precision: str, encodes_images: bool = True) -> None:
    """Before Keras is imported: move a bf16 job that encodes images to the backend that runs bf16 fast on this
    CPU, saying so on stderr (:func:`anyclip.precision_notice.route_cpu_bf16`); otherwise nothing.

    Example:
        >>> choose_backend_for("fp32")
    """
    import anyclip

    from .precision_notice import route_cpu_bf16
    line = route_cpu_bf16(precision, anyclip.backend_choice().reason) if encodes_images else None
    if line:
        print(line, file=sys.stderr)


def load_model_from_args(args, encodes_images: bool = True):
    """:func:`load_model` with the flags of parsed ``args`` (see :func:`add_model_arguments`).

    Example:
        >>> model, preprocess, tokenizer = load_model_from_args(parser.parse_args([]))  # doctest: +SKIP
    """
    return load_model(**model_spec(args), encodes_images=encodes_images)


__all__ = ["DEFAULT_MODEL", "DEFAULT_PRETRAINED", "MODEL_FLAGS", "PRECISIONS", "add_model_arguments",
           "choose_backend_for", "load_model", "load_model_from_args", "model_spec", "pretrained_tag"]
