"""``anyclip train`` and ``anyclip plot``: the flags and the run are :mod:`anyclip.train.loop`'s and
:mod:`anyclip.train.plot`'s; this module only registers them."""

from __future__ import annotations

from ..cli_args import existing_path, output_file, positive_int
from ..errors import DataError, UsageError
from ..extras import require_extras


def register(subparsers) -> None:
    """Add the ``train`` and ``plot`` commands to ``anyclip``'s sub-command parsers.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="anyclip")
        >>> register(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["plot", "."]).output  # ".": a run folder that exists
        'curves.png'
    """
    from .loop import add_train_arguments
    p = subparsers.add_parser("train", help="train or fine-tune a CLIP model on image-caption data")
    add_train_arguments(p)
    p.set_defaults(run=run_train)

    p = subparsers.add_parser("plot", help="draw loss, learning rate, temperature and eval curves of training runs")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", type=existing_path,
                   help="run folder(s) with train.jsonl (or the file itself)")
    p.add_argument("--output", "-o", default="curves.png", type=output_file(".png", ".pdf", ".svg"),
                   help="image to write: .png, .pdf or .svg (default curves.png)")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--dpi", type=positive_int, default=100, help="resolution of a .png (default 100)")
    p.set_defaults(run=run_plot)


def run_train(args) -> int:
    """Run ``anyclip train`` for parsed ``args`` (:func:`anyclip.train.loop.run_train_command`).

    Example:
        >>> from anyclip.cli import main
        >>> main(["train", "--train-data", "data/train.csv", "--epochs", "1"])  # doctest: +SKIP
        0
    """
    if "tensorboard" in str(getattr(args, "report_to", "")):
        require_extras(["tensorboardX"], "--report-to tensorboard")  # before any data or model is read
    from .loop import run_train_command
    try:
        return run_train_command(args)
    except ValueError as e:
        if type(e) is ValueError:  # the config's checks (flags that do not fit together, a model without a
            raise UsageError(str(e)) from e  # logit bias for --siglip): change the command
        raise  # DatasetError, CheckpointError...: the CLI's error boundary reports them


def run_plot(args) -> int:
    """Run ``anyclip plot`` for parsed ``args``.

    Example:
        >>> from anyclip.cli import main
        >>> main(["plot", "logs/shapes", "-o", "curves.png"])  # doctest: +SKIP
        0
    """
    require_extras(["matplotlib"], "anyclip plot")
    from .plot import plot_runs
    try:
        out = plot_runs(args.runs, args.output, title=args.title, dpi=args.dpi)
    except (ValueError, FileNotFoundError) as e:  # an empty or broken log, a folder without train.jsonl
        raise DataError(str(e)) from e
    print(f"wrote {out}")
    return 0


__all__ = ["register", "run_plot", "run_train"]
