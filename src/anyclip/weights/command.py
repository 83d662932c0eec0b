"""``anyclip models``: the architectures anyclip ships and their pretrained tags."""

from __future__ import annotations


def register_models(subparsers) -> None:
    """Add the ``models`` command to ``anyclip``'s sub-command parsers.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="anyclip")
        >>> register_models(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["models", "--pretrained-only"]).pretrained_only
        True
    """
    p = subparsers.add_parser("models", help="list model architectures and their pretrained tags")
    p.add_argument("--pretrained-only", action="store_true", help="print one model/tag pair per line")
    p.set_defaults(run=run_models)


def run_models(args) -> int:
    """Run ``anyclip models``: one architecture per line with its tags (or model/tag pairs).

    Example:
        >>> from anyclip.cli import main
        >>> main(["models", "--pretrained-only"])  # doctest: +SKIP
        0
    """
    from ..models.config import builtin_config_names as list_models
    from .pretrained import list_pretrained, list_pretrained_tags_by_model
    if args.pretrained_only:
        for model, tag in list_pretrained():
            print(f"{model}\t{tag}")
        return 0
    for name in list_models():
        tags = list_pretrained_tags_by_model(name)
        print(f"{name}\t{', '.join(tags) if tags else '-'}")
    return 0


__all__ = ["register_models", "run_models"]
