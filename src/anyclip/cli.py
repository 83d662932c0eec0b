"""The ``anyclip`` command line: list models, classify images zero-shot, embed, evaluate, train, plot, make data."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Each command lives with its package; "module:function" adds its sub-command(s), in `anyclip --help`'s order.
COMMANDS = (
    "anyclip.weights.command:register_models",  # models
    "anyclip.eval.command:register_classify",  # classify
    "anyclip.embed.command:register",  # embed, index, search
    "anyclip.data.command:register",  # data shapes
    "anyclip.train.command:register",  # train, plot
    "anyclip.export.command:register_convert",  # convert
    "anyclip.eval.command:register",  # eval
    "anyclip.info:register",  # info
)


def build_parser() -> argparse.ArgumentParser:
    """The ``anyclip`` parser: every command of :data:`COMMANDS`, each setting ``run`` (its function).

    Example:
        >>> build_parser().parse_args(["plot", "logs/run"]).run.__name__
        'run_plot'
    """
    parser = argparse.ArgumentParser(prog="anyclip", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for entry in COMMANDS:
        module, function = entry.split(":")
        getattr(importlib.import_module(module), function)(subparsers)
    return parser


def _user_errors() -> tuple:
    """Errors a user causes (unknown model or tag, weights not available or not matching, a missing file)."""
    from .models import ConfigError
    from .weights import (
        CheckpointError,
        UnknownPretrainedError,
        WeightMismatchError,
        WeightsUnavailableError,
    )
    return ConfigError, UnknownPretrainedError, WeightMismatchError, WeightsUnavailableError, CheckpointError, \
        FileNotFoundError


def main(argv=None) -> int:
    """Entry point of the ``anyclip`` command.

    Example:
        >>> main(["models"])  # doctest: +SKIP
    """
    logging.basicConfig(level=os.environ.get("ANYCLIP_LOG", "WARNING"), format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except Exception as e:  # the known user errors become a message; anything else is a bug: raised
        if not isinstance(e, _user_errors()):
            raise
        print(f"anyclip {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
