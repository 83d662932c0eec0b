"""open_clip state_dict <-> anyclip variables: a declarative rename table and a strict merge.

Each tower module declares ``WEIGHT_TABLE`` rows ``(open_clip key, attribute path, transform)``;
``{i}`` rows expand over the transformer blocks with :data:`BLOCK_TABLE`. :func:`load_state_dict`
checks the whole checkpoint before touching the model: every key used, every variable set, every
shape equal, every value finite; otherwise one :class:`WeightMismatchError` lists all problems.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import numpy as np

from ..layers.backend import assign_from_host
from ..layers.position import resize_image_pos_embed, resize_text_pos_embed
from ..towers.base import table_entries

# name -> (open_clip array -> ours, ours -> open_clip array)
TRANSFORMS = {
    None: (lambda a: a, lambda a: a),
    "linear": (lambda a: a.T, lambda a: a.T),  # torch Linear (out, in) <-> Dense kernel (in, out)
    "conv": (lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1)),  # OIHW <-> HWIO
}


class WeightMismatchError(ValueError):
    """A checkpoint does not fit the model; the message lists every offending key.

    Example:
        >>> anyclip.load_checkpoint(model, "other_model.safetensors")  # doctest: +SKIP
        WeightMismatchError: 1 shape mismatch: visual.conv1.weight: checkpoint (768, 3, 16, 16), model (768, 3, 32, 32)
    """


def _custom_text(model) -> bool:
    """Whether open_clip keeps the text tower's keys under ``text.`` (a ``CustomTextCLIP``).

    Hugging Face text towers always are; native ones when the config says ``custom_text``.
    """
    return bool(model.config.custom_text or getattr(model.text, "CUSTOM_TEXT", False))


def model_entries(model) -> dict[str, tuple[object, str | None]]:
    """``{open_clip key: (variable, transform)}`` for a whole CLIP model.

    Example:
        >>> model_entries(anyclip.create_model("ViT-B-32"))["logit_scale"][1] is None  # doctest: +SKIP
        True
    """
    entries = model.visual.weight_entries("visual.")
    entries.update(model.text.weight_entries("text." if _custom_text(model) else ""))
    decoder = getattr(model, "text_decoder", None)  # CoCa's caption decoder
    if decoder is not None:
        entries.update(table_entries(decoder, decoder.WEIGHT_TABLE, "text_decoder."))
    entries["logit_scale"] = (model.logit_scale, None)
    if model.logit_bias is not None:
        entries["logit_bias"] = (model.logit_bias, None)
    return entries


def _check_coverage(model, entries):
    mapped = {id(v) for v, _ in entries.values()}
    unmapped = [v.path for v in model.weights if id(v) not in mapped and "seed_generator" not in v.path]
    if unmapped:  # a programming error in a WEIGHT_TABLE, not a user error
        raise RuntimeError(f"anyclip variables with no open_clip key: {unmapped}")


def adapt_state_dict(model, state: Mapping[str, np.ndarray], resize_pos_embed: bool = False) -> dict[str, np.ndarray]:
    """open_clip's load-time fix-ups: text-tower prefix, scalar logit scale/bias; position resizes if asked.

    ``resize_pos_embed=True`` interpolates image / text positional embeddings made for another grid or
    context length to the model's (open_clip always does); otherwise they are left for the shape check.

    Example:
        >>> state = adapt_state_dict(model, read_state_dict("old_checkpoint.pt"))  # doctest: +SKIP
    """
    state = dict(state)
    # open_clip drops this buffer, saved by transformers < 4.31 with RoBERTa-family towers
    state.pop("text.transformer.embeddings.position_ids", None)
    custom = _custom_text(model)
    has_root_text = "positional_embedding" in state
    if custom and has_root_text:  # old-style checkpoint into a custom-text model
        state = {("text." + k if _is_text_key(k) else k): v for k, v in state.items()}
    elif not custom and "text.positional_embedding" in state and not has_root_text:
        state = {(k[5:] if k.startswith("text.") else k): v for k, v in state.items()}
    for key in ("logit_scale", "logit_bias"):
        if key in state and state[key].shape != ():
            if state[key].size == 1:
                state[key] = state[key].reshape(())
    if "logit_bias" not in state and model.logit_bias is not None and "logit_scale" in state:
        state["logit_bias"] = np.zeros_like(state["logit_scale"])
    # torch fills a missing BatchNorm num_batches_tracked with the module's current count when the state dict
    # has no version metadata (checkpoint files, FrozenBatchNorm2d saves): keep the variable's current value.
    for key, (var, _) in model_entries(model).items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = np.asarray(_to_numpy(var), dtype=np.int64)
    if not resize_pos_embed:
        return state
    key = "visual.positional_embedding"
    want = tuple(getattr(model.visual, "positional_embedding", np.empty(0)).shape)
    if len(want) == 2 and key in state and state[key].ndim == 2 and state[key].shape[1] == want[1] and state[key].shape[0] != want[0]:
        grid = model.config.vision_cfg.grid_size
        old = state[key].shape[0] - 1
        if math.isqrt(old) ** 2 == old:
            state[key] = resize_image_pos_embed(state[key], grid)
    tkey = "text.positional_embedding" if custom else "positional_embedding"
    want = tuple(getattr(model.text, "positional_embedding", np.empty(0)).shape)
    if len(want) == 2 and tkey in state and state[tkey].ndim == 2 and state[tkey].shape[1] == want[1] and state[tkey].shape[0] != want[0]:
        state[tkey] = resize_text_pos_embed(state[tkey], want[0])
    hook = getattr(model.visual, "adapt_state_dict", None)  # tower-specific fix-ups (timm towers: pos_embed resize)
    if hook is not None:
        state = hook(state, "visual.")
    return state


def _to_numpy(var) -> np.ndarray:
    import keras
    return np.asarray(keras.ops.convert_to_numpy(var.value))


def _is_text_key(key: str) -> bool:
    return key.split(".")[0] in ("token_embedding", "positional_embedding", "transformer", "ln_final",
                                 "text_projection")


class IncompatibleKeys(NamedTuple):
    """What a non-strict load left out, as torch's ``load_state_dict`` result (open_clip returns it)."""

    missing_keys: list
    unexpected_keys: list


