"""Training checkpoints: weights in open_clip's layout, optimiser state, loop state; atomic, keep-last-N.

A checkpoint is a folder ``step_00001234/`` under the checkpoint directory holding

* ``open_clip_model.safetensors`` + ``open_clip_config.json`` -- the model, loadable as is by
  ``anyclip.create_model("local-dir:...")`` and by open_clip;
* ``optimizer.safetensors`` -- every optimiser variable (moments, step counter, loss scale), the model's
  other state (random-seed counters) and the EMA weights if any, each under its index and Keras path;
* ``state.json`` -- the loop's position (step, epoch, samples of the epoch already seen, ...).

The folder is written under a temporary name and renamed into place, so a crash while writing leaves the
previous checkpoints untouched and never a half-written ``step_*`` folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

STATE_NAME = "state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def _numpy(var) -> np.ndarray:
    value = np.asarray(keras.ops.convert_to_numpy(var.value))
    return np.array(value, dtype=np.float32 if value.dtype.name in ("bfloat16", "float16") else value.dtype)


def _extra_model_state(model) -> list:
    """Model variables that open_clip's state dict has no key for (random-seed counters)."""
    from ..weights.mapping import model_entries
    mapped = {id(var) for var, _ in model_entries(model).values()}
    return [v for v in model.weights if id(v) not in mapped]


def save_training_checkpoint(directory: str | os.PathLike, model, optimizer, step: int,
                             state: dict[str, Any] | None = None, keep: int | None = None, ema=None) -> Path:
    """Write ``directory/step_<step>/`` atomically; keep only the newest ``keep`` checkpoints if given.

    ``state`` is any JSON-able dict (epoch, data position, metrics); ``step`` is stored in it too.
    ``ema``: a :class:`~anyclip.train.weights_avg.ModelEMA` whose averages are saved too.

    Example:
        >>> save_training_checkpoint("logs/run/checkpoints", model, optimizer, step=100,
        ...                          state={"epoch": 1, "samples_seen": 3200}, keep=3)  # doctest: +SKIP
    """
    from safetensors.numpy import save_file

    from ..weights.export import save_open_clip_checkpoint
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step_{int(step):08d}"
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        save_open_clip_checkpoint(model, tmp)
        tensors = {f"optimizer/{i:05d}/{v.path}": _numpy(v) for i, v in enumerate(optimizer.variables)}
        tensors.update({f"model/{i:05d}/{v.path}": _numpy(v) for i, v in enumerate(_extra_model_state(model))})
        if ema is not None:
            tensors.update({f"ema/{i:05d}/{src.path}": _numpy(avg)
                            for i, (src, avg) in enumerate(zip(ema.sources, ema.averages))})
        save_file(tensors, str(tmp / OPTIMIZER_NAME))
        (tmp / STATE_NAME).write_text(json.dumps({**(state or {}), "step": int(step)}, indent=2) + "\n")
        for path in tmp.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():  # the same step saved again (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep is not None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        for old in list_training_checkpoints(directory)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_training_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders under ``directory``, oldest first.

    Example:
        >>> list_training_checkpoints("logs/run/checkpoints")[-1].name  # doctest: +SKIP
        'step_00000100'
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / STATE_NAME).is_file()]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(directory: str | os.PathLike, which: str = "latest") -> Path:
    """``"latest"`` -> the newest complete checkpoint in ``directory``; a path -> that checkpoint folder.

    Example:
        >>> resolve_checkpoint("logs/run/checkpoints", "latest")  # doctest: +SKIP
    """
    if which != "latest":
        path = Path(which)
        if not (path / STATE_NAME).is_file():
            raise FileNotFoundError(f"{path} is not a training checkpoint (no {STATE_NAME} in it)")
        return path
    found = list_training_checkpoints(directory)
    if not found:
        raise FileNotFoundError(f"no training checkpoint to resume in {directory}")
    return found[-1]


def load_training_checkpoint(path: str | os.PathLike, model, optimizer, ema=None) -> dict[str, Any]:
    """Restore weights, optimiser and seed state (and ``ema``'s averages) from a checkpoint folder.

    Returns the checkpoint's ``state`` dict. The optimiser must be built for the same trainable variables
    as when the checkpoint was written (the same model, locked groups and precision); a different layout
    is an error naming the first mismatch.

    Example:
        >>> state = load_training_checkpoint(resolve_checkpoint("logs/run/checkpoints"), model, optimizer)  # doctest: +SKIP
        >>> state["step"]  # doctest: +SKIP
        100
    """
    from safetensors.numpy import load_file

    from ..weights.export import load_checkpoint
    from ..weights.hub import SAFE_WEIGHTS_NAME
    path = Path(path)
    state = json.loads((path / STATE_NAME).read_text())
    load_checkpoint(model, path / SAFE_WEIGHTS_NAME)
    tensors = load_file(str(path / OPTIMIZER_NAME))
    groups = [("optimizer", optimizer.variables), ("model", _extra_model_state(model))]
    if ema is not None:
        groups.append(("ema", ema.averages))
    for prefix, variables in groups:
        saved = sorted(k for k in tensors if k.startswith(prefix + "/"))
        if len(saved) != len(variables):
            raise ValueError(f"{path / OPTIMIZER_NAME}: {len(saved)} {prefix} variables saved, {len(variables)} "
                             f"here (was the optimiser built for other variables, a tower locked, the precision "
                             f"or --ema changed?)")
        for key, var in zip(saved, variables):
            value = tensors[key]
            if tuple(value.shape) != tuple(var.shape):
                raise ValueError(f"{path / OPTIMIZER_NAME}: {key} has shape {tuple(value.shape)}, but {var.path} "
                                 f"here has shape {tuple(var.shape)}")
            var.assign(value)
    return state
