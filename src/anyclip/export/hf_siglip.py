"""Hugging Face ``transformers`` SigLIP folders: write an anyclip SigLIP / SigLIP2 model as a ``SiglipModel``
directory (``config.json``, ``model.safetensors``, tokenizer files, ``preprocessor_config.json``) and read such
a directory back into anyclip.

open_clip's SigLIP is a timm ViT (no class token, ``map`` attention pooling, no projection) and its own text
transformer without a causal mask that pools the last position after the final LayerNorm through a biased
``Linear``; transformers' ``SiglipModel`` is the same network. The names differ: timm's packed ``attn.qkv``
becomes ``q_proj`` / ``k_proj`` / ``v_proj``; the pooling head's ``q`` and ``kv`` Linears become
``nn.MultiheadAttention``'s ``in_proj`` (``cat(q, k, v)``); ``latent`` is ``probe``; the text ``Linear`` is
``head``. Fixed-resolution SigLIP2 (Gemma tokenizer) has the same layout. Models that differ (NaFlex, a class
token, layer scale, a causal mask ...) are refused with the reason.

Example:
    >>> save_hf_siglip(model, tokenizer, "siglip2-hf/")  # doctest: +SKIP
    >>> transformers.SiglipModel.from_pretrained("siglip2-hf/")  # doctest: +SKIP
    >>> model = load_hf_siglip("siglip2-hf/")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..errors import UsageError
from . import hf_transformers as hf_clip
from .hf_tokenizer import write_hf_tokenizer

_ACT = {None: "gelu", "none": "gelu", "tanh": "gelu_pytorch_tanh"}  # GELU's ``approximate`` -> transformers
_VISION_BLOCK = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.proj": "self_attn.out_proj",
                 "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_HEAD = {"proj": "attention.out_proj", "norm": "layernorm", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_TEXT = {"text.ln_final": "text_model.final_layer_norm",
         "visual.trunk.patch_embed.proj": "vision_model.embeddings.patch_embedding",
         "visual.trunk.norm": "vision_model.post_layernorm"}


def _text_act(text) -> str | None:
    approximate = (text.act_kwargs or {}).get("approximate")
    return _ACT.get(approximate) if set(text.act_kwargs or {}) <= {"approximate"} else None


def fits_siglip_model(config) -> str | None:
    """Why ``config`` (a CLIPConfig) cannot be a transformers ``SiglipModel``, or None when it can.

    Example:
        >>> from anyclip.models import get_model_config
        >>> fits_siglip_model(get_model_config("ViT-B-16-SigLIP2")) is None
        True
    """
    from ..towers.openai.text_transformer import TextConfig
    from ..towers.timm.vit_config import TimmViTConfig
    vision, text = config.vision_cfg, config.text_cfg
    if config.init_logit_bias is None:
        return "the model has no logit bias (softmax CLIP); SiglipModel's logits add one"
    if not isinstance(vision, TimmViTConfig) or not isinstance(text, TextConfig):
        return ("the model has a logit bias, which CLIPModel lacks, and SiglipModel needs a timm ViT image tower "
                "and open_clip's text transformer")
    arch, head = vision.arch, vision.head
    odd = [name for name, bad in (
        ("timm_pool other than 'map'", head.pool != "map"), ("an image projection", vision.timm_proj != "none"),
        ("a class token", arch.class_token), ("layer scale", arch.layer_scale), ("norm_pre", arch.pre_norm),
        ("qkv without bias", not arch.qkv_bias), ("this patch stem", arch.stem != "patch" or arch.rel_pos_dim),
        ("no position embedding", not arch.pos_embed), ("GeGLU", arch.geglu), ("fc_norm", head.fc_norm),
        ("non-square images", not isinstance(vision.image_size, int)),
        ("embed_dim other than the image width", config.embed_dim != arch.width),
        ("quick_gelu", config.quick_gelu), ("a causal text mask", not text.no_causal_mask),
        ("text pool_type other than 'last'", text.pool_type != "last"),
        ("a text projection without bias", text.proj_type != "none" and not (text.proj_bias and
                                                                             text.proj_type == "linear")),
        ("ls_init_value", text.ls_init_value is not None), ("embed_cls", text.embed_cls),
        ("norm_kwargs other than eps", set(text.norm_kwargs or {}) - {"eps"}),
        ("these act_kwargs", _text_act(text) is None),
        ("text heads that do not divide its width", text.width % text.heads)) if bad]
    return f"SiglipModel has no equivalent of {', '.join(odd)}" if odd else None


def hf_siglip_config(config) -> dict:
    """The transformers ``SiglipConfig`` (as a dict) of an anyclip CLIPConfig that fits ``SiglipModel``."""
    vision, text = config.vision_cfg, config.text_cfg
    arch = vision.arch
    depth = (vision.timm_model_kwargs or {}).get("depth", arch.depth)
    return {
        "architectures": ["SiglipModel"], "model_type": "siglip",
        "text_config": {"vocab_size": text.vocab_size, "hidden_size": text.width,
                        "intermediate_size": int(text.width * text.mlp_ratio), "num_hidden_layers": text.layers,
                        "num_attention_heads": text.heads, "max_position_embeddings": text.context_length,
                        "hidden_act": _text_act(text), "layer_norm_eps": (text.norm_kwargs or {}).get("eps", 1e-5),
                        "projection_size": config.embed_dim, "pad_token_id": text.pad_id,
                        "bos_token_id": None, "eos_token_id": text.eos_id},
        "vision_config": {"hidden_size": arch.width, "intermediate_size": arch.mlp_width, "num_hidden_layers": depth,
                          "num_attention_heads": arch.heads, "image_size": vision.image_size,
                          "patch_size": arch.patch_size, "num_channels": 3,
                          "hidden_act": "gelu_pytorch_tanh" if arch.gelu_tanh else "gelu",
                          "layer_norm_eps": arch.norm_eps, "vision_use_head": True},
    }


def _pairs(text_layers: int, vision_layers: int):
    """``(open_clip prefix, transformers prefix, block mapping)`` of every transformer block."""
    for i in range(text_layers):
        yield f"text.transformer.resblocks.{i}", f"text_model.encoder.layers.{i}", None
    for i in range(vision_layers):
        yield f"visual.trunk.blocks.{i}", f"vision_model.encoder.layers.{i}", _VISION_BLOCK
    yield "visual.trunk.attn_pool", "vision_model.head", _HEAD


def open_clip_to_hf_siglip(state: dict, text_layers: int, vision_layers: int) -> dict:
    """An open_clip SigLIP state dict as transformers ``SiglipModel`` tensors (numpy)."""
    width = state["visual.trunk.pos_embed"].shape[-1]
    out = {"logit_scale": state["logit_scale"].reshape(1), "logit_bias": state["logit_bias"].reshape(1),
           "text_model.embeddings.token_embedding.weight": state["text.token_embedding.weight"],
           "text_model.embeddings.position_embedding.weight": state["text.positional_embedding"],
           "vision_model.embeddings.position_embedding.weight": state["visual.trunk.pos_embed"].reshape(-1, width),
           "vision_model.head.probe": state["visual.trunk.attn_pool.latent"]}
    for ours, theirs in _TEXT.items():
        out.update({f"{theirs}.{p}": state[f"{ours}.{p}"] for p in ("weight", "bias")})
    text_width = state["text.token_embedding.weight"].shape[-1]
    for p, identity in (("weight", np.eye(text_width)), ("bias", np.zeros(text_width))):  # proj_type "none": I, 0
        out[f"text_model.head.{p}"] = state.get(f"text.text_projection.{p}", identity)
    for ours, theirs, names in _pairs(text_layers, vision_layers):
        if names is None:
            out.update(hf_clip.block_to_hf(state, ours, theirs))
            continue
        for a, b in names.items():
            out.update({f"{theirs}.{b}.{p}": state[f"{ours}.{a}.{p}"] for p in ("weight", "bias")})
        for p in ("weight", "bias"):
            if names is _HEAD:  # nn.MultiheadAttention packs cat(q, k, v); timm's kv Linear is cat(k, v)
                out[f"{theirs}.attention.in_proj_{p}"] = np.concatenate([state[f"{ours}.q.{p}"],
                                                                         state[f"{ours}.kv.{p}"]])
            else:
                for x, part in zip("qkv", np.split(state[f"{ours}.attn.qkv.{p}"], 3)):
                    out[f"{theirs}.self_attn.{x}_proj.{p}"] = part
    return hf_clip.f32(out)


def hf_siglip_to_open_clip(tensors: dict, text_layers: int, vision_layers: int,
                           text_projection: bool = True) -> dict:
    """transformers ``SiglipModel`` tensors as an open_clip state dict (the inverse of
    :func:`open_clip_to_hf_siglip`; ``text_projection=False`` leaves out the text head, for ``proj_type`` "none")."""
    width = tensors["vision_model.head.probe"].shape[-1]
    out = {"logit_scale": tensors["logit_scale"].reshape(()), "logit_bias": tensors["logit_bias"].reshape(()),
           "text.token_embedding.weight": tensors["text_model.embeddings.token_embedding.weight"],
           "text.positional_embedding": tensors["text_model.embeddings.position_embedding.weight"],
           "visual.trunk.pos_embed": tensors["vision_model.embeddings.position_embedding.weight"].reshape(1, -1, width),
           "visual.trunk.attn_pool.latent": tensors["vision_model.head.probe"]}
    for ours, theirs in _TEXT.items():
        out.update({f"{ours}.{p}": tensors[f"{theirs}.{p}"] for p in ("weight", "bias")})
    if text_projection:
        out.update({f"text.text_projection.{p}": tensors[f"text_model.head.{p}"] for p in ("weight", "bias")})
    for ours, theirs, names in _pairs(text_layers, vision_layers):
        if names is None:
            out.update(hf_clip.block_from_hf(tensors, ours, theirs))
            continue
        for a, b in names.items():
            out.update({f"{ours}.{a}.{p}": tensors[f"{theirs}.{b}.{p}"] for p in ("weight", "bias")})
        for p in ("weight", "bias"):
            if names is _HEAD:
                q, kv = np.split(tensors[f"{theirs}.attention.in_proj_{p}"], [width])
                out[f"{ours}.q.{p}"], out[f"{ours}.kv.{p}"] = q, kv
            else:
                out[f"{ours}.attn.qkv.{p}"] = np.concatenate([tensors[f"{theirs}.self_attn.{x}_proj.{p}"]
                                                              for x in "qkv"])
    return hf_clip.f32(out)


def _preprocessor_config(cfg) -> dict:
    """transformers' image processor settings for anyclip's preprocessing (SigLIP squashes, no crop)."""
    common = {"do_resize": True, "resample": 3 if cfg.interpolation == "bicubic" else 2, "do_rescale": True,
              "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(cfg.mean),
              "image_std": list(cfg.std), "do_convert_rgb": True}
    if cfg.resize_mode == "squash":
        return {"image_processor_type": "SiglipImageProcessor", "size": {"height": cfg.hw[0], "width": cfg.hw[1]},
                **common}
    return {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": cfg.hw[0]},
            "do_center_crop": True, "crop_size": {"height": cfg.hw[0], "width": cfg.hw[1]}, **common}


def save_hf_siglip(model, tokenizer, folder: str | os.PathLike) -> Path:
    """Write ``model`` (a SigLIP / SigLIP2 that fits ``SiglipModel``) and its Hugging Face ``tokenizer`` (an
    :class:`~anyclip.tokenizers.HFTokenizer`, its text cleaning included) into ``folder``.

    Raises :class:`~anyclip.errors.UsageError` with the reason for models ``SiglipModel`` cannot hold.

    Example:
        >>> save_hf_siglip(anyclip.create_model("ViT-B-16-SigLIP2", "webli"),
        ...                anyclip.get_tokenizer("ViT-B-16-SigLIP2"), "siglip2-hf/")  # doctest: +SKIP
    """
    from ..weights.mapping import export_state_dict
    reason = fits_siglip_model(model.config)
    if reason:
        raise UsageError(f"cannot write this model as a transformers SiglipModel: {reason}")
    config = hf_siglip_config(model.config)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = open_clip_to_hf_siglip(export_state_dict(model), config["text_config"]["num_hidden_layers"],
                                     config["vision_config"]["num_hidden_layers"])
    text = model.config.text_cfg
    # what transformers' config has no field for, kept for the way back: initial logit scale / bias and the
    # tokenizer's hub name and options
    config["open_clip"] = {"init_logit_scale": model.config.init_logit_scale,
                           "init_logit_bias": model.config.init_logit_bias,
                           "text_cfg": {"hf_tokenizer_name": text.hf_tokenizer_name,
                                        "tokenizer_kwargs": text.tokenizer_kwargs, "mlp_ratio": text.mlp_ratio,
                                        "proj_type": text.proj_type}}
    hf_clip.write_model_files(folder, config, tensors)
    atomic_write_text(folder / "preprocessor_config.json", json.dumps(_preprocessor_config(model.preprocess_cfg),
                                                                      indent=2))
    write_hf_tokenizer(tokenizer, folder, model.context_length)
    return folder


def _timm_vit_name(vision: dict, folder) -> tuple[str, dict | None]:
    """The timm SigLIP ViT of a transformers vision config, and the ``timm_model_kwargs`` (depth) it needs."""
    from ..towers.timm.vit_config import TIMM_VITS
    tanh = vision.get("hidden_act", "gelu_pytorch_tanh") == "gelu_pytorch_tanh"
    size = vision["image_size"]
    names = [name for name, arch in TIMM_VITS.items() if "siglip" in name and arch.default_pool == "map"
             and (arch.patch_size, arch.width, arch.heads, arch.mlp_width, arch.gelu_tanh) ==
             (vision["patch_size"], vision["hidden_size"], vision["num_attention_heads"],
              vision["intermediate_size"], tanh) and arch.norm_eps == vision.get("layer_norm_eps", 1e-6)]
    if not names:
        raise UsageError(f"{folder}: no timm SigLIP ViT has width {vision['hidden_size']}, patch "
                         f"{vision['patch_size']}, {vision['num_attention_heads']} heads and "
                         f"{vision.get('hidden_act')}; anyclip cannot build this vision tower")
    name = min(names, key=lambda n: (TIMM_VITS[n].image_size != size, n))  # the native size when there is one
    depth = vision["num_hidden_layers"]
    return name, ({"depth": depth} if depth != TIMM_VITS[name].depth else None)


def read_hf_siglip(folder: str | os.PathLike) -> tuple[dict, dict, dict]:
    """``(open_clip model config, open_clip state dict, preprocess config)`` of a transformers SigLIP folder.

    Example:
        >>> model_cfg, state, preprocess = read_hf_siglip("siglip2-hf/")  # doctest: +SKIP
    """
    from safetensors.numpy import load_file
    folder = Path(folder)
    config = hf_clip.read_config(folder, "siglip", "SigLIP")
    text, vision = config["text_config"], config["vision_config"]
    act = text.get("hidden_act", "gelu_pytorch_tanh")
    if act not in ("gelu", "gelu_pytorch_tanh") or not vision.get("vision_use_head", True):
        raise UsageError(f"{folder}: text activation {act!r} or a vision tower without its pooling head has no "
                         f"open_clip equivalent")
    timm_name, timm_kwargs = _timm_vit_name(vision, folder)
    text_cfg = {"context_length": text["max_position_embeddings"], "vocab_size": text["vocab_size"],
                "width": text["hidden_size"], "heads": text["num_attention_heads"], "layers": text["num_hidden_layers"],
                "mlp_ratio": text["intermediate_size"] / text["hidden_size"], "no_causal_mask": True,
                "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": text.get("layer_norm_eps", 1e-6)}}
    ours = config.get("open_clip") or {}
    text_cfg.update({k: v for k, v in (ours.get("text_cfg") or {}).items() if v})
    if int(text["hidden_size"] * text_cfg["mlp_ratio"]) != text["intermediate_size"]:  # open_clip takes int(w * r)
        text_cfg["mlp_ratio"] = float(np.nextafter(text["intermediate_size"] / text["hidden_size"], np.inf))
    if act == "gelu_pytorch_tanh":
        text_cfg["act_kwargs"] = {"approximate": "tanh"}
    for key, name in (("pad_id", "pad_token_id"), ("eos_id", "eos_token_id")):
        if isinstance(text.get(name), int):
            text_cfg[key] = text[name]
    tensors = load_file(str(folder / "model.safetensors"))
    width = text["hidden_size"]
    if text_cfg.get("proj_type") == "none" and not (  # written for a model without text projection: keep it so
            np.array_equal(tensors["text_model.head.weight"], np.eye(width, dtype=np.float32))
            and not tensors["text_model.head.bias"].any()):
        text_cfg["proj_type"] = "linear"  # the head was changed since: it is a projection now
    if text_cfg.get("proj_type", "linear") == "none":
        text_cfg.pop("proj_bias")
    model_cfg = {
        "embed_dim": text.get("projection_size") or text["hidden_size"], "custom_text": True,
        "init_logit_bias": ours.get("init_logit_bias", float(tensors["logit_bias"].reshape(()))),
        **({"init_logit_scale": ours["init_logit_scale"]} if "init_logit_scale" in ours else {}),
        "vision_cfg": {"image_size": vision["image_size"], "timm_model_name": timm_name,
                       "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none",
                       **({"timm_model_kwargs": timm_kwargs} if timm_kwargs else {})},
        "text_cfg": text_cfg,
    }
    state = hf_siglip_to_open_clip(tensors, text["num_hidden_layers"], vision["num_hidden_layers"],
                                   text_projection=text_cfg.get("proj_type", "linear") != "none")
    preprocess = {"size": vision["image_size"], "resize_mode": "squash", "interpolation": "bicubic",
                  "mean": [0.5] * 3, "std": [0.5] * 3}
    pre_file = folder / "preprocessor_config.json"
    if pre_file.exists():
        pre = json.loads(pre_file.read_text(encoding="utf-8"))
        preprocess.update({k: pre[j] for k, j in (("mean", "image_mean"), ("std", "image_std")) if j in pre})
        if "shortest_edge" in pre.get("size", {}):
            preprocess["resize_mode"] = "shortest"
    return model_cfg, state, preprocess


def load_hf_siglip(folder: str | os.PathLike, **kwargs):
    """An anyclip model from a transformers ``SiglipModel`` folder (``kwargs`` go to ``create_model``).

    Example:
        >>> model = load_hf_siglip("siglip2-hf/")  # doctest: +SKIP
    """
    return hf_clip.model_from_state(*read_hf_siglip(folder), **kwargs)


def check_siglip_logits(hf, model, images: np.ndarray, tokens: np.ndarray) -> float:
    """Raise :class:`~anyclip.export.verify.ExportVerificationError` unless transformers' ``SiglipModel``
    forward gives ``model``'s logits (scale and bias applied) to ``HF_MAX_ABS`` times the logit scale; returns
    the largest difference.

    Example:
        >>> check_siglip_logits(transformers.SiglipModel.from_pretrained("siglip2-hf/"), model, images,
        ...                     tokens)  # doctest: +SKIP
    """
    import keras
    import torch

    from . import verify
    ours = keras.ops.convert_to_numpy(model.get_logits(images, tokens.astype(np.int32))[0])
    with torch.no_grad():
        theirs = hf(input_ids=torch.from_numpy(tokens), pixel_values=torch.from_numpy(
            images.transpose(0, 3, 1, 2).copy())).logits_per_image.numpy()
    scale = float(np.exp(keras.ops.convert_to_numpy(model.logit_scale)))
    worst = float(np.abs(ours.astype(np.float64) - theirs).max())
    if not worst <= verify.HF_MAX_ABS * max(scale, 1.0):
        raise verify.ExportVerificationError(
            f"logits (transformers SiglipModel): max |difference| {worst:.3g} > {verify.HF_MAX_ABS} x logit scale "
            f"{scale:.3g} (nothing written)")
    return worst