def load_state_dict(model, state: Mapping[str, np.ndarray], source: str = "checkpoint",
                    strict: bool = True, resize_pos_embed: bool = False, copy: bool = True) -> IncompatibleKeys:
    """Assign an open_clip state dict to ``model`` (all or nothing) and return the keys left out.

    ``strict=False`` loads the keys the model has and returns the missing and unexpected ones instead of
    raising; a shape mismatch or a non-finite tensor still raises, as in torch. A positional embedding made
    for another image size or context length is a shape mismatch too unless ``resize_pos_embed=True``
    (then it is interpolated, as open_clip's ``load_checkpoint`` always does). ``copy=False`` hands the arrays
    over: the model may keep their memory (JAX on a CPU), and ``state`` (a dict) is emptied so that each array's
    memory goes as soon as it is loaded; pass it only for a state dict nothing else uses, such as a file just read.

    Example:
        >>> load_state_dict(model, read_state_dict("open_clip_model.safetensors"), copy=False)  # doctest: +SKIP
    """
    entries = model_entries(model)
    _check_coverage(model, entries)
    given, state = state, adapt_state_dict(model, state, resize_pos_embed=resize_pos_embed)
    missing, unexpected, mismatched, ready = [], [], [], []
    for key in sorted(set(entries) - set(state)):
        missing.append(f"missing key {key!r} (anyclip expects shape {_torch_shape(entries[key])})")
    for key in sorted(set(state) - set(entries)):
        unexpected.append(f"unexpected key {key!r} with shape {tuple(state[key].shape)} (not used by this model)")
    for key in sorted(set(entries) & set(state)):
        var, transform = entries[key]
        value = np.asarray(state[key])
        expected = _torch_shape(entries[key])
        if tuple(value.shape) != expected:
            hint = _POS_HINT if key.endswith(_POS_KEYS) else ""
            mismatched.append(f"shape mismatch for {key!r}: checkpoint {tuple(value.shape)}, model {expected}{hint}")
            continue
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).sum())
            mismatched.append(f"non-finite values in {key!r} ({bad} of {value.size} are NaN/inf)")
            continue
        ready.append((var, TRANSFORMS[transform][0](value)))
    incompatible = IncompatibleKeys(sorted(set(entries) - set(state)), sorted(set(state) - set(entries)))
    if not strict:
        missing, unexpected = [], []
    problems = mismatched + missing + unexpected
    if problems:
        shown = [line for group in (mismatched, missing, unexpected) for line in
                 group[:20] + ([f"... and {len(group) - 20} more like it"] if len(group) > 20 else [])]
        raise WeightMismatchError(
            f"{source} does not fit model {model.name!r}: {len(mismatched)} bad tensor(s), {len(missing)} missing "
            f"key(s), {len(unexpected)} unexpected key(s):\n  " + "\n  ".join(shown))
    if not copy:  # the arrays now live in `ready` alone: each goes once it is loaded
        state.clear()
        if isinstance(given, dict):
            given.clear()
    del state, given
    _assign_all(ready, copy)
    return incompatible


