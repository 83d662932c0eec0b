"""``anyclip data``: make datasets (``anyclip data shapes``: the synthetic shapes set, as shards or CSV)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    """Add the ``data`` command (and its ``shapes`` sub-command) to ``anyclip``'s sub-command parsers.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="anyclip")
        >>> register(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["data", "shapes", "out/", "-n", "100"]).num_samples
        100
    """
    p = subparsers.add_parser("data", help="make datasets")
    data = p.add_subparsers(dest="dataset", required=True)
    p = data.add_parser("shapes", help="write the synthetic shapes dataset as WebDataset shards or CSV")
    p.add_argument("out", help="output folder")
    p.add_argument("--split", default="train", choices=["train", "val", "test", "test_heldout"])
    p.add_argument("-n", "--num-samples", type=int, default=10000)
    p.add_argument("--format", default="wds", choices=["wds", "csv"])
    p.add_argument("--image-format", default="jpg", choices=["jpg", "png"])
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--workers", type=int, default=1, help="processes drawing images (0: every CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--max-count", type=int, default=3)
    p.set_defaults(run=run_data_shapes)


def run_data_shapes(args) -> int:
    """Run ``anyclip data shapes`` for parsed ``args``.

    Example:
        >>> from anyclip.cli import main
        >>> main(["data", "shapes", "data/shapes/val", "--split", "val", "-n", "500"])  # doctest: +SKIP
        0
    """
    from .shapes import ShapesConfig
    from .shapes_io import make_shapes
    try:
        config = ShapesConfig(image_size=args.image_size, max_count=args.max_count, seed=args.seed)
        out = make_shapes(args.out, args.split, args.num_samples, args.format, config=config,
                          shard_size=args.shard_size, image_format=args.image_format, workers=args.workers)
    except ValueError as e:
        print(f"anyclip data shapes: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.num_samples} {args.split} samples to {out}")
    return 0


__all__ = ["register", "run_data_shapes"]
