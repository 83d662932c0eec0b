"""Package exports imported on first use (PEP 562), so that ``import anyclip`` and ``anyclip --help`` load no Keras.

A package lists which of its submodules provides each public name; the submodule is imported the first
time one of its names is read (``anyclip.create_model``, ``from anyclip.train import TrainStep``).
:func:`after_import` keeps the one promise of the old eager ``import anyclip`` that a name look-up cannot:
anyclip's Keras classes are registered as soon as Keras is imported, so ``keras.saving.load_model`` reads
anyclip's ``.keras`` files.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]):
    """``(__getattr__, __dir__, __all__)`` for ``package``, whose names load from their submodules on first use.

    ``exports`` maps a relative submodule (``".factory"``) to the names it provides. A submodule of the
    package read as an attribute (``anyclip.models``) is imported too, as eager imports used to make it
    available.

    Example:
        >>> getattr_, dir_, names = lazy_exports("json", {".decoder": ("JSONDecodeError",)})
        >>> getattr_("JSONDecodeError").__name__, names
        ('JSONDecodeError', ['JSONDecodeError'])
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        module = where.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module, package), name)
        elif not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # later reads are plain attribute look-ups
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__, sorted(where)


def after_import(module: str, then: Callable[[], None]) -> None:
    """Call ``then()`` once ``module`` is imported: now if it already is, else right after its first import.

    Example:
        >>> calls = []
        >>> after_import("json", lambda: calls.append("json is loaded"))
        >>> calls
        ['json is loaded']
    """
    if module in sys.modules:
        then()
    else:
        sys.meta_path.insert(0, _AfterImport(module, then))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Lets the other finders find ``module``, then runs ``then()`` after its loader ran (once, then leaves)."""

    def __init__(self, module: str, then: Callable[[], None]):
        self.module, self.then, self.busy = module, then, False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.module or self.busy:
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(fullname)  # what the other finders say
        finally:
            self.busy = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then(module):
            exec_module(module)
            del loader.exec_module  # this loader object stays the module's own: leave it as it was
            if self in sys.meta_path:
                sys.meta_path.remove(self)
                self.then()
        loader.exec_module = exec_then  # on this loader object only
        return spec
