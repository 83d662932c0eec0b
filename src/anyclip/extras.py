"""Optional extras (``pip install 'anyclip[extra]'``): which module each one brings, and checking them early.

A command calls :func:`require_extras` (or :func:`require`) before its work starts, so a missing package
stops it at once with the ``pip install`` line, not after a model loaded or a dataset was read.
:class:`MissingExtraError` is an :class:`ImportError`; the CLI prints it as one line and exits 1.

Example:
    >>> extra_of("faiss")
    'embed'
    >>> install_command("embed")
    "pip install 'anyclip[embed]'"
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

# Top-level module -> (the extra that installs it, the distribution's name when it differs from the module's).
EXTRA_MODULES = {
    "pyarrow": ("embed", None),
    "faiss": ("embed", "faiss-cpu"),
    "ray": ("ray", "ray[data]"),
    "sklearn": ("eval", "scikit-learn"),
    "matplotlib": ("eval", None),
    "braceexpand": ("eval", None),
    "tensorboardX": ("train", None),
    "google_crc32c": ("train", "google-crc32c"),
    "starlette": ("serve", None),
    "uvicorn": ("serve", None),
    "prometheus_client": ("serve", "prometheus-client"),
}


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names it and the ``pip install`` command.

    Example:
        >>> str(MissingExtraError("faiss", "anyclip index"))
        "anyclip index needs faiss (the faiss-cpu package): pip install 'anyclip[embed]'"
    """

    def __init__(self, module: str, what: str = "this"):
        top = module.split(".")[0]
        extra, distribution = EXTRA_MODULES.get(top, (None, None))
        package = f"{top} (the {distribution} package)" if distribution else top
        fix = install_command(extra) if extra else f"pip install {distribution or top}"
        super().__init__(f"{what} needs {package}: {fix}", name=top)
        self.extra = extra


def extra_of(module: str) -> str | None:
    """The extra that installs ``module`` (``"sklearn.linear_model"`` -> ``"eval"``), or None.

    Example:
        >>> extra_of("sklearn.linear_model"), extra_of("json")
        ('eval', None)
    """
    return EXTRA_MODULES.get(module.split(".")[0], (None, None))[0]


def install_command(extra: str) -> str:
    """The shell command that installs ``extra``.

    Example:
        >>> install_command("eval")
        "pip install 'anyclip[eval]'"
    """
    return f"pip install 'anyclip[{extra}]'"


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it; a module set to None in sys.modules is not).

    Example:
        >>> available("json"), available("no_such_module_xyz")
        (True, False)
    """
    top = module.split(".")[0]
    if top in sys.modules:
        return sys.modules[top] is not None
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def missing_by_extra() -> dict[str, list[str]]:
    """Each extra and its modules that are not installed (an empty list: the extra is complete).

    Example:
        >>> sorted(missing_by_extra())
        ['embed', 'eval', 'ray', 'serve', 'train']
    """
    out: dict[str, list[str]] = {}
    for module, (extra, _) in EXTRA_MODULES.items():
        out.setdefault(extra, [])
        if not available(module):
            out[extra].append(module)
    return out


def require(module: str, what: str = "this"):
    """Import ``module``, or raise :class:`MissingExtraError` naming the package and the extra.

    Example:
        >>> require("json").__name__
        'json'
        >>> require("faiss_missing_xyz", "anyclip index")
        Traceback (most recent call last):
        anyclip.extras.MissingExtraError: anyclip index needs faiss_missing_xyz: pip install faiss_missing_xyz
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if isinstance(e, MissingExtraError):
            raise
        raise MissingExtraError(module, what) from e


def require_extras(modules, what: str) -> None:
    """Check that every module of ``modules`` is installed (nothing is imported), before any work starts.

    Example:
        >>> require_extras(["json"], "anyclip plot")
        >>> require_extras(["no_such_module_xyz"], "anyclip plot")
        Traceback (most recent call last):
        anyclip.extras.MissingExtraError: anyclip plot needs no_such_module_xyz: pip install no_such_module_xyz
    """
    for module in modules:
        if not available(module):
            raise MissingExtraError(module, what)


__all__ = ["EXTRA_MODULES", "MissingExtraError", "available", "extra_of", "install_command", "missing_by_extra",
           "require", "require_extras"]
