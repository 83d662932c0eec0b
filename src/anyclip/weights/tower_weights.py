"""Loading one tower's weights from a file: ``create_model(pretrained_image_path=, pretrained_text_path=)``."""

from __future__ import annotations

import os

from .checkpoint import read_state_dict
from .mapping import WeightMismatchError, _custom_text, load_state_dict, model_entries

__all__ = ["load_tower_weights"]


def load_tower_weights(model, path: str, prefix: str) -> None:
    """Load one tower's open_clip weights (keys relative to the tower) from ``path`` (``pretrained_*_path``).

    Example:
        >>> load_tower_weights(model, "visual.safetensors", "visual.")  # doctest: +SKIP
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained_{'image' if prefix == 'visual.' else 'text'}_path: {path} not found")
    state = read_state_dict(path)
    if prefix == "text." and not _custom_text(model):
        prefix = ""  # open_clip's CLIP keeps its native text tower at the root of the state dict
    wanted = {key for key in model_entries(model) if key.startswith(prefix) and key not in ("logit_scale", "logit_bias")
              and (prefix or not key.startswith("visual."))}
    state = {(k if k.startswith(prefix) else prefix + k): v for k, v in state.items()}
    result = load_state_dict(model, state, source=str(path), strict=False)
    missing = sorted(set(result.missing_keys) & wanted)
    if missing or result.unexpected_keys:
        raise WeightMismatchError(f"{path} does not fit the {'image' if prefix == 'visual.' else 'text'} tower: "
                                  f"missing {missing[:10]}, unexpected {result.unexpected_keys[:10]}")
