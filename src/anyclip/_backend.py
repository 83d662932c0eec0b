"""Choose a Keras backend before keras is imported, so TensorFlow is never required by default."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path


def choose_default_backend() -> None:
    """If the user chose no backend (``KERAS_BACKEND`` or ``~/.keras/keras.json``), prefer jax, torch, tf.

    Does nothing once keras is imported or when a choice exists.
    """
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    if (keras_home / "keras.json").is_file():
        return
    for backend, module in (("jax", "jax"), ("torch", "torch"), ("tensorflow", "tensorflow")):
        if importlib.util.find_spec(module) is not None:
            os.environ["KERAS_BACKEND"] = backend
            return
