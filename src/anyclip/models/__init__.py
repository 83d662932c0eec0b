"""Model towers and configs. One module per tower; configs ship as JSON in ``configs/``."""

from .clip import CLIP, l2_normalize
from .coca import CoCa
from .coca_config import CoCaConfig, MultimodalConfig
from .coca_generate import decode_captions
from .config import CLIPConfig, ConfigError, ModifiedResNetConfig, TextConfig, VisionConfig, get_model_config
from .hf_configs import HFTextConfig
from .hf_text import HFTextEncoder
from .modified_resnet import ModifiedResNet
from .text_transformer import TextTransformer
from .timm_config import TimmViTConfig
from .timm_convnext import TimmConvNeXt
from .timm_eva import TimmEva
from .timm_eva_config import TimmEvaConfig
from .timm_fastvit import TimmFastViT, reparameterize
from .timm_fastvit_config import TimmFastViTConfig
from .timm_pooled import TimmConvNeXtConfig, TimmSwinConfig
from .timm_swin import TimmSwin
from .timm_vit import TimmViT
from .vision_transformer import VisionTransformer

__all__ = [
    "CLIP", "CLIPConfig", "CoCa", "CoCaConfig", "ConfigError", "HFTextConfig", "HFTextEncoder", "ModifiedResNet",
    "ModifiedResNetConfig", "MultimodalConfig", "TextConfig", "TextTransformer", "TimmConvNeXt", "TimmConvNeXtConfig",
    "TimmEva", "TimmEvaConfig", "TimmFastViT", "TimmFastViTConfig", "TimmSwin", "TimmSwinConfig", "TimmViT",
    "TimmViTConfig", "VisionConfig", "VisionTransformer", "decode_captions", "get_model_config", "l2_normalize",
    "reparameterize",
]
