"""Configs of the Hugging Face text towers: open_clip's ``text_cfg`` keys and the HF architecture.

A ``text_cfg`` with ``hf_model_name`` selects open_clip's ``HFTextEncoder``: the architecture comes from
that model's ``config.json``, not from ``text_cfg``. anyclip reads it from a local folder
(``hf_model_name`` is a path), from a shipped copy of the values for the models of open_clip's configs
(:data:`KNOWN_HF_CONFIGS`, so no network is needed), or from the Hugging Face hub.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from pathlib import Path
from typing import Any, Mapping

from ..config import ConfigError, _check_fields, _pos_int, _require
from ..registry import hf_family

# config.json values (architecture keys) of the Hugging Face models open_clip's configs name.
KNOWN_HF_CONFIGS: dict[str, dict[str, Any]] = {
    "roberta-base": {
        "model_type": "roberta", "vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12,
        "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 514,
        "type_vocab_size": 1, "layer_norm_eps": 1e-05, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
    "xlm-roberta-base": {
        "model_type": "xlm-roberta", "vocab_size": 250002, "hidden_size": 768, "num_hidden_layers": 12,
        "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 514,
        "type_vocab_size": 1, "layer_norm_eps": 1e-05, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
    "xlm-roberta-large": {
        "model_type": "xlm-roberta", "vocab_size": 250002, "hidden_size": 1024, "num_hidden_layers": 24,
        "num_attention_heads": 16, "intermediate_size": 4096, "hidden_act": "gelu", "max_position_embeddings": 514,
        "type_vocab_size": 1, "layer_norm_eps": 1e-05, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
    "google/mt5-base": {
        "model_type": "mt5", "vocab_size": 250112, "d_model": 768, "d_kv": 64, "d_ff": 2048, "num_layers": 12,
        "num_decoder_layers": 12, "num_heads": 12, "relative_attention_num_buckets": 32,
        "layer_norm_epsilon": 1e-06, "feed_forward_proj": "gated-gelu", "pad_token_id": 0, "eos_token_id": 1,
        "is_encoder_decoder": True},
    "google/mt5-xl": {
        "model_type": "mt5", "vocab_size": 250112, "d_model": 2048, "d_kv": 64, "d_ff": 5120, "num_layers": 24,
        "num_decoder_layers": 24, "num_heads": 32, "relative_attention_num_buckets": 32,
        "layer_norm_epsilon": 1e-06, "feed_forward_proj": "gated-gelu", "pad_token_id": 0, "eos_token_id": 1,
        "is_encoder_decoder": True},
    "facebook/nllb-200-distilled-600M": {
        "model_type": "m2m_100", "vocab_size": 256206, "d_model": 1024, "encoder_layers": 12, "decoder_layers": 12,
        "encoder_attention_heads": 16, "decoder_attention_heads": 16, "encoder_ffn_dim": 4096,
        "decoder_ffn_dim": 4096, "activation_function": "relu", "max_position_embeddings": 1024,
        "scale_embedding": True, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
        "decoder_start_token_id": 2, "is_encoder_decoder": True},
    "facebook/nllb-200-distilled-1.3B": {
        "model_type": "m2m_100", "vocab_size": 256206, "d_model": 1024, "encoder_layers": 24, "decoder_layers": 24,
        "encoder_attention_heads": 16, "decoder_attention_heads": 16, "encoder_ffn_dim": 8192,
        "decoder_ffn_dim": 8192, "activation_function": "relu", "max_position_embeddings": 1024,
        "scale_embedding": True, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
        "decoder_start_token_id": 2, "is_encoder_decoder": True},
}

# open_clip's default pooler per model type (hf_configs.arch_dict), used when hf_pooler_type is null.
DEFAULT_POOLER = {"roberta": "mean_pooler", "xlm-roberta": "mean_pooler", "mt5": "mean_pooler",
                  "m2m_100": "cls_pooler"}
POOLERS = ("mean_pooler", "max_pooler", "cls_pooler", "cls_last_hidden_state_pooler")
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "quick_gelu")


@dataclasses.dataclass(frozen=True)
class HFArch:
    """The architecture of a Hugging Face text encoder, from its ``config.json`` (one class, three families).

    ``family`` is ``"roberta"`` (RoBERTa, XLM-RoBERTa), ``"t5"`` (mT5 encoder) or ``"m2m100"`` (M2M100 /
    NLLB encoder). Widths and depths use neutral names; family-only fields are ``None`` elsewhere.

    Example:
        >>> hf_arch(KNOWN_HF_CONFIGS["roberta-base"]).width
        768
    """

    family: str
    model_type: str
    vocab_size: int
    width: int
    layers: int
    heads: int
    ffn_width: int
    act: str
    pad_token_id: int
    eps: float
    max_positions: int | None = None  # roberta, m2m100
    type_vocab_size: int | None = None  # roberta
    head_dim: int | None = None  # t5 (d_kv)
    num_buckets: int | None = None  # t5
    max_distance: int | None = None  # t5
    gated: bool = False  # t5
    scale_embedding: bool = False  # m2m100


def hf_arch(values: Mapping[str, Any], where: str = "config.json") -> HFArch:
    """Validate a Hugging Face ``config.json`` dict and read the encoder architecture from it.

    Example:
        >>> hf_arch(KNOWN_HF_CONFIGS["google/mt5-base"]).gated
        True
    """
    model_type = values.get("model_type")
    try:
        row = hf_family(model_type)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    family, defaults = row.name, row.hf_defaults(model_type)
    v = {**defaults, **{k: x for k, x in values.items() if x is not None}}
    if family == "roberta":
        arch = dict(width=v["hidden_size"], layers=v["num_hidden_layers"], heads=v["num_attention_heads"],
                    ffn_width=v["intermediate_size"], act=v["hidden_act"], eps=v["layer_norm_eps"],
                    max_positions=v["max_position_embeddings"], type_vocab_size=v["type_vocab_size"])
    elif family == "t5":
        proj = str(v["feed_forward_proj"]).split("-")
        _require(len(proj) == 1 or (len(proj) == 2 and proj[0] == "gated"), f"{where}.feed_forward_proj",
                 f"must be 'ACT' or 'gated-ACT', got {v['feed_forward_proj']!r}")
        act = "gelu_new" if v["feed_forward_proj"] == "gated-gelu" else proj[-1]
        arch = dict(width=v["d_model"], layers=v["num_layers"], heads=v["num_heads"], ffn_width=v["d_ff"], act=act,
                    eps=v["layer_norm_epsilon"], head_dim=v["d_kv"], num_buckets=v["relative_attention_num_buckets"],
                    max_distance=v["relative_attention_max_distance"], gated=proj[0] == "gated" and len(proj) == 2)
    else:
        arch = dict(width=v["d_model"], layers=v["encoder_layers"], heads=v["encoder_attention_heads"],
                    ffn_width=v["encoder_ffn_dim"], act=v["activation_function"], eps=1e-5,
                    max_positions=v["max_position_embeddings"], scale_embedding=bool(v["scale_embedding"]))
    out = HFArch(family=family, model_type=model_type, vocab_size=v["vocab_size"], pad_token_id=v["pad_token_id"],
                 **arch)
    for name in ("vocab_size", "width", "layers", "heads", "ffn_width", "max_positions", "type_vocab_size",
                 "head_dim", "num_buckets", "max_distance"):
        if getattr(out, name) is not None:
            _pos_int(getattr(out, name), f"{where} ({name})")
    if family != "t5":
        _require(out.width % out.heads == 0, where, f"width {out.width} is not divisible by {out.heads} heads")
    _require(out.act in ACTIVATIONS, where, f"activation {out.act!r} is not supported (one of {ACTIVATIONS})")
    _require(isinstance(out.pad_token_id, int) and out.pad_token_id >= 0, f"{where}.pad_token_id",
             f"must be a non-negative integer, got {out.pad_token_id!r}")
    return out


def load_hf_config(name: str) -> dict[str, Any]:
    """The ``config.json`` dict of a Hugging Face model: local folder, shipped table, then the hub.

    Example:
        >>> load_hf_config("roberta-base")["hidden_size"]
        768
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        file = folder / "config.json"
        if not file.is_file():
            raise ConfigError(f"text_cfg.hf_model_name: folder {folder} has no config.json")
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"text_cfg.hf_model_name: {file} is not valid JSON ({e})") from None
    if name in KNOWN_HF_CONFIGS:
        return dict(KNOWN_HF_CONFIGS[name])
    return dict(_hub_config(name))


