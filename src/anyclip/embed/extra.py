"""The ``[embed]`` extra: pyarrow (Parquet) and faiss-cpu (indexes), imported on first use, with a clear error.

``import anyclip`` and ``anyclip classify`` need neither; ``anyclip embed``, ``index`` and ``search`` (and
their Python functions) say what to install when one is missing. The work is :mod:`anyclip.extras`'s.
"""

from __future__ import annotations

from ..extras import MissingExtraError, install_command
from ..extras import require as _require

INSTALL = install_command("embed")


def require(module: str):
    """Import ``module`` (``pyarrow``, ``pyarrow.parquet``, ``faiss``), or raise ImportError naming the extra.

    Example:
        >>> require("json").__name__
        'json'
        >>> require("pyarrow_missing_xyz")
        Traceback (most recent call last):
        anyclip.extras.MissingExtraError: this needs pyarrow_missing_xyz: pip install pyarrow_missing_xyz
    """
    return _require(module)


__all__ = ["INSTALL", "MissingExtraError", "require"]
