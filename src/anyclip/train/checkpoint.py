"""Training checkpoints: weights in open_clip's layout, optimiser state, loop state; atomic, keep-last-N.

A checkpoint is a folder ``step_00001234/`` under the checkpoint directory holding

* ``open_clip_model.safetensors`` + ``open_clip_config.json`` -- the model, loadable as is by
  ``anyclip.create_model("local-dir:...")`` and by open_clip;
* ``optimizer.safetensors`` -- every optimiser variable (moments, step counter, loss scale), the model's
  other state (random-seed counters) and the EMA weights if any, each under its index and Keras path;
* ``state.json`` -- the loop's position (step, epoch, samples of the epoch already seen, ...);
* ``checksums.json`` -- the size and sha256 of each file above, written last.

The folder is written under a temporary name and renamed into place, so a crash while writing leaves the
previous checkpoints untouched and never a half-written ``step_*`` folder. A checkpoint damaged later (a
full disk, a copy cut short, a flipped bit) fails :func:`verify_checkpoint`; ``--resume latest`` then falls
back to the newest one that verifies (:func:`resolve_checkpoint`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from ..errors import DataError
from ..weights.checkpoint import file_sha256

STATE_NAME = "state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
CHECKSUMS_NAME = "checksums.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_TMP_DIR = re.compile(r"^\.step_\d+\..*\.tmp$")


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
        _write_checksums(tmp)
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
    """Checkpoint folders (``step_*``) under ``directory``, oldest first; :func:`verify_checkpoint` checks one.

    Example:
        >>> list_training_checkpoints("logs/run/checkpoints")[-1].name  # doctest: +SKIP
        'step_00000100'
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def _write_checksums(folder: Path) -> None:
    """Record the size and sha256 of every file of ``folder`` in its ``checksums.json`` (atomically)."""
    from ..atomic import atomic_write_text
    files = {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKSUMS_NAME}
    atomic_write_text(folder / CHECKSUMS_NAME, json.dumps({"files": files}, indent=1) + "\n")


def verify_checkpoint(path: str | os.PathLike) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed (one line naming the file), or ``None`` if it can.

    With ``checksums.json`` every file listed must have its recorded size and sha256; a checkpoint written
    before checksums were recorded is checked by reading each safetensors file in full instead.

    Example:
        >>> verify_checkpoint("logs/run/checkpoints/step_00000400")  # doctest: +SKIP
        'optimizer.safetensors has 812 bytes, checksums.json says 1604'
    """
    path = Path(path)
    sums = path / CHECKSUMS_NAME
    if not sums.is_file():
        return _verify_legacy(path)
    try:
        files = json.loads(sums.read_text(encoding="utf-8"))["files"]
        expected = {str(name): (int(v["size"]), str(v["sha256"])) for name, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"{CHECKSUMS_NAME} is unreadable ({type(e).__name__}: {e})"
    for name in (STATE_NAME, OPTIMIZER_NAME):
        if name not in expected:
            return f"{CHECKSUMS_NAME} does not list {name}"
    for name, (size, sha) in expected.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        actual = file.stat().st_size
        if actual != size:
            return f"{name} has {actual} bytes, {CHECKSUMS_NAME} says {size}"
        if file_sha256(file) != sha:
            return f"{name} does not match its sha256 in {CHECKSUMS_NAME} (the file is damaged)"
    return None


def _verify_legacy(path: Path) -> str | None:
    """A checkpoint without ``checksums.json``: its state is JSON and every safetensors file reads in full."""
    from safetensors import safe_open
    try:
        json.loads((path / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{STATE_NAME} is unreadable ({type(e).__name__})"
    files = sorted(path.glob("*.safetensors"))
    if not any(p.name == OPTIMIZER_NAME for p in files):
        return f"{OPTIMIZER_NAME} is missing"
    for file in files:
        try:
            with safe_open(str(file), framework="numpy") as f:
                for key in f.keys():
                    f.get_tensor(key)
        except Exception as e:  # SafetensorError and OSError: a damaged file is a reason, never a traceback
            return f"{file.name} does not load ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
    return None


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the ``.step_*.tmp`` folders a crash while saving left in ``directory``; returns them.

    Call it only while holding the run folder's lock (no other process is saving).

    Example:
        >>> remove_stale_temporaries("logs/run/checkpoints")  # doctest: +SKIP
        [PosixPath('logs/run/checkpoints/.step_00000400.k2j3.tmp')]
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = sorted(p for p in directory.iterdir() if _TMP_DIR.match(p.name))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return stale


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def resolve_checkpoint(directory: str | os.PathLike, which: str = "latest",
                       notify: Callable[[str], None] = _stderr) -> Path | None:
    """The checkpoint to resume: ``"latest"`` -> the newest one in ``directory`` that verifies; a path -> that one.

    For ``"latest"``, each newer checkpoint that fails :func:`verify_checkpoint` is skipped with one line to
    ``notify`` naming it and why; no checkpoint at all gives ``None`` (start fresh); checkpoints that all
    fail raise :class:`~anyclip.errors.DataError`. A named checkpoint that fails raises ``DataError`` too.

    Example:
        >>> resolve_checkpoint("logs/run/checkpoints", "latest")  # doctest: +SKIP
        PosixPath('logs/run/checkpoints/step_00000300')
    """
    if which != "latest":
        path = Path(which)
        if not (path / STATE_NAME).is_file():
            raise DataError(f"--resume {path}: not a training checkpoint (no {STATE_NAME} in it); "
                            "name a step_* folder or use --resume latest")
        problem = verify_checkpoint(path)
        if problem:
            raise DataError(f"--resume {path}: {problem}; resume another checkpoint (--resume latest picks "
                            "the newest intact one)")
        return path
    found = list_training_checkpoints(directory)
    skipped = []
    for path in reversed(found):
        problem = verify_checkpoint(path)
        if problem is None:
            for bad, why in skipped:
                notify(f"skipped {bad}: {why}; resuming from {path.name}")
            return path
        skipped.append((path, problem))
    if skipped:
        raise DataError(f"--resume latest: no checkpoint in {directory} is intact ("
                        + "; ".join(f"{p.name}: {why}" for p, why in skipped)
                        + "); remove them to start afresh or resume a copy")
    return None


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

    from ..weights.checkpoint import read_state_dict
    from ..weights.hub import SAFE_WEIGHTS_NAME
    from ..weights.mapping import load_state_dict
    path = Path(path)
    state = json.loads((path / STATE_NAME).read_text())
    weights = path / SAFE_WEIGHTS_NAME  # this run's own shapes: strict, nothing resized
    load_state_dict(model, read_state_dict(weights), source=str(weights), strict=True, resize_pos_embed=False,
                    copy=False)
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
