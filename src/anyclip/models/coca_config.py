"""CoCa model configs: a CLIP config plus ``multimodal_cfg``, the captioning text decoder.

``CLIPConfig.from_dict`` returns a :class:`CoCaConfig` for every config that has ``multimodal_cfg``
(open_clip builds its ``CoCa`` class for those), so ``get_model_config("coca_ViT-B-32")`` is one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .config import CLIPConfig, ConfigError, TextConfig, VisionConfig, _check_fields, _pos_int, _require


@dataclasses.dataclass(frozen=True)
class MultimodalConfig:
    """The CoCa text decoder (open_clip ``MultimodalCfg``): causal self-attention blocks interleaved with
    cross-attention blocks over the image tokens, then ``ln_final`` and a projection to the vocabulary.

    As in open_clip, the decoder's MLP is always 4x wide and its output size is ``text_cfg.vocab_size``;
    ``mlp_ratio``, ``dim_head``, ``n_queries``, ``attn_pooler_heads`` and ``vocab_size`` are accepted for
    the schema but not used.

    Example:
        >>> MultimodalConfig(width=512, heads=8, layers=12, context_length=76).head_dim
        64
    """

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4
    ls_init_value: float | None = None
    dim_head: int = 64
    n_queries: int = 256
    attn_pooler_heads: int = 8

    def __post_init__(self):
        w = "multimodal_cfg"
        for name in ("context_length", "vocab_size", "width", "heads", "layers", "dim_head", "n_queries",
                     "attn_pooler_heads"):
            _pos_int(getattr(self, name), f"{w}.{name}")
        _require(self.width % self.heads == 0, f"{w}.heads",
                 f"width {self.width} is not divisible by heads {self.heads}")
        _require(self.ls_init_value is None or isinstance(self.ls_init_value, (int, float)),
                 f"{w}.ls_init_value", f"must be a number or null, got {self.ls_init_value!r}")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def mlp_width(self) -> int:
        return 4 * self.width  # open_clip's decoder ignores mlp_ratio


@dataclasses.dataclass(frozen=True)
class CoCaConfig(CLIPConfig):
    """A CoCa model: image and text towers (with tokens) + :class:`MultimodalConfig` caption decoder.

    Example:
        >>> from anyclip.models.config import get_model_config
        >>> get_model_config("coca_ViT-B-32").multimodal_cfg.layers
        12
    """

    multimodal_cfg: MultimodalConfig = dataclasses.field(default_factory=MultimodalConfig)

    def __post_init__(self):
        super().__post_init__()
        _require(type(self.vision_cfg) is VisionConfig, "vision_cfg",
                 "CoCa with a ModifiedResNet image tower is not implemented (open_clip has no such model)")
        _require(self.custom_text is True, "custom_text",
                 "a config with multimodal_cfg (CoCa) needs custom_text: true, as in open_clip")
        vision, text, mm = self.vision_cfg, self.text_cfg, self.multimodal_cfg
        pooled = getattr(vision, "attentional_pool", False)
        image_width = self.embed_dim if pooled else vision.width
        _require(image_width == mm.width, "multimodal_cfg.width",
                 f"the decoder attends to image tokens of width {image_width} "
                 f"({'embed_dim, attentional_pool' if pooled else 'vision_cfg.width'}), so its width must be "
                 f"{image_width}, got {mm.width}")
        text_width, what = (text.width, "text_cfg.width") if isinstance(text, TextConfig) else \
            (text.arch.width, f"the width of {text.hf_model_name}")
        _require(text_width == mm.width, "multimodal_cfg.width",
                 f"the decoder reads the text tower's tokens ({what}={text_width}); got {mm.width}")
        if pooled:
            _require(self.embed_dim % vision.attn_pooler_heads == 0, "vision_cfg.attn_pooler_heads",
                     f"embed_dim {self.embed_dim} is not divisible by {vision.attn_pooler_heads} heads")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "CoCaConfig":
        """Validate an open_clip CoCa config dict (``multimodal_cfg`` required).

        Example:
            >>> cfg = CoCaConfig.from_dict({"embed_dim": 32, "custom_text": True,
            ...     "vision_cfg": {"layers": 1, "width": 64, "patch_size": 16, "image_size": 32},
            ...     "text_cfg": {"layers": 1, "width": 64, "heads": 2, "embed_cls": True},
            ...     "multimodal_cfg": {"layers": 1, "width": 64, "heads": 2}})
            >>> cfg.multimodal_cfg.mlp_width
            256
        """
        values = dict(values)
        mm = values.pop("multimodal_cfg", None)
        if not isinstance(mm, Mapping):
            raise ConfigError(f"config.multimodal_cfg must be an object, got {type(mm).__name__}")
        base = CLIPConfig.from_dict(values)
        try:
            mm_cfg = MultimodalConfig(**_check_fields(MultimodalConfig, mm, "multimodal_cfg"))
            fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(CLIPConfig)}
            return cls(**fields, multimodal_cfg=mm_cfg)
        except TypeError as e:
            raise ConfigError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        """The open_clip-schema dict, ``multimodal_cfg`` included (round-trips through ``from_dict``)."""
        out = super().to_dict()
        out["multimodal_cfg"] = {k: v for k, v in out["multimodal_cfg"].items() if v is not None}
        return out
