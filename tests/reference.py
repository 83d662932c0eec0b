"""Reference artefacts for parity tests: random open_clip models saved in open_clip's own format.

Every floating tensor is re-drawn at random (LayerNorm gains around 1, others around 0) so that a wrong
mapping of a zero- or one-initialised tensor cannot pass unnoticed. Configs larger than ViT-L are cut
to 2 blocks per tower; text vocabularies above 100k entries are cut to 8,192 rows (the embedding
lookup has no size-dependent code path) to keep the giant multilingual tables out of memory.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np

MAX_VOCAB = 8192
BPE_TEXTS = [
    "a photo of a cat",
    "",
    "A DIAGRAM of the   water cycle, with arrows!",
    "emoji 🐈‍⬛ and 日本語 and café & co",
    " ".join(["a very long caption that goes on"] * 20),
]


def reduced_config(name: str) -> tuple[dict, list[str]]:
    """open_clip's config for ``name`` with the test reductions applied, and a list of what changed."""
    import open_clip
    cfg = copy.deepcopy(open_clip.get_model_config(name) or _anyclip_own_config(name))
    notes = []
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    if vision["width"] > 1024 or text["width"] > 768:
        notes.append(f"layers {vision['layers']}/{text['layers']} -> 2/2")
        vision["layers"], text["layers"] = 2, 2
    if text.get("vocab_size", 49408) > 100_000:
        notes.append(f"vocab {text['vocab_size']} -> {MAX_VOCAB}")
        text["vocab_size"] = MAX_VOCAB
    return cfg, notes


def _anyclip_own_config(name: str) -> dict:
    """The JSON of a config only anyclip ships (read as data, so open_clip builds it independently)."""
    from importlib import resources
    return json.loads(resources.files("anyclip.models").joinpath("configs", f"{name}.json").read_text())


def randomize(state: dict, seed: int) -> dict:
    import torch
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if not value.is_floating_point():
            out[key] = value
            continue
        noise = torch.randn(value.shape, generator=gen)
        leaf = key.rsplit(".", 1)[-1]
        module = key.rsplit(".", 2)[-2] if key.count(".") >= 1 else ""
        if key == "logit_scale":
            new = torch.tensor(math.log(1 / 0.07)) + 0.1 * noise
        elif module.startswith("ln") and leaf == "weight":
            new = 1.0 + 0.1 * noise
        elif leaf == "gamma":  # layer scale
            new = 0.2 + 0.05 * noise
        elif value.ndim >= 2 and leaf == "weight" or key.endswith("in_proj_weight"):
            fan_in = int(np.prod(value.shape[1:]))
            new = noise / math.sqrt(fan_in)
        elif key.endswith(("proj", "text_projection")) and value.ndim == 2:
            new = noise / math.sqrt(value.shape[0])
        else:
            new = 0.05 * noise
        out[key] = new.to(value.dtype)
    return out


def build_reference_case(name: str, folder: Path, seed: int = 0) -> dict:
    """Write ``folder/{open_clip_config.json, open_clip_model.safetensors, case.npz}``; return metadata.

    ``case.npz`` holds the inputs (channels-last images, token ids) and open_clip's normalised outputs.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    cfg, notes = reduced_config(name)
    folder.mkdir(parents=True, exist_ok=True)
    if name in open_clip.list_models():
        model = open_clip.create_model(name, pretrained=None, **_overrides(cfg)).eval()
    else:  # an anyclip-only config: open_clip's own CLIP class built from the same JSON
        model = open_clip.CLIP(**cfg).eval()
    state = randomize(model.state_dict(), seed)
    model.load_state_dict(state, strict=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "open_clip_model.safetensors"))
    preprocess = {"size": cfg["vision_cfg"]["image_size"], "mean": list(open_clip.OPENAI_DATASET_MEAN),
                  "std": list(open_clip.OPENAI_DATASET_STD), "interpolation": "bicubic", "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}))

    size = cfg["vision_cfg"]["image_size"]
    hw = (size, size) if isinstance(size, int) else tuple(size)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((2, hw[0], hw[1], 3)).astype(np.float32)
    tokens = make_tokens(name, cfg["text_cfg"], rng)
    with torch.no_grad():
        image_ref = model.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2), normalize=True).numpy()
        text_ref = model.encode_text(torch.from_numpy(tokens).long(), normalize=True).numpy()
    np.savez(folder / "case.npz", images=images, tokens=tokens, image_ref=image_ref, text_ref=text_ref,
             logit_scale=float(model.logit_scale.exp()))
    return {"name": name, "folder": str(folder), "notes": notes}


def _overrides(cfg: dict) -> dict:
    # open_clip.create_model merges top-level kwargs into the config: pass the reduced towers.
    return {"vision_cfg": cfg["vision_cfg"], "text_cfg": cfg["text_cfg"]}


def make_tokens(name: str, text_cfg: dict, rng) -> np.ndarray:
    """Real CLIP-BPE tokens for CLIP-tokenizer models; id patterns with eos/pad for the others."""
    import open_clip
    ctx = text_cfg.get("context_length", 77)
    if not text_cfg.get("hf_tokenizer_name"):
        return open_clip.get_tokenizer(name, context_length=ctx)(BPE_TEXTS).numpy().astype(np.int32)
    vocab = text_cfg.get("vocab_size")
    eos = text_cfg.get("eos_id", 2)
    tokens = np.zeros((4, ctx), dtype=np.int32)
    for row, length in enumerate((3, ctx // 2, ctx, 7)):
        ids = rng.integers(3, vocab, size=length)
        if row != 2:
            ids[-1] = eos
        tokens[row, :length] = ids
    return tokens
