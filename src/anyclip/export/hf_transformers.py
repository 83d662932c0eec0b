"""Hugging Face ``transformers`` CLIP folders: write an anyclip ViT CLIP as a ``CLIPModel`` directory
(``config.json``, ``model.safetensors``, tokenizer files) and read such a directory back into anyclip.

The names follow transformers' own conversion of OpenAI / open_clip checkpoints: each attention's packed
``in_proj`` becomes ``q_proj`` / ``k_proj`` / ``v_proj``, the two projections become ``Linear`` weights
(transposed), ``ln_pre`` is ``pre_layrnorm`` (transformers' spelling). Both OpenAI (QuickGELU) and LAION
(GELU) ViT models map; other towers (ResNet, timm, Hugging Face text towers) and models with a logit bias
(SigLIP) do not fit ``CLIPModel`` and are refused with the reason.

Example:
    >>> save_hf_clip(model, tokenizer, "vit-b-32-hf/")  # doctest: +SKIP
    >>> transformers.CLIPModel.from_pretrained("vit-b-32-hf/")  # doctest: +SKIP
    >>> model = load_hf_clip("vit-b-32-hf/")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..errors import UsageError

EOT_ID, SOT_ID = 49407, 49406
_LAYER = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
          "attn.out_proj": "self_attn.out_proj"}


def _fits_clip_model(config) -> str | None:
    """Why ``config`` (a CLIPConfig) cannot be a transformers ``CLIPModel``, or None when it can."""
    from ..towers.openai.text_transformer import TextConfig
    from ..towers.openai.vision_transformer import VisionConfig
    vision, text = config.vision_cfg, config.text_cfg
    if not isinstance(vision, VisionConfig) or not isinstance(text, TextConfig):
        return "only models with open_clip's own ViT image tower and transformer text tower map to CLIPModel"
    if config.init_logit_bias is not None:
        return "the model has a logit bias (SigLIP-style sigmoid loss); CLIPModel has none"
    if config.custom_text:
        return "custom_text towers are not supported"
    odd = [name for name, bad in (
        ("attentional_pool", vision.attentional_pool), ("pool_type", vision.pool_type != "tok"),
        ("ls_init_value", vision.ls_init_value is not None or text.ls_init_value is not None),
        ("no_ln_pre", vision.no_ln_pre), ("final_ln_after_pool", vision.final_ln_after_pool),
        ("text pool_type", text.pool_type != "argmax"), ("proj_bias", text.proj_bias),
        ("proj_type", text.proj_type != "linear"), ("no_causal_mask", text.no_causal_mask),
        ("norm_kwargs", bool(text.norm_kwargs)), ("act_kwargs", bool(text.act_kwargs)),
        ("embed_cls", text.embed_cls), ("hf_tokenizer_name", bool(text.hf_tokenizer_name)),
        ("non-square image or patch", not isinstance(vision.image_size, int) or not isinstance(vision.patch_size, int)),
        ("mlp_ratio", (vision.width * vision.mlp_ratio) % 1 or (text.width * text.mlp_ratio) % 1)) if bad]
    return f"CLIPModel has no equivalent of {', '.join(odd)}" if odd else None


def hf_clip_config(config) -> dict:
    """The transformers ``CLIPConfig`` (as a dict) of an anyclip CLIPConfig that fits ``CLIPModel``."""
    vision, text = config.vision_cfg, config.text_cfg
    act = "quick_gelu" if config.quick_gelu else "gelu"
    return {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": config.embed_dim,
        "logit_scale_init_value": float(config.init_logit_scale),
        "text_config": {"vocab_size": text.vocab_size, "hidden_size": text.width,
                        "intermediate_size": int(text.width * text.mlp_ratio), "num_hidden_layers": text.layers,
                        "num_attention_heads": text.heads, "max_position_embeddings": text.context_length,
                        "hidden_act": act, "layer_norm_eps": 1e-5, "projection_dim": config.embed_dim,
                        "bos_token_id": SOT_ID, "eos_token_id": EOT_ID, "pad_token_id": 0},
        "vision_config": {"hidden_size": vision.width, "intermediate_size": int(vision.width * vision.mlp_ratio),
                          "num_hidden_layers": vision.layers, "num_attention_heads": vision.width // vision.head_width,
                          "image_size": vision.image_size, "patch_size": vision.patch_size, "num_channels": 3,
                          "hidden_act": act, "layer_norm_eps": 1e-5, "projection_dim": config.embed_dim},
    }


def _single_tensors() -> list[tuple[str, str, bool]]:
    """``(open_clip name, transformers name, transposed)`` of every tensor outside the transformer blocks."""
    pairs = [("logit_scale", "logit_scale", False), ("text_projection", "text_projection.weight", True),
             ("visual.proj", "visual_projection.weight", True),
             ("token_embedding.weight", "text_model.embeddings.token_embedding.weight", False),
             ("positional_embedding", "text_model.embeddings.position_embedding.weight", False),
             ("visual.class_embedding", "vision_model.embeddings.class_embedding", False),
             ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight", False),
             ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight", False)]
    for ours, theirs in (("ln_final", "text_model.final_layer_norm"), ("visual.ln_pre", "vision_model.pre_layrnorm"),
                         ("visual.ln_post", "vision_model.post_layernorm")):
        pairs += [(f"{ours}.{p}", f"{theirs}.{p}", False) for p in ("weight", "bias")]
    return pairs


def _blocks(text_layers: int, vision_layers: int):
    """``(open_clip block prefix, transformers layer prefix)`` of every transformer block."""
    for src, dst, n in (("transformer", "text_model.encoder", text_layers),
                        ("visual.transformer", "vision_model.encoder", vision_layers)):
        for i in range(n):
            yield f"{src}.resblocks.{i}", f"{dst}.layers.{i}"


def f32(tensors: dict) -> dict:
    """Every tensor as a C-ordered float32 numpy array."""
    return {k: np.array(v, dtype=np.float32, order="C") for k, v in tensors.items()}  # keeps 0-d arrays 0-d


def open_clip_to_hf(state: dict, text_layers: int, vision_layers: int) -> dict:
    """An open_clip ViT CLIP state dict as transformers ``CLIPModel`` tensors (numpy)."""
    out = {theirs: state[ours].T if transpose else state[ours] for ours, theirs, transpose in _single_tensors()}
    for a, b in _blocks(text_layers, vision_layers):
        out.update(block_to_hf(state, a, b))
    return f32(out)


def block_to_hf(state: dict, ours: str, theirs: str) -> dict:
    """One open_clip ``ResidualAttentionBlock`` (prefix ``ours``) as a transformers encoder layer (``theirs``):
    the packed ``in_proj`` split into ``q_proj`` / ``k_proj`` / ``v_proj`` (CLIPModel and SiglipModel alike)."""
    out = {}
    for x, w, bias in zip("qkv", np.split(state[f"{ours}.attn.in_proj_weight"], 3),
                          np.split(state[f"{ours}.attn.in_proj_bias"], 3)):
        out[f"{theirs}.self_attn.{x}_proj.weight"], out[f"{theirs}.self_attn.{x}_proj.bias"] = w, bias
    for a, b in _LAYER.items():
        for p in ("weight", "bias"):
            out[f"{theirs}.{b}.{p}"] = state[f"{ours}.{a}.{p}"]
    return out


def block_from_hf(tensors: dict, ours: str, theirs: str) -> dict:
    """The inverse of :func:`block_to_hf`."""
    out = {f"{ours}.attn.in_proj_{p}": np.concatenate([tensors[f"{theirs}.self_attn.{x}_proj.{p}"] for x in "qkv"])
           for p in ("weight", "bias")}
    for a, b in _LAYER.items():
        for p in ("weight", "bias"):
            out[f"{ours}.{a}.{p}"] = tensors[f"{theirs}.{b}.{p}"]
    return out


def hf_to_open_clip(tensors: dict, text_layers: int, vision_layers: int) -> dict:
    """transformers ``CLIPModel`` tensors as an open_clip state dict (the inverse of :func:`open_clip_to_hf`)."""
    out = {ours: tensors[theirs].T if transpose else tensors[theirs] for ours, theirs, transpose in _single_tensors()}
    for a, b in _blocks(text_layers, vision_layers):
        out.update(block_from_hf(tensors, a, b))
    return f32(out)


def _write_tokenizer_files(tokenizer, folder: Path, context_length: int) -> None:
    from .tokenizer_files import clip_bpe_tokenizer
    bpe = clip_bpe_tokenizer(tokenizer, context_length)
    bpe.no_padding()
    bpe.no_truncation()
    bpe.save(str(folder / "tokenizer.json"))
    # padding with id 0 ("!") as open_clip does; the generic fast class reads tokenizer.json as it is
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "!"}
    atomic_write_text(folder / "tokenizer_config.json", json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": context_length, **special}, indent=2))
    atomic_write_text(folder / "special_tokens_map.json", json.dumps(special, indent=2))


def save_hf_clip(model, tokenizer, folder: str | os.PathLike) -> Path:
    """Write ``model`` (a ViT CLIP that fits ``CLIPModel``) and its CLIP BPE ``tokenizer`` into ``folder``.

    Raises :class:`~anyclip.errors.UsageError` with the reason for models ``CLIPModel`` cannot hold.

    Example:
        >>> save_hf_clip(anyclip.create_model("ViT-B-32-quickgelu", "openai"), anyclip.get_tokenizer("ViT-B-32"),
        ...              "vit-b-32-hf/")  # doctest: +SKIP
    """
    from ..weights.mapping import export_state_dict
    reason = _fits_clip_model(model.config)
    if reason:
        raise UsageError(f"cannot write this model as a transformers CLIPModel: {reason}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = open_clip_to_hf(export_state_dict(model), model.config.text_cfg.layers, model.config.vision_cfg.layers)
    write_model_files(folder, hf_clip_config(model.config), tensors)
    cfg = model.preprocess_cfg
    atomic_write_text(folder / "preprocessor_config.json", json.dumps({
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": cfg.hw[0]},
        "resample": 3 if cfg.interpolation == "bicubic" else 2, "do_center_crop": True,
        "crop_size": {"height": cfg.hw[0], "width": cfg.hw[1]}, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": list(cfg.mean), "image_std": list(cfg.std),
        "do_convert_rgb": True}, indent=2))
    _write_tokenizer_files(tokenizer, folder, model.context_length)
    return folder


def read_config(folder: Path, model_type: str, what: str) -> dict:
    """``folder``'s ``config.json``; a usage error naming the folder when its ``model_type`` is not ``model_type``."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != model_type:
        raise UsageError(f"{folder}: not a transformers {what} folder (model_type {config.get('model_type')!r})")
    return config