@functools.lru_cache(maxsize=32)
def _hub_config(name: str) -> dict[str, Any]:
    try:
        from huggingface_hub import hf_hub_download
        file = hf_hub_download(name, "config.json")
    except Exception as e:  # offline, unknown repo, no huggingface_hub...
        raise ConfigError(
            f"text_cfg.hf_model_name={name!r} is not a local folder with a config.json, not one of the models "
            f"anyclip knows offline ({', '.join(KNOWN_HF_CONFIGS)}), and its config.json could not be read from "
            f"the Hugging Face hub: {type(e).__name__}: {e}") from None
    return json.loads(Path(file).read_text(encoding="utf-8"))


# CLIPTextCfg keys of the native text tower: open_clip ignores them when hf_model_name is set.
_NATIVE_DEFAULTS = {"width": 512, "heads": 8, "layers": 12, "mlp_ratio": 4.0, "ls_init_value": None, "pad_id": 0,
                    "eos_id": 2, "no_causal_mask": False, "pool_type": "argmax", "proj_bias": False,
                    "proj_type": "linear", "embed_cls": False, "final_ln_after_pool": False, "act_kwargs": None,
                    "norm_kwargs": None, "attentional_pool": False}


@dataclasses.dataclass(frozen=True)
class HFTextConfig:
    """open_clip's ``text_cfg`` for a Hugging Face text tower (``HFTextEncoder``).

    ``hf_proj_type``: ``"mlp"`` (open_clip's default), ``"linear"``, or null (no projection; only when the
    encoder width equals ``embed_dim``). ``hf_pooler_type``: one of :data:`POOLERS`, or null for the model
    type's default. ``vocab_size`` is ignored as by open_clip (the HF config's is used).

    Example:
        >>> cfg = HFTextConfig(hf_model_name="roberta-base", hf_pooler_type="mean_pooler")
        >>> cfg.arch.layers, cfg.pooler
        (12, 'mean_pooler')
    """

    hf_model_name: str
    hf_model_pretrained: bool = True
    hf_proj_type: str | None = "mlp"
    hf_pooler_type: str | None = "mean_pooler"
    hf_tokenizer_name: str | None = None
    context_length: int = 77
    vocab_size: int | None = None
    tokenizer_kwargs: dict | None = None
    tokenizer_mode: str | None = None
    output_tokens: bool = False

    def __post_init__(self):
        w = "text_cfg"
        _require(isinstance(self.hf_model_name, str) and self.hf_model_name != "", f"{w}.hf_model_name",
                 f"must be a model name or folder, got {self.hf_model_name!r}")
        _require(isinstance(self.hf_model_pretrained, bool), f"{w}.hf_model_pretrained",
                 f"must be true/false, got {self.hf_model_pretrained!r}")
        _require(self.hf_proj_type in (None, "linear", "mlp"), f"{w}.hf_proj_type",
                 f"must be 'mlp', 'linear' or null, got {self.hf_proj_type!r}")
        _require(self.hf_pooler_type is None or self.hf_pooler_type in POOLERS, f"{w}.hf_pooler_type",
                 f"must be one of {', '.join(POOLERS)} or null, got {self.hf_pooler_type!r}")
        _pos_int(self.context_length, f"{w}.context_length")
        _require(self.tokenizer_kwargs is None or isinstance(self.tokenizer_kwargs, dict), f"{w}.tokenizer_kwargs",
                 "must be an object")
        _require(self.tokenizer_mode in (None, "", "clips"), f"{w}.tokenizer_mode",
                 f"must be null or 'clips', got {self.tokenizer_mode!r}")
        _require(isinstance(self.output_tokens, bool), f"{w}.output_tokens", f"must be true/false, got "
                 f"{self.output_tokens!r}")
        self.arch  # reads config.json: a bad name fails here, at the edge

    @functools.cached_property
    def arch(self) -> HFArch:
        """The encoder architecture read from ``hf_model_name``'s config.json."""
        return hf_arch(load_hf_config(self.hf_model_name), f"config.json of {self.hf_model_name}")

    @property
    def pooler(self) -> str:
        """The pooler in use (``hf_pooler_type``, or the model type's default when null)."""
        return self.hf_pooler_type or DEFAULT_POOLER[self.arch.model_type]

    @property
    def width(self) -> int:
        return self.arch.width

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "HFTextConfig":
        """Validate a ``text_cfg`` dict that names ``hf_model_name`` (native-tower keys are ignored, as open_clip).

        Example:
            >>> HFTextConfig.from_dict({"hf_model_name": "google/mt5-base"}).pooler
            'mean_pooler'
        """
        values = dict(values)
        ignored = {k: values.pop(k) for k in [k for k in values if k in _NATIVE_DEFAULTS]}
        cfg = cls(**_check_fields(cls, values, "text_cfg"))
        for key, value in ignored.items():
            if value != _NATIVE_DEFAULTS[key] and not (key == "width" and value == cfg.arch.width):
                warnings.warn(f"text_cfg.{key}={value!r} has no effect on a Hugging Face text tower (the architecture "
                              f"comes from hf_model_name's config.json); ignored, as open_clip does", stacklevel=3)
        return cfg
