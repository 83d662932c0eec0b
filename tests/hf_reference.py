"""Offline parity cases for the Hugging Face text-tower configs (roberta-, xlm-roberta-, mt5-, nllb-clip-).

open_clip builds these towers from the HF model's ``config.json``, which lives on the hub. Offline, the test
writes that config itself: the values anyclip ships for the model (``KNOWN_HF_CONFIGS``) go through the
``transformers`` config class into a local folder that both open_clip and anyclip then read. Reductions,
listed in each case's notes: vocabularies above 100k entries -> 8,192 rows; text encoders -> 2 layers except
one realistic, full-depth case per family (``FULL_DEPTH``); image towers -> 2 blocks (the native ViT is
covered at full size by the ViT-B-32 / ViT-H-14 cases).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MAX_VOCAB = 8192
FULL_DEPTH = {"roberta-ViT-B-32", "mt5-base-ViT-B-32", "nllb-clip-base"}  # one full-size encoder per family
_DEPTH_KEY = {"roberta": "num_hidden_layers", "xlm-roberta": "num_hidden_layers", "mt5": "num_layers",
              "m2m_100": "encoder_layers"}


def hf_reduced_config(name: str, cfg: dict, hf_dir: Path) -> tuple[dict, list[str]]:
    """``cfg`` (open_clip's config of ``name``) pointed at a local, reduced copy of its HF config in ``hf_dir``."""
    from transformers import AutoConfig

    from anyclip.towers.hf.config import KNOWN_HF_CONFIGS
    text, vision = cfg["text_cfg"], cfg["vision_cfg"]
    values = dict(KNOWN_HF_CONFIGS[text["hf_model_name"]])
    notes = [f"hf_model_name {text['hf_model_name']} -> local config.json with anyclip's shipped values"]
    depth_key = _DEPTH_KEY[values["model_type"]]
    if name not in FULL_DEPTH:
        notes.append(f"text layers {values[depth_key]} -> 2")
        values[depth_key] = 2
        if "num_decoder_layers" in values:
            values["num_decoder_layers"] = 1
        if "decoder_layers" in values:
            values["decoder_layers"] = 1
    if values["vocab_size"] > 100_000:
        notes.append(f"vocab {values['vocab_size']} -> {MAX_VOCAB}")
        values["vocab_size"] = MAX_VOCAB
    if vision.get("timm_model_name"):  # nllb-clip-*-siglip: SigLIP tower cut through timm_model_kwargs
        notes.append("timm depth -> 2")
        vision["timm_model_kwargs"] = {"depth": 2}
    elif vision["layers"] > 2:
        notes.append(f"vision layers {vision['layers']} -> 2")
        vision["layers"] = 2
    mm = cfg.get("multimodal_cfg")
    if mm and mm["layers"] > 2:  # CoCa: tests/test_coca.py checks the decoder
        notes.append(f"decoder layers {mm['layers']} -> 2")
        mm["layers"] = 2
    AutoConfig.for_model(values.pop("model_type"), **values).save_pretrained(str(hf_dir))
    text["hf_model_name"] = str(hf_dir)
    text["hf_model_pretrained"] = False  # random weights: nothing to download
    return cfg, notes


def t5_q_std(state: dict, q_weight) -> float:
    """Std of a random T5 query weight: ``(d_model * head_dim) ** -0.5``, as T5's own init (T5 attention has no
    logit scaling; without it random logits are ~8x too large and float32 noise alone exceeds 1e-5)."""
    heads = next(v.shape[1] for k, v in state.items() if k.endswith("relative_attention_bias.weight"))
    return (q_weight.shape[1] * q_weight.shape[0] / heads) ** -0.5


def hf_tokens(text_cfg: dict, rng) -> np.ndarray:
    """Random ids of the HF vocabulary, ended by eos and padded with the HF pad id (4 rows, one full)."""
    hf = json.loads((Path(text_cfg["hf_model_name"]) / "config.json").read_text())
    ctx, pad, eos, vocab = text_cfg.get("context_length", 77), hf["pad_token_id"], hf["eos_token_id"], hf["vocab_size"]
    tokens = np.full((4, ctx), pad, dtype=np.int32)
    for row, length in enumerate((3, ctx // 2, ctx, 7)):
        ids = rng.integers(3, vocab, size=length)
        ids[ids == pad] = 3
        if row != 2:
            ids[-1] = eos
        tokens[row, :length] = ids
    return tokens
