"""The ``[embed]`` extra: pyarrow (Parquet) and faiss-cpu (indexes), imported on first use, with a clear error.

``import anyclip`` and ``anyclip classify`` need neither; ``anyclip embed``, ``index`` and ``search`` (and
their Python functions) say what to install when one is missing.
"""

from __future__ import annotations

import importlib

INSTALL = 'pip install "anyclip[embed]"'
_DISTRIBUTIONS = {"faiss": "faiss (the faiss-cpu package)"}


def require(module: str):
    """Import ``module`` (``pyarrow``, ``pyarrow.parquet``, ``faiss``), or raise ImportError naming the extra.

    Example:
        >>> require("json").__name__
        'json'
        >>> require("no_such_module_xyz")
        Traceback (most recent call last):
        ImportError: this needs no_such_module_xyz: pip install "anyclip[embed]"
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise ImportError(f"this needs {_DISTRIBUTIONS.get(top, top)}: {INSTALL}") from e


__all__ = ["INSTALL", "require"]
