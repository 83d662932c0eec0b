"""What every tower config shares: :class:`ConfigError` and the field checks that validate configs at the edge.

Tower configs are frozen dataclasses in open_clip's JSON schema (``vision_cfg`` / ``text_cfg`` keys); each checks
its values in ``__post_init__`` and names the offending key in the :class:`ConfigError` it raises.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping


class ConfigError(ValueError):
    """A model config has an unknown key or an invalid value."""



# open_clip's defaults of the timm keys: a vision_cfg without timm_model_name may hold them (open_clip ignores them).
_TIMM_DEFAULTS = {"timm_model_name": None, "timm_model_pretrained": False, "timm_pool": "avg", "timm_proj": "linear",
                  "timm_proj_bias": False, "timm_drop": 0.0, "timm_drop_path": None}



# Accepted when they hold their open_clip default; any other value needs another block type.
_DEFAULT_ONLY = {
    "attentional_pool": False, "pos_embed_type": "learnable", "output_tokens": False,
    "block_type": None, "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False,
    "scale_attn_inner": False, "scale_attn": False, "scale_fc": False, "embed_cls": False,
    "act_kwargs": None, "norm_kwargs": None, "final_ln_after_pool": False, "attn_pooler_queries": 256,
    "attn_pooler_heads": 8, "proj_type": "linear", "tokenizer_mode": None,
}



def _check_fields(cls, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        if key in names:
            out[key] = value
        elif key in _DEFAULT_ONLY:
            if value != _DEFAULT_ONLY[key]:
                raise ConfigError(f"{where}.{key}={value!r} is not supported by the native ViT/text "
                                  f"towers (only {_DEFAULT_ONLY[key]!r})")
        else:
            hint = difflib.get_close_matches(key, sorted(names), n=1)
            raise ConfigError(f"unknown key {where}.{key!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
    return out



def _require(cond: bool, where: str, message: str):
    if not cond:
        raise ConfigError(f"{where}: {message}")


def is_positive_int(value) -> bool:
    """A JSON integer above 0: ``True``/``False`` are ``int`` in Python but are refused (``3.0`` too)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _pos_int(value, where):
    _require(is_positive_int(value), where,
             f"must be a positive integer, got {value!r}")


def _pair(value, where) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        _require(len(value) == 2, where, f"must be an int or a pair, got {value!r}")
        _pos_int(value[0], where), _pos_int(value[1], where)
        return int(value[0]), int(value[1])
    _pos_int(value, where)
    return int(value), int(value)
