"""Whole models: CLIP and CoCa built from a validated config, and the shipped model configs (``configs/*.json``).

The towers they assemble live in :mod:`anyclip.towers` (one family per module, one registry).
"""

from ..towers.config import ConfigError
from ..towers.openai.modified_resnet import ModifiedResNetConfig
from ..towers.openai.text_transformer import TextConfig
from ..towers.openai.vision_transformer import VisionConfig
from .clip import CLIP, l2_normalize
from .coca import CoCa
from .config import (
    CLIPConfig,
    CoCaConfig,
    builtin_config_names,
    get_model_config,
    load_config_file,
)

__all__ = [
    "CLIP", "CLIPConfig", "CoCa", "CoCaConfig", "ConfigError", "ModifiedResNetConfig", "PreprocessConfig", "TextConfig",
    "VisionConfig", "builtin_config_names", "get_model_config", "l2_normalize", "load_config_file",
]
