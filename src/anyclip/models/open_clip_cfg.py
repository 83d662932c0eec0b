"""open_clip's config-level public API: ``CLIPVisionCfg`` / ``CLIPTextCfg``, ``get_model_config`` (a dict),
the precision helpers and the model's preprocess / tokenize config accessors.

``CLIPVisionCfg`` and ``CLIPTextCfg`` have open_clip's fields and defaults; ``asdict(cfg)`` is the
``vision_cfg`` / ``text_cfg`` of a model config, which :class:`anyclip.CLIPConfig` validates.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any, Dict, Optional, Tuple, Union

from .config import model_config_file
from .preprocess import PreprocessConfig

__all__ = ["CLIPTextCfg", "CLIPVisionCfg", "get_cast_dtype", "get_input_dtype", "get_model_config",
           "get_model_preprocess_cfg", "get_model_tokenize_cfg", "set_model_preprocess_cfg"]


@dataclasses.dataclass
class CLIPVisionCfg:
    """open_clip's image tower options (``vision_cfg``), with its defaults.

    Example:
        >>> CLIPVisionCfg(layers=1, width=64, patch_size=16, image_size=32).head_width
        64
    """

    layers: Union[Tuple[int, int, int, int], int] = 12
    width: int = 768
    head_width: int = 64
    mlp_ratio: float = 4.0
    patch_size: int = 16
    image_size: Union[Tuple[int, int], int] = 224
    ls_init_value: Optional[float] = None
    patch_dropout: float = 0.0
    attentional_pool: bool = False
    attn_pooler_queries: int = 256
    attn_pooler_heads: int = 8
    no_ln_pre: bool = False
    pos_embed_type: str = "learnable"
    final_ln_after_pool: bool = False
    pool_type: str = "tok"
    output_tokens: bool = False
    act_kwargs: Optional[dict] = None
    norm_kwargs: Optional[dict] = None
    block_type: Optional[str] = None
    qk_norm: bool = False
    scaled_cosine_attn: bool = False
    scale_heads: bool = False
    scale_attn_inner: bool = False
    scale_attn: bool = False
    scale_fc: bool = False
    timm_model_name: Optional[str] = None
    timm_model_pretrained: bool = False
    timm_pool: str = "avg"
    timm_proj: str = "linear"
    timm_proj_bias: bool = False
    timm_drop: float = 0.0
    timm_drop_path: Optional[float] = None


@dataclasses.dataclass
class CLIPTextCfg:
    """open_clip's text tower options (``text_cfg``), with its defaults.

    Example:
        >>> CLIPTextCfg(width=64, heads=2, layers=1).context_length
        77
    """

    context_length: int = 77
    vocab_size: int = 49408
    hf_tokenizer_name: Optional[str] = None
    tokenizer_mode: Optional[str] = None
    tokenizer_kwargs: Optional[dict] = None
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    ls_init_value: Optional[float] = None
    embed_cls: bool = False
    pad_id: int = 0
    eos_id: int = 2
    no_causal_mask: bool = False
    final_ln_after_pool: bool = False
    pool_type: str = "argmax"
    proj_bias: bool = False
    proj_type: str = "linear"
    output_tokens: bool = False
    act_kwargs: Optional[dict] = None
    norm_kwargs: Optional[dict] = None
    block_type: Optional[str] = None
    qk_norm: bool = False
    scaled_cosine_attn: bool = False
    scale_heads: bool = False
    scale_attn_inner: bool = False
    scale_attn: bool = False
    scale_fc: bool = False
    hf_model_name: Optional[str] = None
    hf_model_pretrained: bool = True
    hf_proj_type: str = "mlp"
    hf_pooler_type: str = "mean_pooler"


def get_model_config(model_name):
    """A model's config as open_clip's dict (a fresh copy), or None for an unknown name.

    Example:
        >>> get_model_config("ViT-B-32")["embed_dim"]
        512
        >>> get_model_config("no-such-model") is None
        True
    """
    file = model_config_file(model_name)
    if file is None:
        return None
    data = json.loads(file.read_text(encoding="utf-8"))
    return copy.deepcopy(data.get("model_cfg", data))


def get_cast_dtype(precision: str):
    """The dtype open_clip casts the model to for ``precision`` (``"bfloat16"``, ``"float16"`` or None).

    anyclip names dtypes as strings (Keras dtype names) where open_clip returns ``torch.dtype``.

    Example:
        >>> get_cast_dtype("bf16"), get_cast_dtype("amp")
        ('bfloat16', None)
    """
    return {"bf16": "bfloat16", "fp16": "float16"}.get(precision)


def get_input_dtype(precision: str):
    """The dtype open_clip casts the inputs to for ``precision`` (``"bfloat16"``, ``"float16"`` or None).

    Example:
        >>> get_input_dtype("pure_fp16"), get_input_dtype("fp32")
        ('float16', None)
    """
    return {"bf16": "bfloat16", "pure_bf16": "bfloat16", "fp16": "float16", "pure_fp16": "float16"}.get(precision)


def get_model_preprocess_cfg(model):
    """The model's preprocessing as open_clip's dict (``size``, ``mode``, ``mean``, ``std``, ...).

    Example:
        >>> get_model_preprocess_cfg(anyclip.create_model("ViT-B-32"))["size"]  # doctest: +SKIP
        224
    """
    cfg = getattr(model, "preprocess_cfg", None)
    if cfg is None:
        size = getattr(model, "image_size", None)
        return {} if size is None else {"size": size}
    return {"size": cfg.size, "mode": "RGB", "mean": cfg.mean, "std": cfg.std,
            "interpolation": cfg.interpolation, "resize_mode": cfg.resize_mode, "fill_color": cfg.fill_color}


def set_model_preprocess_cfg(model, preprocess_cfg: Dict[str, Any]):
    """Set the preprocessing the model's transforms use, from open_clip's dict (``mean`` and ``std`` required).

    Example:
        >>> set_model_preprocess_cfg(model, {"size": 224, "mean": (0.5,) * 3, "std": (0.5,) * 3})  # doctest: +SKIP
    """
    missing = [k for k in ("mean", "std") if k not in preprocess_cfg]
    if missing:
        raise KeyError(f"set_model_preprocess_cfg: preprocess_cfg needs {missing}")
    base = getattr(model, "preprocess_cfg", None)
    values = {**(base.to_dict() if base is not None else {"size": model.image_size}), **preprocess_cfg}
    model.preprocess_cfg = PreprocessConfig.from_dict(values)


def get_model_tokenize_cfg(model):
    """``{"context_length", "vocab_size"}`` of the model's text tower, as open_clip.

    Example:
        >>> get_model_tokenize_cfg(anyclip.create_model("ViT-B-32"))  # doctest: +SKIP
        {'context_length': 77, 'vocab_size': 49408}
    """
    out = {}
    config = getattr(model, "config", None)
    text_cfg = getattr(config, "text_cfg", None)
    context_length = getattr(model, "context_length", None)
    if context_length is not None:
        out["context_length"] = context_length
    vocab_size = getattr(getattr(model, "text", None), "vocab_size", None) or getattr(text_cfg, "vocab_size", None)
    if vocab_size is not None:
        out["vocab_size"] = vocab_size
    return out