def _assign_all(pairs: list, copy: bool) -> None:
    """Set each ``(variable, numpy array)`` pair, one group of about 64 MB at a time; ``pairs`` is emptied.

    With ``copy`` the variables never share the arrays' memory (the caller's state dict, or a reference model
    sharing it, must not change this model); an array cast to the variable's dtype is already a copy of its own.
    Old buffers go as they are replaced, so little more than one group exists twice at a time.
    """
    groups = _groups(pairs, _TRANSFER_BYTES)
    pairs.clear()
    while groups:
        group = groups.pop(0)
        variables = [var for var, _ in group]
        targets = [_np_dtype(var) for var, _ in group]
        casts = [value.dtype != target for (_, value), target in zip(group, targets)]
        values = [value.astype(target) if cast else value for (_, value), target, cast in zip(group, targets, casts)]
        del group
        assign_from_host(variables, values, shared=[copy and not cast for cast in casts])
        del variables, values


_TRANSFER_BYTES = 64 * 2**20  # at most about this much of the new weights exists beside the old ones


def _groups(pairs: list, limit: int) -> list[list]:
    """``(variable, array)`` pairs cut into consecutive groups of about ``limit`` bytes of arrays each."""
    groups, current, size = [], [], 0
    for pair in pairs:
        if current and size + pair[1].nbytes > limit:
            groups.append(current)
            current, size = [], 0
        current.append(pair)
        size += pair[1].nbytes
    return groups + ([current] if current else [])


_POS_KEYS = ("positional_embedding", "pos_embed")
_POS_HINT = (" (a checkpoint for another image size or context length: pass resize_pos_embed=True or "
             "--resize-pos-embed to interpolate it)")


def _np_dtype(var):
    name = str(var.dtype)
    return np.float32 if name in ("bfloat16", "float16") else name


def _torch_shape(entry) -> tuple[int, ...]:
    var, transform = entry
    shape = tuple(var.shape)
    probe = np.empty(shape, dtype=np.uint8)
    return tuple(TRANSFORMS[transform][1](probe).shape)


def export_state_dict(model) -> dict[str, np.ndarray]:
    """Our weights as an open_clip state dict (float32 numpy), loadable by ``open_clip`` strictly.

    Example:
        >>> sd = export_state_dict(model)  # doctest: +SKIP
        >>> sd["visual.conv1.weight"].shape  # doctest: +SKIP
        (768, 3, 32, 32)
    """
    import keras
    entries = model_entries(model)
    _check_coverage(model, entries)
    out = {}
    for key, (var, transform) in entries.items():
        value = np.asarray(keras.ops.convert_to_numpy(var.value))
        value = value.astype(np.int64 if np.issubdtype(value.dtype, np.integer) else np.float32)  # torch's dtypes
        value = TRANSFORMS[transform][1](value)
        out[key] = np.ascontiguousarray(value).reshape(value.shape)  # keep 0-d scalars 0-d, as torch saves them
    return out
