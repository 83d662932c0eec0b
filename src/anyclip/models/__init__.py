"""Model towers and configs. One module per tower; configs ship as JSON in ``configs/``."""

from .clip import CLIP, l2_normalize
from .config import CLIPConfig, ConfigError, TextConfig, VisionConfig, get_model_config
from .text_transformer import TextTransformer
from .vision_transformer import VisionTransformer

__all__ = ["CLIP", "CLIPConfig", "ConfigError", "TextConfig", "TextTransformer", "VisionConfig",
           "VisionTransformer", "get_model_config", "l2_normalize"]
