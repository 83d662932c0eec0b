"""Reference artefacts for parity tests: random open_clip models saved in open_clip's own format.

Every floating tensor is re-drawn at random (LayerNorm and BatchNorm gains around 1, BatchNorm running
variances positive around 1, others around 0) so that a wrong mapping of a zero- or one-initialised tensor
cannot pass unnoticed. Configs larger than ViT-L are cut to 2 blocks per tower; ResNets other than RN50
(full size) to 1 block per stage and 2 text blocks, and those with images above 288 px to 224 px and half
their width; text vocabularies above 100k entries are cut to 8,192 rows (the embedding lookup has no
size-dependent code path) to keep the giant multilingual tables out of memory.
timm towers (SigLIP) wider than 1024 or with text wider than 768, and every ViTamin but ViTamin-S (whose
MbConv stem stages stay whole) keep 2 blocks per tower: anyclip reads
``vision_cfg.timm_model_kwargs: {"depth": 2}``; open_clip's trunk is built with timm's ``depth=2``.
MobileCLIP's FastViT towers fastvit_mci3 / mci4 keep [1, 2, 2, 1, 2] blocks per stage (timm's ``layers``);
ConvNeXt / Swin towers with text wider than 768 (convnext_xlarge, xxlarge) keep [1, 1, 2, 1] (timm's ``depths``)
and 2 text blocks.
Hugging Face text-tower configs are built offline from a local, reduced HF config.json (reductions in
``hf_reference.py`` and each case's notes).
"""

from __future__ import annotations

import contextlib
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


def reduced_config(name: str, hf_dir: Path | None = None) -> tuple[dict, list[str]]:
    """open_clip's config for ``name`` with the test reductions applied, and a list of what changed.

    Hugging Face text towers get a local, reduced HF config written to ``hf_dir`` (see ``hf_reference``).
    """
    import open_clip
    cfg = copy.deepcopy(open_clip.get_model_config(name) or _anyclip_own_config(name))
    notes = []
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    if text.get("hf_model_name"):
        import tempfile

        from hf_reference import hf_reduced_config
        return hf_reduced_config(name, cfg, Path(hf_dir or tempfile.mkdtemp(prefix="anyclip-hf-")))
    if str(vision.get("timm_model_name") or "").startswith(("convnext_", "swin_")):  # stage depths (timm `depths`)
        if text["width"] > 768:  # convnext_xlarge / xxlarge: 1-2 blocks a stage keep every block type, full widths
            notes.append(f"timm depths -> [1, 1, 2, 1], text layers {text['layers']} -> 2")
            vision["timm_model_kwargs"], text["layers"] = {"depths": [1, 1, 2, 1]}, 2
    elif str(vision.get("timm_model_name") or "").startswith("fastvit_"):  # MobileCLIP: stage depths (`layers`)
        if vision["timm_model_name"] in ("fastvit_mci3", "fastvit_mci4"):  # 1536 / 2048 wide last stages
            notes.append(f"timm layers -> [1, 2, 2, 1, 2], text layers {text['layers']} -> 2")
            vision["timm_model_kwargs"], text["layers"] = {"layers": [1, 2, 2, 1, 2]}, 2
    elif vision.get("timm_model_name"):  # timm towers: depth cut through anyclip's timm_model_kwargs (_timm_kwargs)
        big_vitamin = vision["timm_model_name"].startswith("vitamin_") and "small" not in vision["timm_model_name"]
        if big_vitamin or _timm_width(vision["timm_model_name"]) > 1024 or text["width"] > 768:
            notes.append(f"timm depth -> 2, text layers {text['layers']} -> 2")
            vision["timm_model_kwargs"], text["layers"] = {"depth": 2}, 2
    elif isinstance(vision["layers"], list):  # ModifiedResNet: RN50 is the full-size case, the others are cut
        if name != "RN50":  # one (shortcut) block per stage keeps each stage's widths; RN50 has the rest
            notes.append(f"resnet blocks {vision['layers']} -> [1, 1, 1, 1], text layers {text['layers']} -> 2")
            vision["layers"], text["layers"] = [1, 1, 1, 1], 2
        if vision["image_size"] > 288:  # RN50x16, RN50x64: giant images and widths
            notes.append(f"image size {vision['image_size']} -> 224, width {vision['width']} -> "
                         f"{vision['width'] // 2}")
            vision["image_size"], vision["width"] = 224, vision["width"] // 2
    elif vision["width"] > 1024 or text["width"] > 768:
        notes.append(f"layers {vision['layers']}/{text['layers']} -> 2/2")
        vision["layers"], text["layers"] = 2, 2
    if "multimodal_cfg" in cfg:  # CoCa: parity compares embeddings; tests/test_coca.py checks the decoder
        mm = cfg["multimodal_cfg"]
        if mm["layers"] > 2:
            notes.append(f"decoder layers {mm['layers']} -> 2")
            mm["layers"] = 2
        if vision["width"] > 768 and vision["layers"] > 2:  # coca_ViT-L-14: ViT-L-14 itself runs at full size
            notes.append(f"layers {vision['layers']}/{text['layers']} -> 2/2")
            vision["layers"], text["layers"] = 2, 2
    if text.get("vocab_size", 49408) > 100_000:
        notes.append(f"vocab {text['vocab_size']} -> {MAX_VOCAB}")
        text["vocab_size"] = MAX_VOCAB
    return cfg, notes


