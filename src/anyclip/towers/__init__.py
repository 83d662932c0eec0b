"""Towers: the Keras layers that encode one modality (image, text) into features, laid out by origin.

``openai/`` holds OpenAI / open_clip's own towers (ViT, ModifiedResNet, text transformer, CoCa's decoder),
``timm/`` the timm image towers open_clip builds by ``timm_model_name``, ``hf/`` the Hugging Face text encoders.
Every tower subclasses :class:`Tower`; :mod:`anyclip.towers.registry` is the one table of families.
"""

from .base import Tower, lock_groups, table_entries
from .config import ConfigError
from .registry import (
           FAMILIES,
           Family,
           family,
           supported_timm_names,
           text_config,
           tower_class,
           vision_config,
)

__all__ = ["FAMILIES", "ConfigError", "Family", "Tower", "family", "lock_groups", "supported_timm_names",
           "table_entries", "text_config", "tower_class", "vision_config"]
