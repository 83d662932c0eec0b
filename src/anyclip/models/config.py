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


class ConfigError(ValueError):
    """A model config has an unknown key or an invalid value."""


# open_clip's defaults of the timm keys: a vision_cfg without timm_model_name may hold them (open_clip ignores them).
_TIMM_DEFAULTS = {"timm_model_name": None, "timm_model_pretrained": False, "timm_pool": "avg", "timm_proj": "linear",
                  "timm_proj_bias": False, "timm_drop": 0.0, "timm_drop_path": None}
# Accepted when they hold their open_clip default; any other value needs another block type.
_DEFAULT_ONLY = {
    "attentional_pool": False, "pos_embed_type": "learnable", "output_tokens": False,
    "block_type": None, "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False,
    "scale_attn_inner": False, "scale_attn": False, "scale_fc": False, "embed_cls": False,
    "act_kwargs": None, "norm_kwargs": None, "final_ln_after_pool": False, "attn_pooler_queries": 256,
    "attn_pooler_heads": 8, "proj_type": "linear", "tokenizer_mode": None,
}


def _check_fields(cls, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        if key in names:
            out[key] = value
        elif key in _DEFAULT_ONLY:
            if value != _DEFAULT_ONLY[key]:
                raise ConfigError(f"{where}.{key}={value!r} is not supported by the native ViT/text "
                                  f"towers (only {_DEFAULT_ONLY[key]!r})")
        else:
            hint = difflib.get_close_matches(key, sorted(names), n=1)
            raise ConfigError(f"unknown key {where}.{key!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
    return out


def _require(cond: bool, where: str, message: str):
    if not cond:
        raise ConfigError(f"{where}: {message}")


def _pos_int(value, where):
    _require(isinstance(value, int) and not isinstance(value, bool) and value > 0, where,
             f"must be a positive integer, got {value!r}")


def _pair(value, where) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        _require(len(value) == 2, where, f"must be an int or a pair, got {value!r}")
        _pos_int(value[0], where), _pos_int(value[1], where)
        return int(value[0]), int(value[1])
    _pos_int(value, where)
    return int(value), int(value)


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """Native vision transformer tower (open_clip ``CLIPVisionCfg`` fields)."""

    layers: int = 12
    width: int = 768
    head_width: int = 64
    mlp_ratio: float = 4.0
    patch_size: int | tuple[int, int] = 16
    image_size: int | tuple[int, int] = 224
    ls_init_value: float | None = None
    patch_dropout: float = 0.0
    no_ln_pre: bool = False
    final_ln_after_pool: bool = False
    pool_type: str = "tok"
    attentional_pool: bool = False  # CoCa: queries attend to the tokens; pool_type then picks among the queries
    attn_pooler_queries: int = 256
    attn_pooler_heads: int = 8
    output_tokens: bool = False  # kept for open_clip's schema; CoCa reads tokens through ``forward_tokens``

    def __post_init__(self):
        w = "vision_cfg"
        _require(isinstance(self.attentional_pool, bool), f"{w}.attentional_pool",
                 f"must be true/false (open_clip's experimental 'parallel'/'cascade' pools are not supported), "
                 f"got {self.attentional_pool!r}")
        _require(isinstance(self.output_tokens, bool), f"{w}.output_tokens",
                 f"must be true/false, got {self.output_tokens!r}")
        _pos_int(self.attn_pooler_heads, f"{w}.attn_pooler_heads")
        _pos_int(self.attn_pooler_queries, f"{w}.attn_pooler_queries")
        _require(not self.attentional_pool or self.pool_type == "avg" or self.attn_pooler_queries >= 2,
                 f"{w}.attn_pooler_queries", "token pooling over the attentional pool needs >= 2 queries "
                 "(the first is pooled, the others are the tokens)")
        _require(isinstance(self.layers, int) and self.layers > 0, f"{w}.layers",
                 f"must be a positive integer (a list of 4 selects ModifiedResNetConfig), got {self.layers!r}")
        _pos_int(self.width, f"{w}.width")
        _pos_int(self.head_width, f"{w}.head_width")
        _require(self.width % self.head_width == 0, f"{w}.head_width",
                 f"width {self.width} is not divisible by head_width {self.head_width}")
        _require(isinstance(self.mlp_ratio, (int, float)) and self.mlp_ratio > 0, f"{w}.mlp_ratio",
                 f"must be positive, got {self.mlp_ratio!r}")
        ps, ims = _pair(self.patch_size, f"{w}.patch_size"), _pair(self.image_size, f"{w}.image_size")
        _require(ims[0] >= ps[0] and ims[1] >= ps[1], f"{w}.image_size",
                 f"{self.image_size!r} is smaller than patch_size {self.patch_size!r}")
        _require(self.ls_init_value is None or isinstance(self.ls_init_value, (int, float)),
                 f"{w}.ls_init_value", f"must be a number or null, got {self.ls_init_value!r}")
        _require(isinstance(self.patch_dropout, (int, float)) and 0 <= self.patch_dropout < 1,
                 f"{w}.patch_dropout", f"must be in [0, 1), got {self.patch_dropout!r}")
        _require(self.pool_type in ("tok", "avg"), f"{w}.pool_type",
                 f"must be 'tok' or 'avg', got {self.pool_type!r}")

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid_size(self) -> tuple[int, int]:
        (ih, iw), (ph, pw) = _pair(self.image_size, ""), _pair(self.patch_size, "")
        return ih // ph, iw // pw

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)


# CLIPVisionCfg keys a ModifiedResNet does not use: accepted only at these values (open_clip ignores them).
_RESNET_UNUSED = {"patch_size": (None, 16), "mlp_ratio": (4.0,), "ls_init_value": (None,), "patch_dropout": (0.0,),
                  "no_ln_pre": (False,), "final_ln_after_pool": (False,), "pool_type": ("tok",)}


@dataclasses.dataclass(frozen=True)
class ModifiedResNetConfig:
    """OpenAI's ModifiedResNet image tower (RN50...); open_clip picks it when ``vision_cfg.layers`` is a list.

    ``layers``: Bottleneck blocks in each of the 4 stages; ``width``: stem width (stage widths are
    ``width * 4, 8, 16, 32``); the attention pool has ``width * 32 // head_width`` heads over a
    ``image_size // 32`` square grid.

    Example:
        >>> ModifiedResNetConfig(layers=[3, 4, 6, 3], width=64, image_size=224).grid_size
        (7, 7)
    """

    layers: list = dataclasses.field(default_factory=lambda: [3, 4, 6, 3])
    width: int = 64
    head_width: int = 64
    image_size: int = 224

    def __post_init__(self):
        w = "vision_cfg"
        ok = isinstance(self.layers, (list, tuple)) and len(self.layers) == 4 and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in self.layers)
        _require(ok, f"{w}.layers", f"a list selects the ModifiedResNet tower and must hold 4 positive integers "
                 f"(blocks per stage), got {self.layers!r}")
        object.__setattr__(self, "layers", [int(n) for n in self.layers])
        _require(isinstance(self.width, int) and not isinstance(self.width, bool) and self.width >= 2,
                 f"{w}.width", f"must be an integer >= 2, got {self.width!r}")
        _pos_int(self.head_width, f"{w}.head_width")
        embed = self.width * 32
        _require(self.head_width <= embed and embed % (embed // self.head_width) == 0, f"{w}.head_width",
                 f"{self.head_width} gives {embed // max(self.head_width, 1)} heads, which do not divide the "
                 f"attention-pool width {embed} (width * 32)")
        _require(isinstance(self.image_size, int) and not isinstance(self.image_size, bool), f"{w}.image_size",
                 f"ModifiedResNet takes one integer size, got {self.image_size!r}")
        _pos_int(self.image_size, f"{w}.image_size")
        grid = -(-self.image_size // 2) // 16  # stem conv (stride 2, padding 1), then four 2x poolings
        _require(self.image_size >= 32 and grid == self.image_size // 32, f"{w}.image_size",
                 f"{self.image_size} gives a {grid}x{grid} feature grid but an attention-pool grid of "
                 f"{self.image_size // 32}x{self.image_size // 32}; use a size >= 32 whose grids agree "
                 "(any multiple of 32 does)")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "ModifiedResNetConfig":
        """Validate a ``vision_cfg`` dict whose ``layers`` is a list (unused ViT keys must hold their defaults)."""
        values = dict(values)
        for key, allowed in _RESNET_UNUSED.items():
            if key in values and values.pop(key) not in allowed:
                raise ConfigError(f"vision_cfg.{key} is not used by the ModifiedResNet tower (layers is a list); "
                                  f"only {' or '.join(map(repr, allowed))} is accepted")
        return cls(**_check_fields(cls, values, "vision_cfg"))

    @property
    def heads(self) -> int:
        return self.width * 32 // self.head_width

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.image_size // 32, self.image_size // 32


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Native text transformer tower (open_clip ``CLIPTextCfg`` fields)."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    ls_init_value: float | None = None
    pad_id: int = 0
    eos_id: int = 2
    no_causal_mask: bool = False
    pool_type: str = "argmax"
    proj_bias: bool = False
    proj_type: str = "linear"  # "none": no text projection (the pooled features are the embedding)
    norm_kwargs: dict | None = None  # LayerNorm options: {"eps": 1e-6} (SigLIP)
    act_kwargs: dict | None = None  # GELU options: {"approximate": "tanh"} (SigLIP2)
    hf_tokenizer_name: str | None = None
    tokenizer_kwargs: dict | None = None
    embed_cls: bool = False  # CoCa: a learned token appended after the text, pooled (pool_type is then unused)
    output_tokens: bool = False  # kept for open_clip's schema; CoCa reads tokens through ``forward_tokens``

    def __post_init__(self):
        w = "text_cfg"
        for name in ("context_length", "vocab_size", "width", "heads", "layers"):
            _pos_int(getattr(self, name), f"{w}.{name}")
        for name in ("embed_cls", "output_tokens"):
            _require(isinstance(getattr(self, name), bool), f"{w}.{name}",
                     f"must be true/false, got {getattr(self, name)!r}")
        _require(self.width % self.heads == 0, f"{w}.heads",
                 f"width {self.width} is not divisible by heads {self.heads}")
        _require(isinstance(self.mlp_ratio, (int, float)) and self.mlp_ratio > 0, f"{w}.mlp_ratio",
                 f"must be positive, got {self.mlp_ratio!r}")
        _require(self.pool_type in ("argmax", "eos", "first", "last"), f"{w}.pool_type",
                 f"must be one of argmax/eos/first/last, got {self.pool_type!r}")
        _require(self.tokenizer_kwargs is None or isinstance(self.tokenizer_kwargs, dict),
                 f"{w}.tokenizer_kwargs", "must be an object")
        _require(self.proj_type in ("linear", "none"), f"{w}.proj_type",
                 f"must be 'linear' or 'none', got {self.proj_type!r}")
        norm = self.norm_kwargs or {}
        _require(isinstance(norm, dict) and set(norm) <= {"eps"}, f"{w}.norm_kwargs",
                 f"only {{'eps': ...}} is supported, got {self.norm_kwargs!r}")
        _require(isinstance(norm.get("eps", 1.0), (int, float)) and norm.get("eps", 1.0) > 0,
                 f"{w}.norm_kwargs.eps", f"must be a positive number, got {norm.get('eps')!r}")
        act = self.act_kwargs or {}
        _require(isinstance(act, dict) and set(act) <= {"approximate"}, f"{w}.act_kwargs",
                 f"only {{'approximate': 'none' | 'tanh'}} is supported, got {self.act_kwargs!r}")
        _require(act.get("approximate", "none") in ("none", "tanh"), f"{w}.act_kwargs.approximate",
                 f"must be 'none' or 'tanh', got {act.get('approximate')!r}")

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def causal(self) -> bool:
        return not self.no_causal_mask

    @property
    def norm_eps(self) -> float:
        """LayerNorm epsilon: ``norm_kwargs.eps``, else torch's 1e-5."""
        return float((self.norm_kwargs or {}).get("eps", 1e-5))

    @property
    def gelu_tanh(self) -> bool:
        """Whether the MLPs use tanh-approximated GELU (``act_kwargs.approximate == "tanh"``)."""
        return (self.act_kwargs or {}).get("approximate") == "tanh"


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
            from .coca_config import CoCaConfig
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


def vision_config(values: Mapping[str, Any]):
    """The vision tower config class that ``vision_cfg`` describes, validated (one class per tower family).

    Example:
        >>> vision_config({"layers": 2, "width": 64, "patch_size": 8, "image_size": 32}).grid_size
        (4, 4)
    """
    if values.get("timm_model_name"):  # open_clip's rule: a timm model name overrides layers, width, patch_size
        from .timm_families import timm_config_class
        return timm_config_class(values["timm_model_name"]).from_values(values)
    values = dict(values)
    for key, default in _TIMM_DEFAULTS.items():
        if key in values and values.pop(key) not in (default, None, False, ""):
            raise ConfigError(f"vision_cfg.{key} is only used by timm vision towers; set vision_cfg.timm_model_name")
    if isinstance(values.get("layers"), (list, tuple)):  # open_clip's rule: a list of stage depths is a ResNet
        return ModifiedResNetConfig.from_values(values)
    return VisionConfig(**_check_fields(VisionConfig, values, "vision_cfg"))


def text_config(values: Mapping[str, Any]):
    """The text tower config class that ``text_cfg`` describes, validated (one class per tower family).

    Example:
        >>> text_config({"layers": 2, "width": 64, "heads": 2}).mlp_width
        256
    """
    if values.get("hf_model_name"):  # open_clip's rule: a Hugging Face model name selects HFTextEncoder
        from .hf_configs import HFTextConfig
        return HFTextConfig.from_dict(values)
    values = dict(values)
    for key, default in (("hf_model_name", None), ("hf_model_pretrained", True), ("hf_proj_type", "mlp"),
                         ("hf_pooler_type", "mean_pooler")):  # open_clip's defaults, unused without a model name
        if key in values and values.pop(key) not in (default, None, False, ""):
            raise ConfigError(f"text_cfg.{key} is only used by Hugging Face text towers; set text_cfg.hf_model_name")
    return TextConfig(**_check_fields(TextConfig, values, "text_cfg"))


def builtin_config_names() -> list[str]:
    """Names of the model configs shipped with anyclip, sorted like open_clip's ``list_models``."""
    files = resources.files("anyclip.models").joinpath("configs")
    return sorted((p.name[:-5] for p in files.iterdir() if p.name.endswith(".json")), key=_natural_key)


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
    file = resources.files("anyclip.models").joinpath("configs", f"{name}.json")
    if not file.is_file():
        names = builtin_config_names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See anyclip.list_models()."
        raise ConfigError(f"unknown model {name!r}.{hint}")
    return load_config_file(Path(str(file)))
