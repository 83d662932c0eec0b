"""Choose a Keras backend before keras is imported, so TensorFlow is never required by default."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

_MODULES = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}


def choose_default_backend() -> None:
    """Respect ``KERAS_BACKEND`` or a usable ``~/.keras/keras.json``; otherwise prefer jax, torch, tf.

    Keras writes ``keras.json`` (backend "tensorflow") on first import, so a file naming a backend
    that is not installed is treated as no choice. Does nothing once keras is imported.
    """
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return
    config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        chosen = json.loads(config.read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        chosen = None
    if chosen and (chosen not in _MODULES or importlib.util.find_spec(_MODULES[chosen]) is not None):
        return
    for backend, module in _MODULES.items():
        if importlib.util.find_spec(module) is not None:
            os.environ["KERAS_BACKEND"] = backend
            return
