"""Whole models: CLIP and CoCa built from a validated config, and the shipped model configs (``configs/*.json``).

The towers they assemble live in :mod:`anyclip.towers` (one family per module, one registry). Names load on
first use, so the light parts (``preprocess``, ``config``) can be read without Keras.
"""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "..towers.config": ("ConfigError",),
    "..towers.openai.modified_resnet": ("ModifiedResNetConfig",),
    "..towers.openai.text_transformer": ("TextConfig",),
    "..towers.openai.vision_transformer": ("VisionConfig",),
    ".clip": ("CLIP", "l2_normalize"),
    ".coca": ("CoCa",),
    ".config": ("CLIPConfig", "CoCaConfig", "builtin_config_names", "get_model_config", "load_config_file"),
    ".preprocess": ("PreprocessConfig",),
})
