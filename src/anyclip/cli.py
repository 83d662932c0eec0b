"""The ``anyclip`` command line: list models, classify images zero-shot, embed, evaluate, train, plot, make data.

Errors a user causes end as one line on stderr, ``anyclip <command>: error: <message>``, and an exit status
(decided once, here, by :func:`exit_status`):

==============================================================  ====  =========================================
error                                                           exit  meaning
==============================================================  ====  =========================================
a bad option value (argparse, :mod:`anyclip.cli_args` types)      2   change the command line
UsageError, ConfigError, UnknownPretrainedError, EmbedJobError    2   change the command (model, tag, options)
DataError, DatasetError, CheckpointError, WeightMismatchError,    1   an input is missing, damaged, unreadable
WeightsUnavailableError, ImageLoadError,
EmbeddingIndexError, ExampleError, DistributedError
OSError with a file name (PermissionError, ...); any               1   a file or folder cannot be used
FileNotFoundError, IsADirectoryError, NotADirectoryError
MissingExtraError, ImportError of an optional extra's module      1   install it: ``pip install 'anyclip[x]'``
KeyboardInterrupt                                               130   "interrupted"
BrokenPipeError (``anyclip models | head``)                     141   nothing printed: the reader left
anything else                                                    --   a bug: the traceback is shown
==============================================================  ====  =========================================

``--debug`` (before or after the command) or ``ANYCLIP_DEBUG=1`` shows the traceback of user errors too.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

# Each command lives with its package; "module:function" adds its sub-command(s), in `anyclip --help`'s order.
COMMANDS = (
    "anyclip.weights.command:register_models",  # models
    "anyclip.eval.command:register_classify",  # classify
    "anyclip.embed.command:register",  # embed, index, search
    "anyclip.data.command:register",  # data shapes
    "anyclip.train.command:register",  # train, plot
    "anyclip.export.command:register_convert",  # convert
    "anyclip.export.deploy_command:register_export",  # export
    "anyclip.eval.command:register",  # eval
    "anyclip.info:register",  # info
    "anyclip.serve.command:register",  # serve
)

EXIT_USAGE, EXIT_DATA, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 2, 1, 130, 141

# User errors by "module.ClassName" (matched along the exception's class hierarchy, so nothing is imported).
USER_ERRORS = {
    "anyclip.errors.UsageError": EXIT_USAGE,
    "anyclip.towers.config.ConfigError": EXIT_USAGE,
    "anyclip.weights.pretrained.UnknownPretrainedError": EXIT_USAGE,
    "anyclip.errors.DataError": EXIT_DATA,
    "anyclip.data.common.DatasetError": EXIT_DATA,
    "anyclip.data.tfrecord.ExampleError": EXIT_DATA,
    "anyclip.weights.checkpoint.CheckpointError": EXIT_DATA,
    "anyclip.weights.mapping.WeightMismatchError": EXIT_DATA,
    "anyclip.weights.hub.WeightsUnavailableError": EXIT_DATA,
    "anyclip.transforms.host.ImageLoadError": EXIT_DATA,
    "anyclip.embed.manifest.EmbedJobError": EXIT_USAGE,  # another job's settings in the folder: change -o or flags
    "anyclip.embed.index.EmbeddingIndexError": EXIT_DATA,
    "anyclip.train.distributed.DistributedError": EXIT_DATA,
    "anyclip.extras.MissingExtraError": EXIT_DATA,
}


# OSErrors about a path even when raised with a message only (``FileNotFoundError("no train.jsonl in run/")``).
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line: ``anyclip <command>: error: <message> (see ... --help)``.

    Example:
        >>> ArgumentParser(prog="anyclip plot").format_error("argument --dpi: '0' is not ...")
        "anyclip plot: error: argument --dpi: '0' is not ... (see anyclip plot --help)"
    """

    def format_error(self, message: str) -> str:
        """The one line :meth:`error` prints."""
        message = " ".join(str(message).split())
        return f"{self.prog}: error: {message} (see {self.prog} --help)"

    def error(self, message: str):
        """Print :meth:`format_error`'s line and exit with status 2."""
        self.exit(EXIT_USAGE, self.format_error(message) + "\n")


