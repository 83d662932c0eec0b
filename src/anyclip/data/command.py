"""``anyclip data``: make datasets (``anyclip data shapes``: the synthetic shapes set, as shards or CSV)."""

from __future__ import annotations

from ..cli_args import int_range, non_negative_int, output_target, positive_int
from ..errors import UsageError


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
    p.add_argument("out", type=output_target(), help="output folder")
    p.add_argument("--split", default="train", choices=["train", "val", "test", "test_heldout"],
                   help="which split to draw (default train)")
    p.add_argument("-n", "--num-samples", type=positive_int, default=10000, help="images to draw (default 10000)")
    p.add_argument("--format", default="wds", choices=["wds", "csv"],
                   help="WebDataset .tar shards (default) or image files with a CSV")
    p.add_argument("--image-format", default="jpg", choices=["jpg", "png"], help="image file format (default jpg)")
    p.add_argument("--shard-size", type=positive_int, default=1000, help="samples per .tar shard (default 1000)")
    p.add_argument("--workers", type=non_negative_int, default=1, help="processes drawing images (0: every CPU)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument("--image-size", type=int_range(16, 1024), default=64, help="image side in pixels, 16 to 1024")
    p.add_argument("--max-count", type=int_range(1, 4), default=3, help="most copies of the shape per image, 1 to 4")
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
    except ValueError as e:  # a value given from Python that the command line's types would have refused
        raise UsageError(str(e)) from None
    out = make_shapes(args.out, args.split, args.num_samples, args.format, config=config,
                      shard_size=args.shard_size, image_format=args.image_format, workers=args.workers)
    print(f"wrote {args.num_samples} {args.split} samples to {out}")
    return 0


__all__ = ["register", "run_data_shapes"]
