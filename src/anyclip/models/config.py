"""Typed model configs in open_clip's JSON schema, validated on load.

A model config is ``{"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", ...}`` exactly as open_clip
writes it, so open_clip's ``model_configs/*.json`` and the ``open_clip_config.json`` files on the
Hugging Face hub load unchanged. Unknown keys and bad values raise :class:`ConfigError` naming the
offending key; open_clip options the towers do not use are accepted at their defaults only.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from ..towers.config import ConfigError, _check_fields, _pos_int, _require
from ..towers.openai.coca_decoder import MultimodalConfig
from ..towers.openai.text_transformer import TextConfig
from ..towers.openai.vision_transformer import VisionConfig
from ..towers.registry import text_config, vision_config


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    """A two-tower CLIP model: ``embed_dim``, vision and text towers, activation and logit init."""

    embed_dim: int
    vision_cfg: VisionConfig
    text_cfg: TextConfig
    quick_gelu: bool = False
    init_logit_scale: float = math.log(1 / 0.07)
    init_logit_bias: float | None = None
    custom_text: bool = False

    def __post_init__(self):
        _pos_int(self.embed_dim, "embed_dim")
        _require(isinstance(self.quick_gelu, bool), "quick_gelu", f"must be true/false, got {self.quick_gelu!r}")
        text = self.text_cfg
        if isinstance(text, TextConfig):
            _require(not (self.quick_gelu and text.act_kwargs), "text_cfg.act_kwargs",
                     "QuickGELU takes no options (open_clip fails on quick_gelu with act_kwargs)")
            _require(text.proj_type == "linear" or text.width == self.embed_dim, "text_cfg.proj_type",
                     f"'none' needs text_cfg.width ({text.width}) equal to embed_dim ({self.embed_dim})")
        width = getattr(self.vision_cfg, "unprojected_width", None)  # timm towers with timm_proj 'none'
        _require(width is None or width == self.embed_dim, "vision_cfg.timm_proj",
                 f"'none' needs the timm model's width ({width}) equal to embed_dim ({self.embed_dim})")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "CLIPConfig":
        """Validate an open_clip-schema dict.

        Example:
            >>> CLIPConfig.from_dict({"embed_dim": 8, "vision_cfg": {"layers": 1, "width": 64,
            ...     "patch_size": 16, "image_size": 32}, "text_cfg": {"layers": 1, "width": 32,
            ...     "heads": 2}}).vision_cfg.heads
            1
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"a model config must be a JSON object, got {type(values).__name__}")
        if cls is CLIPConfig and "multimodal_cfg" in values:  # open_clip builds CoCa for these
            from .config import CoCaConfig
            return CoCaConfig.from_dict(values)
        top = _check_fields(cls, values, "config")
        for key in ("embed_dim", "vision_cfg", "text_cfg"):
            if key not in top:
                raise ConfigError(f"config is missing required key {key!r}")
        for key in ("vision_cfg", "text_cfg"):
            if not isinstance(top[key], Mapping):
                raise ConfigError(f"config.{key} must be an object, got {type(top[key]).__name__}")
        try:
            top["vision_cfg"] = vision_config(top["vision_cfg"])
            top["text_cfg"] = text_config(top["text_cfg"])
            return cls(**top)
        except TypeError as e:  # wrong types that dataclass construction itself rejects
            raise ConfigError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        """The open_clip-schema dict (round-trips through :meth:`from_dict`)."""
        out = dataclasses.asdict(self)
        for key in ("vision_cfg", "text_cfg"):
            # null hf_proj_type / hf_pooler_type / timm_proj differ from their defaults: keep them
            keep = ("hf_proj_type", "hf_pooler_type", "timm_proj")
            out[key] = {k: v for k, v in out[key].items() if v is not None or k in keep}
        if out["init_logit_bias"] is None:
            del out["init_logit_bias"]
        return out


# Config files added at run time with add_model_config (open_clip's registry semantics): name -> path.
# The one piece of process state in this module, as in open_clip; nothing else writes it.
_ADDED_CONFIGS: dict[str, Path] = {}


def add_model_config(path: str | Path) -> None:
    """Register a JSON model config file, or every ``*.json`` in a folder, under its file stem.

    Afterwards ``create_model(stem)``, ``get_model_config(stem)`` and ``list_models()`` know it, as in open_clip.
    Each file is validated when added (a bad one raises :class:`ConfigError` naming it).

    Example:
        >>> add_model_config("my_configs/")  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.glob("*.json"))
    else:
        raise FileNotFoundError(f"add_model_config: {path} is neither a JSON file nor a folder")
    for file in files:
        load_config_file(file)
        _ADDED_CONFIGS[file.stem] = file


def builtin_config_names() -> list[str]:
    """Names of the model configs shipped with anyclip (and added ones), sorted like open_clip's ``list_models``."""
    files = resources.files("anyclip.models").joinpath("configs")
    names = {p.name[:-5] for p in files.iterdir() if p.name.endswith(".json")} | set(_ADDED_CONFIGS)
    return sorted(names, key=_natural_key)


def model_config_file(name: str) -> Path | None:
    """The JSON file behind a model name (an added config first, then a shipped one), or None."""
    if name in _ADDED_CONFIGS:
        return _ADDED_CONFIGS[name]
    file = resources.files("anyclip.models").joinpath("configs", f"{name}.json")
    return Path(str(file)) if file.is_file() else None


def _natural_key(name: str):
    import re
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name.lower())]


def load_config_file(path: str | Path) -> CLIPConfig:
    """Read and validate a JSON model config file (a path or a shipped config name)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, Mapping) and "model_cfg" in data:  # open_clip_config.json on the hub
        data = data["model_cfg"]
    try:
        return CLIPConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def get_model_config(name: str) -> CLIPConfig:
    """The validated config of a shipped model, e.g. ``get_model_config("ViT-B-32")``."""
    file = model_config_file(name)
    if file is None:
        names = builtin_config_names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See anyclip.list_models()."
        raise ConfigError(f"unknown model {name!r}.{hint}")
    return load_config_file(file)


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
