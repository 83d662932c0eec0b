"""Choose the Keras backend before Keras is imported: predictably, and never TensorFlow by accident.

The rule, first match wins:

1. ``KERAS_BACKEND`` in the environment;
2. the backend of a ``keras`` that is already imported (it cannot change any more);
3. the first *installed* of jax, torch, tensorflow.

``~/.keras/keras.json`` never decides: Keras writes ``"backend": "tensorflow"`` there on its first import,
so honouring it would silently move every later run onto TensorFlow. anyclip applies its choice by setting
``KERAS_BACKEND`` (which Keras reads before ``keras.json``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Mapping, NamedTuple

BACKENDS = ("jax", "torch", "tensorflow")  # anyclip's order of preference
FIRST_INSTALLED = "first installed of " + ", ".join(BACKENDS)


class BackendChoice(NamedTuple):
    """A Keras backend name and why it was chosen.

    Example:
        >>> BackendChoice("jax", "KERAS_BACKEND=jax").reason
        'KERAS_BACKEND=jax'
    """

    name: str
    reason: str


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-imported package counts as absent
        return False


def _imported_keras_backend(modules: Mapping) -> str | None:
    """The backend of an already imported ``keras``, or None when keras is not (fully) imported yet."""
    keras = modules.get("keras")
    try:
        return keras.config.backend() if keras is not None else None
    except AttributeError:  # keras is still being imported
        return None


def decide_backend(environ: Mapping[str, str] = os.environ, modules: Mapping = sys.modules,
                   installed=_installed) -> BackendChoice:
    """The backend the rule above picks for this environment, imported modules and installed packages.

    Example:
        >>> decide_backend({"KERAS_BACKEND": "torch"}, {})
        BackendChoice(name='torch', reason='KERAS_BACKEND=torch')
        >>> decide_backend({}, {}, installed=lambda m: m != "jax")
        BackendChoice(name='torch', reason='first installed of jax, torch, tensorflow')
    """
    requested = environ.get("KERAS_BACKEND")
    if requested:
        return BackendChoice(requested, f"KERAS_BACKEND={requested}")
    imported = _imported_keras_backend(modules)
    if imported:
        return BackendChoice(imported, f"keras was already imported with backend {imported}")
    for backend in BACKENDS:
        if installed(backend):
            return BackendChoice(backend, FIRST_INSTALLED)
    return BackendChoice("tensorflow", f"none of {', '.join(BACKENDS)} is installed (Keras's default)")


def choose_default_backend() -> BackendChoice:
    """Apply :func:`decide_backend` before Keras is imported; return the choice.

    Sets ``KERAS_BACKEND`` when the rule picked an installed backend and keras is not imported yet. When the
    backend is tensorflow and ``TF_CPP_MIN_LOG_LEVEL`` is unset, sets it to ``"1"`` (TensorFlow's C++
    info lines on stderr are hidden; warnings and errors still show). TensorFlow 2.21 logs a few lines through
    absl before that setting is read, so importing TensorFlow itself is still not silent; ``import anyclip``
    imports no Keras and writes nothing.

    Example:
        >>> choose_default_backend().name in BACKENDS
        True
    """
    choice = decide_backend()
    if "keras" not in sys.modules and choice.reason == FIRST_INSTALLED:
        os.environ["KERAS_BACKEND"] = choice.name
    if choice.name == "tensorflow" and "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    return choice


def current_backend_choice(at_import: BackendChoice) -> BackendChoice:
    """The choice in effect now: ``at_import`` (what :func:`choose_default_backend` returned), unless Keras was
    since imported with another backend (``KERAS_BACKEND`` changed in between), which then wins.

    Example:
        >>> current_backend_choice(BackendChoice("jax", FIRST_INSTALLED)).reason  # doctest: +SKIP
        'first installed of jax, torch, tensorflow'
    """
    imported = _imported_keras_backend(sys.modules)
    if imported is None or imported == at_import.name:
        return at_import
    requested = os.environ.get("KERAS_BACKEND")
    if requested == imported:
        return BackendChoice(imported, f"KERAS_BACKEND={requested}")
    return BackendChoice(imported, f"keras was already imported with backend {imported}")
