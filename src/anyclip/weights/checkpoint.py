"""Read and write open_clip checkpoints as ``{key: numpy array}`` without trusting pickles.

``.safetensors`` files are read with the safetensors library (no torch needed). PyTorch ``.bin`` /
``.pt`` / ``.pth`` files are read only through ``torch.load(weights_only=True)`` (or, for OpenAI's
TorchScript archives, ``torch.jit.load``, which does not run arbitrary pickled code) and only when
torch is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Mapping

import numpy as np

from ..atomic import atomic_write

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# Scalars stored inside OpenAI's TorchScript checkpoints that are not weights.
_OPENAI_JIT_EXTRAS = ("input_resolution", "context_length", "vocab_size")


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or is not a state dict.

    Example:
        >>> read_state_dict("notes.txt")  # doctest: +SKIP
        CheckpointError: notes.txt: not a checkpoint (...)
    """


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks (a checkpoint need not fit in memory twice).

    Example:
        >>> file_sha256("open_clip_model.safetensors")  # doctest: +SKIP
        'c13eddff3a74...'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a checkpoint file as float32/int numpy arrays keyed like open_clip's ``state_dict``.

    Unwraps training checkpoints (``{"state_dict": ...}``), DDP ``module.`` and ``torch.compile``
    ``_orig_mod.`` prefixes, and OpenAI's TorchScript archives.

    Example:
        >>> sd = read_state_dict("open_clip_model.safetensors")  # doctest: +SKIP
        >>> sd["logit_scale"].shape  # doctest: +SKIP
        ()
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (0 bytes)")
    if path.suffix in SAFETENSORS_SUFFIXES:
        state = _read_safetensors(path)
    elif path.suffix in TORCH_SUFFIXES:
        state = _read_torch(path)
    else:
        raise CheckpointError(f"{path}: unknown checkpoint format {path.suffix!r}; expected one of "
                              f"{SAFETENSORS_SUFFIXES + TORCH_SUFFIXES}")
    return _unwrap(state, path)


def _read_safetensors(path: Path, chunk_bytes: int = 64 * 2**20) -> dict[str, np.ndarray]:
    # The file is opened again for each ~64 MB of tensors: a mapped file's pages count in the process' memory while it
    # is open, so one open for the whole file would hold it twice at the peak (the mapping and the copies).
    from safetensors import safe_open
    header = _header(path)
    if any(meta["dtype"] == "BF16" for meta in header.values()):
        return _read_safetensors_bf16(path, header)
    chunks, current, size = [], [], 0
    for key in sorted(header, key=lambda k: header[k]["data_offsets"][0]):
        start, end = header[key]["data_offsets"]
        if current and size + end - start > chunk_bytes:
            chunks.append(current)
            current, size = [], 0
        current.append(key)
        size += end - start
    state = {}
    try:
        for keys in chunks + [current]:
            with safe_open(str(path), framework="numpy") as f:
                state.update((key, f.get_tensor(key)) for key in keys)
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    return state


def _header(path: Path) -> dict:
    """The safetensors header's tensor entries (``{key: {"dtype", "shape", "data_offsets"}}``), each checked."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error, MemoryError, OverflowError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (bad header: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a readable safetensors file (its header is not a JSON object)")
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    for key, meta in entries.items():
        problem = _header_entry_problem(meta)
        if problem:
            raise CheckpointError(f"{path}: not a readable safetensors file (header entry {key!r} {problem})")
    return entries


# The dtypes anyclip reads: safetensors' names -> numpy dtypes. BF16 has none in numpy: the bf16 reader below
# widens it to float32 through ml_dtypes, imported only when such a file is read.
_SAFETENSORS_DTYPES = {"BF16": None, "F16": np.float16, "F32": np.float32, "F64": np.float64,
                       "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64,
                       "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}


def _is_count(value) -> bool:
    """A JSON integer >= 0 (JSON's true / false arrive as Python bools, which are ints too: not counts)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _header_entry_problem(meta) -> str | None:
    """What is wrong with one tensor's header entry, or None: it needs a dtype name, a shape, [start, end) offsets."""
    if not isinstance(meta, dict):
        return "is not a table of dtype, shape and data_offsets"
    missing = [field for field in ("dtype", "shape", "data_offsets") if field not in meta]
    if missing:
        return "has no " + " or ".join(missing)
    offsets, shape = meta["data_offsets"], meta["shape"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        return f"has data_offsets {offsets!r}, not [start, end] byte offsets"
    if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
        return f"has shape {shape!r}, not a list of sizes"
    if meta["dtype"] not in _SAFETENSORS_DTYPES:
        return f"has dtype {meta['dtype']!r}, not one of {sorted(_SAFETENSORS_DTYPES)}"
    return None


def _read_safetensors_bf16(path: Path, header: dict) -> dict[str, np.ndarray]:
    # numpy has no bfloat16: widen through ml_dtypes (a keras dependency), using safetensors' own layout.
    import ml_dtypes
    out = {}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        base = 8 + n
        for key, meta in header.items():
            start, end = meta["data_offsets"]
            f.seek(base + start)
            raw = f.read(end - start)
            dtype = ml_dtypes.bfloat16 if meta["dtype"] == "BF16" else _SAFETENSORS_DTYPES[meta["dtype"]]
            arr = np.frombuffer(raw, dtype=dtype).reshape(meta["shape"])
            out[key] = arr.astype(np.float32) if meta["dtype"] == "BF16" else arr.copy()
    return out


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{path}: reading PyTorch checkpoints needs torch (pip install 'anyclip[torch]'), "
            "or convert the file to .safetensors") from None
    import zipfile
    is_jit = zipfile.is_zipfile(path) and any(
        name.endswith("constants.pkl") for name in zipfile.ZipFile(path).namelist())
    try:
        if is_jit:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
            state = {k: v for k, v in state.items() if k not in _OPENAI_JIT_EXTRAS}
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad / unsafe pickles
        raise CheckpointError(f"{path}: cannot read as a safe PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.dtype in (torch.bfloat16, torch.float16):
                value = value.float()
            out[key] = value.numpy()
    return out


def _unwrap(state: Mapping, path: Path) -> dict[str, np.ndarray]:
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not state:
        raise CheckpointError(f"{path}: checkpoint holds no tensors")
    keys = list(state)
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in keys):
            state = {k[len(prefix):]: v for k, v in state.items()}
            keys = list(state)
    return {k: np.asarray(v) for k, v in state.items()}


def save_safetensors(state: Mapping[str, np.ndarray], path: str | os.PathLike,
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``state`` as a safetensors file atomically (temp file in the same folder, then rename).

    Example:
        >>> save_safetensors({"w": np.zeros(3, "float32")}, "/tmp/w.safetensors")  # doctest: +SKIP
    """
    from safetensors.numpy import save_file
    contiguous = {k: np.ascontiguousarray(v) for k, v in state.items()}
    return atomic_write(path, lambda tmp: save_file(contiguous, tmp, metadata=dict(metadata or {})))