def read_hf_clip(folder: str | os.PathLike) -> tuple[dict, dict, dict]:
    """``(open_clip model config, open_clip state dict, preprocess config)`` of a transformers CLIP folder.

    Example:
        >>> model_cfg, state, preprocess = read_hf_clip("vit-b-32-hf/")  # doctest: +SKIP
    """
    from safetensors.numpy import load_file
    folder = Path(folder)
    config = read_config(folder, "clip", "CLIP")
    text, vision = config["text_config"], config["vision_config"]
    act = {text.get("hidden_act", "quick_gelu"), vision.get("hidden_act", "quick_gelu")}
    if len(act) != 1 or not act <= {"quick_gelu", "gelu"}:
        raise UsageError(f"{folder}: activations {sorted(act)} are not one of quick_gelu / gelu for both towers")
    model_cfg = {
        "embed_dim": config.get("projection_dim", 512), "quick_gelu": act == {"quick_gelu"},
        "vision_cfg": {"image_size": vision["image_size"], "patch_size": vision["patch_size"],
                       "width": vision["hidden_size"], "layers": vision["num_hidden_layers"],
                       "head_width": vision["hidden_size"] // vision["num_attention_heads"],
                       "mlp_ratio": vision["intermediate_size"] / vision["hidden_size"]},
        "text_cfg": {"context_length": text["max_position_embeddings"], "vocab_size": text["vocab_size"],
                     "width": text["hidden_size"], "heads": text["num_attention_heads"],
                     "layers": text["num_hidden_layers"], "mlp_ratio": text["intermediate_size"] / text["hidden_size"]},
    }
    tensors = load_file(str(folder / "model.safetensors"))
    state = hf_to_open_clip(tensors, text["num_hidden_layers"], vision["num_hidden_layers"])
    preprocess = {"size": vision["image_size"]}
    pre_file = folder / "preprocessor_config.json"
    if pre_file.exists():
        pre = json.loads(pre_file.read_text(encoding="utf-8"))
        preprocess.update({k: pre[j] for k, j in (("mean", "image_mean"), ("std", "image_std")) if j in pre})
    return model_cfg, state, preprocess


def load_hf_clip(folder: str | os.PathLike, **kwargs):
    """An anyclip model from a transformers ``CLIPModel`` folder (``kwargs`` go to ``create_model``).

    Example:
        >>> model = load_hf_clip("vit-b-32-hf/")  # doctest: +SKIP
    """
    return model_from_state(*read_hf_clip(folder), **kwargs)


def write_model_files(folder: Path, config: dict, tensors: dict) -> None:
    """``config.json`` and ``model.safetensors`` of a transformers model folder."""
    from safetensors.numpy import save_file
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2))
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def model_from_state(model_cfg: dict, state: dict, preprocess: dict, **kwargs):
    """An anyclip model from an open_clip config, state dict and preprocess config (``kwargs``: ``create_model``)."""
    import tempfile

    from safetensors.numpy import save_file

    from ..factory import create_model
    with tempfile.TemporaryDirectory(prefix="anyclip-hf-") as tmp:
        (Path(tmp) / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg,
                                                                     "preprocess_cfg": preprocess}))
        save_file(state, str(Path(tmp) / "open_clip_model.safetensors"))
        return create_model(f"local-dir:{tmp}", **kwargs)