def _timm_width(model_name: str) -> int:
    import timm
    import torch
    with torch.device("meta"):
        return timm.create_model(model_name).embed_dim


@contextlib.contextmanager
def _timm_kwargs(cfg: dict):
    """Build open_clip's timm trunk with ``vision_cfg.timm_model_kwargs`` (open_clip does not pass them on)."""
    kwargs = cfg["vision_cfg"].pop("timm_model_kwargs", None)
    if not kwargs:
        yield
        return
    import timm
    create = timm.create_model
    timm.create_model = lambda *args, **kw: create(*args, **{**kw, **kwargs})
    try:
        yield
    finally:
        timm.create_model = create
        cfg["vision_cfg"]["timm_model_kwargs"] = kwargs


def tree_rss(pid: int | None = None) -> int:
    """Resident bytes of process ``pid`` (this one by default) and all its descendants (Linux ``/proc``; 0
    elsewhere)."""
    import os
    children: dict[int, list[int]] = {}
    try:
        entries = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for p in entries:
        try:
            with open(f"/proc/{p}/stat") as f:
                children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(p)
        except (OSError, IndexError, ValueError):
            pass
    total, todo = 0, [pid or os.getpid()]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total


@contextlib.contextmanager
def peak_tree_rss(interval: float = 0.2):
    """Samples :func:`tree_rss` in a thread while the block runs; yields a dict whose ``"bytes"`` is the peak."""
    import threading
    peak, stop = {"bytes": tree_rss()}, threading.Event()

    def sample():
        while not stop.wait(interval):
            peak["bytes"] = max(peak["bytes"], tree_rss())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak["bytes"] = max(peak["bytes"], tree_rss())


def release_memory():
    """Free what a finished parity case left behind, so a run over every config stays within CI's memory:
    unreachable models, JAX's compiled-function caches, and heap pages glibc keeps after large tensors."""
    import ctypes
    import gc
    import sys
    gc.collect()
    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def encode_case(folder: Path, image: bool = True, text: bool = True, more_tokens: tuple[str, ...] = ()) -> dict:
    """anyclip's normalised embeddings of a saved case, under the current Keras backend.

    The model is ``local-dir:folder`` (open_clip's folder layout); the inputs are ``case.npz``'s ``images`` /
    ``tokens``. Returns ``image`` and / or ``text`` embeddings and ``logit_scale`` (exponentiated), plus the text
    embeddings of each further ``case.npz`` token array named in ``more_tokens``, under its name; the Keras
    session is cleared afterwards.
    """
    import keras

    import anyclip
    folder = Path(folder)
    try:
        model = anyclip.create_model(f"local-dir:{folder}")
        case = np.load(folder / "case.npz")
        out = {"logit_scale": float(keras.ops.convert_to_numpy(keras.ops.exp(model.logit_scale)))}
        if image:
            out["image"] = keras.ops.convert_to_numpy(model.encode_image(case["images"], normalize=True))
        for name, key in ([("text", "tokens")] if text else []) + [(key, key) for key in more_tokens]:
            out[name] = keras.ops.convert_to_numpy(model.encode_text(case[key], normalize=True))
        del model
        return out
    finally:
        keras.backend.clear_session()


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
        bn = key[:-len(leaf)] + "running_var" in state  # a BatchNorm2d (ModifiedResNet)
        if key == "logit_scale":
            new = torch.tensor(math.log(1 / 0.07)) + 0.1 * noise
        elif bn and leaf == "weight":
            new = 1.0 + 0.1 * noise
        elif leaf == "running_var":
            new = torch.exp(0.3 * noise)
        elif (module.startswith("ln") or "norm" in module.lower()) and leaf == "weight":  # + HF LayerNorms
            new = 1.0 + 0.1 * noise
        elif leaf == "gamma":  # layer scale
            new = 0.2 + 0.05 * noise
        elif key.endswith("SelfAttention.q.weight"):  # T5 folds the 1/sqrt(head_dim) logit scale into q
            from hf_reference import t5_q_std
            new = noise * t5_q_std(state, value)
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

    folder.mkdir(parents=True, exist_ok=True)
    cfg, notes = reduced_config(name, hf_dir=folder / "hf-config")
    with _timm_kwargs(cfg):
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
    out = {"vision_cfg": cfg["vision_cfg"], "text_cfg": cfg["text_cfg"]}
    if "multimodal_cfg" in cfg:  # CoCa's decoder
        out["multimodal_cfg"] = cfg["multimodal_cfg"]
    return out


def make_tokens(name: str, text_cfg: dict, rng) -> np.ndarray:
    """Real CLIP-BPE tokens for CLIP-tokenizer models; id patterns with eos/pad for the others."""
    import open_clip
    ctx = text_cfg.get("context_length", 77)
    if not text_cfg.get("hf_tokenizer_name"):
        return open_clip.get_tokenizer(name, context_length=ctx)(BPE_TEXTS).numpy().astype(np.int32)
    if text_cfg.get("hf_model_name"):
        from hf_reference import hf_tokens
        return hf_tokens(text_cfg, rng)
    vocab = text_cfg.get("vocab_size")
    eos = text_cfg.get("eos_id", 2)
    tokens = np.zeros((4, ctx), dtype=np.int32)
    for row, length in enumerate((3, ctx // 2, ctx, 7)):
        ids = rng.integers(3, vocab, size=length)
        if row != 2:
            ids[-1] = eos
        tokens[row, :length] = ids
    return tokens