def _leaf_parsers(parser: argparse.ArgumentParser):
    """Every parser under ``parser`` that has no sub-commands (``anyclip classify``, ``anyclip data shapes``)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
    for action in subs:
        for child in dict.fromkeys(action.choices.values()):
            yield from _leaf_parsers(child)


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub-)parser of the command ``args`` ran (``anyclip data shapes``'s for ``data shapes``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            return _chosen_parser(action.choices[getattr(args, action.dest)], args)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, but unknown arguments are reported by the command's own parser.

    Example:
        >>> parse_args(build_parser(), ["plot", "."]).dpi
        100
    """
    args, extras = parser.parse_known_args(argv)
    if extras:
        _chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def build_parser() -> argparse.ArgumentParser:
    """The ``anyclip`` parser: every command of :data:`COMMANDS`, each setting ``run`` (its function).

    Example:
        >>> build_parser().parse_args(["plot", "."]).run.__name__  # "." : a run folder that exists
        'run_plot'
    """
    parser = ArgumentParser(prog="anyclip", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,  # not a setting of the run
                        help="show the Python traceback of errors too (also ANYCLIP_DEBUG=1)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in COMMANDS:
        module, function = entry.split(":")
        getattr(importlib.import_module(module), function)(subparsers)
    for leaf in _leaf_parsers(parser):
        if leaf is not parser:
            leaf.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                              help="show the Python traceback of errors too (also ANYCLIP_DEBUG=1)")
    return parser


def _class_names(error: BaseException):
    for cls in type(error).__mro__:
        yield f"{cls.__module__}.{cls.__qualname__}"


def exit_status(error: BaseException) -> int | None:
    """The exit status of a user error (see the table above), or None for a bug (its traceback is shown).

    Example:
        >>> from anyclip.errors import DataError, UsageError
        >>> exit_status(UsageError("--top-k")), exit_status(DataError("a.csv")), exit_status(KeyError("x"))
        (2, 1, None)
        >>> exit_status(FileNotFoundError(2, "No such file or directory", "a.png"))
        1
    """
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    for name in _class_names(error):
        if name in USER_ERRORS:
            return USER_ERRORS[name]
    if isinstance(error, OSError) and (error.filename is not None or isinstance(error, _PATH_ERRORS)):
        return EXIT_DATA
    if isinstance(error, ImportError) and _missing_module(error) is not None:
        return EXIT_DATA
    return None


def _missing_module(error: ImportError) -> str | None:
    """The optional module an ImportError (or the ImportError it was raised from) is about, if it is one."""
    from .extras import extra_of
    while isinstance(error, ImportError):
        if error.name and extra_of(error.name):
            return error.name
        error = error.__cause__
    return None


def error_message(error: BaseException) -> str:
    """The one-line message of a user error (``OSError``: the file and the reason; an extra: the pip command).

    Example:
        >>> error_message(PermissionError(13, "Permission denied", "out/results.json"))
        'out/results.json: permission denied'
    """
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, OSError) and error.filename is not None and type(error).__str__ is OSError.__str__:
        reason = (error.strerror or type(error).__name__).lower()
        return f"{error.filename}: {reason}"
    if isinstance(error, ImportError) and "pip install" not in str(error):
        from .extras import MissingExtraError
        return str(MissingExtraError(_missing_module(error), "this"))
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines)


def _debug(argv) -> bool:
    return os.environ.get("ANYCLIP_DEBUG", "").strip().lower() not in ("", "0", "false", "no") or \
        "--debug" in (argv if argv is not None else sys.argv[1:])


def _warning_printer(command: str, default):
    """A ``warnings.showwarning`` that prints anyclip's own warnings as one ``<command>: warning: ...`` line."""
    package = os.path.dirname(os.path.abspath(__file__))

    def show(message, category, filename, lineno, file=None, line=None):
        if not os.path.abspath(filename).startswith(package + os.sep):
            return default(message, category, filename, lineno, file, line)
        print(f"{command}: warning: {message}", file=file or sys.stderr)
    return show


def main(argv=None) -> int:
    """Entry point of the ``anyclip`` command: the exit status (user errors print one line, see the table).

    Argument errors and ``--help`` return their status (2, 0) too, rather than raising SystemExit.

    Example:
        >>> main(["models"])  # doctest: +SKIP
        0
    """
    logging.basicConfig(level=os.environ.get("ANYCLIP_LOG", "WARNING"), format="%(levelname)s %(message)s")
    debug = _debug(argv)
    command = "anyclip"
    try:
        try:
            args = parse_args(build_parser(), argv)
        except SystemExit as e:  # --help (0) or a bad argument (2, its one line printed): the status, returned
            return e.code if isinstance(e.code, int) else EXIT_USAGE if e.code else 0
        command = f"anyclip {args.command}" + (f" {args.dataset}" if args.command == "data" else "")
        with warnings.catch_warnings():  # restores the previous warnings.showwarning when the command ends
            if not debug:
                warnings.showwarning = _warning_printer(command, warnings.showwarning)
            status = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:  # the reader of stdout has gone (| head): stop quietly, as shell tools do
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file (captured in tests)
            pass
        return EXIT_BROKEN_PIPE
    except (Exception, KeyboardInterrupt) as e:
        status = exit_status(e)
        if status is None:
            raise
        if debug:
            import traceback
            traceback.print_exc()
        print(f"{command}: error: {error_message(e)}" if status != EXIT_INTERRUPTED else f"{command}: interrupted",
              file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
