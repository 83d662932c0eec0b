"""The one registry of tower families: which config class and tower class build a ``vision_cfg`` / ``text_cfg``.

A :class:`Family` row names, for one family, its module (under ``anyclip.towers``), its tower and config classes,
the modality it encodes and how open_clip names what it builds; a timm family's config lists the timm model names
it implements (``TIMM_NAMES``), a Hugging Face family's module the ``config.json`` model types (``HF_MODEL_TYPES``).
Modules are imported on first use, so reading the table costs nothing. Selection follows open_clip's rules
(:func:`vision_config`, :func:`text_config`). Adding a family is one module plus one row here.

Example:
    >>> family("timm_eva").tower_class().__name__
    'TimmEva'
    >>> type(vision_config({"timm_model_name": "vit_base_patch16_siglip_224"})).__name__
    'TimmViTConfig'
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

from .config import _TIMM_DEFAULTS, ConfigError, _check_fields

_HF_KEYS = (("hf_model_name", None), ("hf_model_pretrained", True), ("hf_proj_type", "mlp"),
            ("hf_pooler_type", "mean_pooler"))  # open_clip's defaults, unused without a model name


@dataclasses.dataclass(frozen=True)
class Family:
    """One tower family: ``module`` (under ``anyclip.towers``) holds ``tower``; ``config`` is ``"module:Class"``.

    ``open_clip`` is the class open_clip builds for it; ``encoder`` (Hugging Face families) the encoder class in
    ``module`` that the shared ``HFTextEncoder`` tower wraps.
    """

    name: str
    modality: str
    module: str
    tower: str
    config: str
    open_clip: str
    encoder: str | None = None

    def _import(self, module: str):
        return importlib.import_module(f"anyclip.towers.{module}")

    def tower_class(self) -> type:
        """The Keras tower class (imports its module)."""
        if self.encoder is not None:
            return getattr(self._import("hf.text"), "HFTextEncoder")
        return getattr(self._import(self.module), self.tower)

    def config_class(self) -> type:
        """The config dataclass (imports its module)."""
        module, cls = self.config.split(":")
        return getattr(self._import(module), cls)

    def encoder_class(self) -> type | None:
        """A Hugging Face family's encoder class, else None."""
        return None if self.encoder is None else getattr(self._import(self.module), self.encoder)

    @property
    def timm_names(self) -> tuple[str, ...]:
        """The timm model names this family builds (``vision_cfg.timm_model_name``); empty for non-timm families."""
        return tuple(sorted(getattr(self.config_class(), "TIMM_NAMES", {})))

    @property
    def hf_model_types(self) -> tuple[str, ...]:
        """The Hugging Face ``model_type`` values this family reads; empty for non-HF families."""
        return tuple(getattr(self._import(self.module), "HF_MODEL_TYPES", {})) if self.encoder else ()

    def hf_defaults(self, model_type: str) -> dict:
        """transformers' defaults for the ``config.json`` keys of ``model_type`` that a file may leave out."""
        return dict(self._import(self.module).HF_MODEL_TYPES[model_type])

    @property
    def weight_table(self) -> tuple:
        """open_clip's weight names for the tower (Hugging Face families: the encoder's, under ``transformer.``)."""
        cls = self.encoder_class() or self.tower_class()
        return cls.WEIGHT_TABLE


FAMILIES: tuple[Family, ...] = (
    Family("vit", "image", "openai.vision_transformer", "VisionTransformer",
           "openai.vision_transformer:VisionConfig", "VisionTransformer"),
    Family("modified_resnet", "image", "openai.modified_resnet", "ModifiedResNet",
           "openai.modified_resnet:ModifiedResNetConfig", "ModifiedResNet"),
    Family("timm_vit", "image", "timm.vit", "TimmViT", "timm.vit_config:TimmViTConfig", "TimmModel"),
    Family("timm_eva", "image", "timm.eva", "TimmEva", "timm.eva_config:TimmEvaConfig", "TimmModel"),
    Family("timm_fastvit", "image", "timm.fastvit", "TimmFastViT", "timm.fastvit_config:TimmFastViTConfig",
           "TimmModel"),
    Family("timm_convnext", "image", "timm.convnext", "TimmConvNeXt", "timm.pooled:TimmConvNeXtConfig", "TimmModel"),
    Family("timm_swin", "image", "timm.swin", "TimmSwin", "timm.pooled:TimmSwinConfig", "TimmModel"),
    Family("text_transformer", "text", "openai.text_transformer", "TextTransformer",
           "openai.text_transformer:TextConfig", "TextTransformer"),
    Family("roberta", "text", "hf.roberta", "HFTextEncoder", "hf.config:HFTextConfig", "HFTextEncoder",
           encoder="RobertaEncoder"),
    Family("t5", "text", "hf.t5", "HFTextEncoder", "hf.config:HFTextConfig", "HFTextEncoder", encoder="T5Encoder"),
    Family("m2m100", "text", "hf.m2m100", "HFTextEncoder", "hf.config:HFTextConfig", "HFTextEncoder",
           encoder="M2M100Encoder"),
)


