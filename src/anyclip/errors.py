"""The two kinds of error a user can cause; the CLI turns both into one line and an exit code.

``UsageError`` (exit 2): a value or combination on the command line (or in a config) that must change.
``DataError`` (exit 1): an input file, folder or checkpoint that is missing, damaged or unreadable.
Anything else reaching the CLI is a bug and keeps its traceback.

Example:
    >>> error = DataError("out/part-3.parquet: truncated (re-run `anyclip embed` to rewrite it)")
    >>> isinstance(error, ValueError), str(error).split(":")[0]
    (True, 'out/part-3.parquet')
"""

from __future__ import annotations


class UsageError(ValueError):
    """A value the user gave that must change; the message names the option and what to give instead."""


class DataError(ValueError):
    """An input that is missing, damaged or unreadable; the message names the path and what to do."""
