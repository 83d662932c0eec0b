"""Which anyclip module builds a timm model that open_clip names in ``vision_cfg.timm_model_name``.

open_clip hands the name to ``timm.create_model``; anyclip implements each supported name natively, one
tower family per module. A family is its config class (with ``TIMM_NAMES``, the timm names it builds) and
its Keras tower class.
"""

from __future__ import annotations

import importlib

from .config import ConfigError

# (config module, config class, tower module, tower class), one row per family.
_FAMILIES = (
    ("timm_config", "TimmViTConfig", "timm_vit", "TimmViT"),  # timm ViTs: SigLIP, ViT-M gap, relpos, MobileCLIP-B/L
    ("timm_eva_config", "TimmEvaConfig", "timm_eva", "TimmEva"),  # EVA, EVA02, PE-Core: timm's Eva
    ("timm_fastvit_config", "TimmFastViTConfig", "timm_fastvit", "TimmFastViT"),  # MobileCLIP: MCi FastViT
    ("timm_pooled", "TimmConvNeXtConfig", "timm_convnext", "TimmConvNeXt"),  # ConvNeXt (average-pool head)
    ("timm_pooled", "TimmSwinConfig", "timm_swin", "TimmSwin"),  # Swin Transformer (average-pool head)
)


def _load(module: str, attr: str):
    return getattr(importlib.import_module(f".{module}", __package__), attr)


def supported_timm_names() -> list[str]:
    """Every timm model name anyclip builds natively.

    Example:
        >>> "vit_base_patch16_siglip_224" in supported_timm_names()
        True
    """
    return sorted(n for cfg_mod, cfg_cls, _, _ in _FAMILIES for n in _load(cfg_mod, cfg_cls).TIMM_NAMES)


def timm_config_class(name):
    """The config class of the family that builds timm model ``name``; unknown names raise ``ConfigError``.

    Example:
        >>> timm_config_class("vit_base_patch16_siglip_224").__name__
        'TimmViTConfig'
    """
    for cfg_mod, cfg_cls, _, _ in _FAMILIES:
        cls = _load(cfg_mod, cfg_cls)
        if isinstance(name, str) and name in cls.TIMM_NAMES:
            return cls
    raise ConfigError(f"vision_cfg.timm_model_name={name!r} is not one of the timm vision towers anyclip "
                      f"implements; supported: {', '.join(supported_timm_names())}")


def timm_towers() -> dict:
    """Config class -> tower layer class, for every timm family."""
    return {_load(cfg_mod, cfg_cls): _load(tower_mod, tower_cls) for cfg_mod, cfg_cls, tower_mod, tower_cls in _FAMILIES}