def family(name: str) -> Family:
    """The registry row called ``name``.

    Example:
        >>> family("vit").open_clip
        'VisionTransformer'
    """
    for row in FAMILIES:
        if row.name == name:
            return row
    raise KeyError(f"no tower family {name!r}; known: {', '.join(f.name for f in FAMILIES)}")


def supported_timm_names() -> list[str]:
    """Every timm model name anyclip builds natively.

    Example:
        >>> "vit_base_patch16_siglip_224" in supported_timm_names()
        True
    """
    return sorted(n for row in FAMILIES for n in row.timm_names)


def timm_family(name) -> Family:
    """The family that builds timm model ``name``; unknown names raise ``ConfigError`` listing the supported ones.

    Example:
        >>> timm_family("convnext_base").name
        'timm_convnext'
    """
    for row in FAMILIES:
        if isinstance(name, str) and name in row.timm_names:
            return row
    raise ConfigError(f"vision_cfg.timm_model_name={name!r} is not one of the timm vision towers anyclip "
                      f"implements; supported: {', '.join(supported_timm_names())}")


def hf_family(model_type) -> Family:
    """The Hugging Face family that reads ``config.json`` files of ``model_type``.

    Example:
        >>> hf_family("xlm-roberta").encoder
        'RobertaEncoder'
    """
    for row in FAMILIES:
        if model_type in row.hf_model_types:
            return row
    known = sorted(t for row in FAMILIES for t in row.hf_model_types)
    raise ConfigError(f"model_type {model_type!r} is not supported by anyclip's Hugging Face text towers "
                      f"(supported: {', '.join(known)})")


def vision_config(values: Mapping[str, Any]):
    """The config of the image tower that ``vision_cfg`` describes, validated (open_clip's selection rules).

    A ``timm_model_name`` selects that timm model's family; a list of stage depths in ``layers`` the
    ModifiedResNet; anything else the native ViT.

    Example:
        >>> vision_config({"layers": 2, "width": 64, "patch_size": 8, "image_size": 32}).grid_size
        (4, 4)
    """
    if values.get("timm_model_name"):  # a timm model name overrides layers, width, patch_size
        return timm_family(values["timm_model_name"]).config_class().from_values(values)
    values = dict(values)
    for key, default in _TIMM_DEFAULTS.items():
        if key in values and values.pop(key) not in (default, None, False, ""):
            raise ConfigError(f"vision_cfg.{key} is only used by timm vision towers; set vision_cfg.timm_model_name")
    if isinstance(values.get("layers"), (list, tuple)):  # a list of stage depths is a ResNet
        return family("modified_resnet").config_class().from_values(values)
    cls = family("vit").config_class()
    return cls(**_check_fields(cls, values, "vision_cfg"))


def text_config(values: Mapping[str, Any]):
    """The config of the text tower that ``text_cfg`` describes, validated (open_clip's selection rules).

    An ``hf_model_name`` selects a Hugging Face encoder (its family comes from that model's ``config.json``);
    anything else the native text transformer.

    Example:
        >>> text_config({"layers": 2, "width": 64, "heads": 2}).mlp_width
        256
    """
    if values.get("hf_model_name"):
        return family("roberta").config_class().from_dict(values)  # one config class for every HF family
    values = dict(values)
    for key, default in _HF_KEYS:
        if key in values and values.pop(key) not in (default, None, False, ""):
            raise ConfigError(f"text_cfg.{key} is only used by Hugging Face text towers; set text_cfg.hf_model_name")
    cls = family("text_transformer").config_class()
    return cls(**_check_fields(cls, values, "text_cfg"))


def tower_family(tower_cfg) -> Family:
    """The family whose config class ``tower_cfg`` is (Hugging Face configs: by their ``config.json`` model type).

    Example:
        >>> tower_family(vision_config({"layers": [1, 1, 1, 1], "width": 8, "image_size": 64})).name
        'modified_resnet'
    """
    model_type = getattr(getattr(tower_cfg, "arch", None), "model_type", None)
    for row in FAMILIES:
        if row.encoder is not None and model_type in row.hf_model_types:
            return row
        if row.encoder is None and type(tower_cfg) is row.config_class():
            return row
    raise TypeError(f"no tower family is registered for config type {type(tower_cfg).__name__}")


def tower_class(tower_cfg) -> type:
    """The tower layer class for a tower config: ``tower_class(VisionConfig())`` is ``VisionTransformer``."""
    return tower_family(tower_cfg).tower_class()
