"""Writing anyclip models back out in open_clip's format (loadable by ``open_clip`` itself)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import atomic_write_text
from .checkpoint import file_sha256, read_state_dict, save_safetensors
from .hub import CONFIG_NAME, SAFE_WEIGHTS_NAME
from .mapping import export_state_dict, load_state_dict


def load_checkpoint(model, checkpoint_path: str, strict: bool = True, weights_only: bool = True, device="cpu"):
    """Load an open_clip checkpoint file (safetensors or torch) into ``model``, as ``open_clip.load_checkpoint``.

    As open_clip's, it interpolates positional embeddings made for another image size or context length (the
    strict path, where that is an error unless asked, is ``load_state_dict(..., resize_pos_embed=False)``).

    Returns ``(missing_keys, unexpected_keys)``; with ``strict=True`` (default) any of them raises instead.
    ``weights_only=False`` (unpickling arbitrary objects) is refused. ``device`` has no effect: the weights go
    where the model's variables live (move the model with ``create_model(device=...)``).

    Example:
        >>> missing, unexpected = load_checkpoint(model, "open_clip_model.safetensors", strict=False)  # doctest: +SKIP
    """
    if not weights_only:
        raise ValueError("load_checkpoint(weights_only=False): anyclip never unpickles checkpoints (that runs "
                         "arbitrary code); re-save the file with torch.save(state_dict) or as safetensors and "
                         "load it with weights_only=True")
    return load_state_dict(model, read_state_dict(checkpoint_path), source=str(checkpoint_path), strict=strict,
                           resize_pos_embed=True, copy=False)


def save_open_clip_checkpoint(model, out: str | os.PathLike) -> Path:
    """Save ``model`` for open_clip: a ``.safetensors`` file, or a folder with weights + config.

    A folder gets ``open_clip_model.safetensors`` and ``open_clip_config.json`` (``model_cfg`` and
    ``preprocess_cfg``), the layout open_clip reads through ``local-dir:`` and ``hf-hub:``. Writes are
    atomic. Returns the weights path.

    Example:
        >>> save_open_clip_checkpoint(model, "exported/")  # doctest: +SKIP
        >>> open_clip.create_model("local-dir:exported")  # doctest: +SKIP
    """
    out = Path(out)
    state = export_state_dict(model)
    if out.suffix == ".safetensors":
        return save_safetensors(state, out, metadata={"format": "pt"})
    out.mkdir(parents=True, exist_ok=True)
    weights = save_safetensors(state, out / SAFE_WEIGHTS_NAME, metadata={"format": "pt"})
    preprocess = getattr(model, "preprocess_cfg", None)
    config = {"model_cfg": model.config.to_dict(),
              "preprocess_cfg": preprocess.to_dict() if preprocess is not None else {}}
    atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return weights


def pretrained_entry(folder: str | os.PathLike, file: str | None = None) -> dict:
    """The ``pretrained.json`` entry for an exported folder: preprocessing, weights ``file`` and ``sha256``.

    ``file`` is the weights' path as the registry should record it (relative to ``anyclip/weights`` for
    weights shipped in the package); by default the weights file name. ``anyclip train`` writes this
    entry as ``pretrained_entry.json`` beside the exported model.

    Example:
        >>> pretrained_entry("logs/shapes/final", "builtin/anyclip-shapes-v1.safetensors")  # doctest: +SKIP
        {'file': 'builtin/anyclip-shapes-v1.safetensors', 'sha256': '4f1c...', 'mean': [...], ...}
    """
    folder = Path(folder)
    weights = folder / SAFE_WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{folder}: no {SAFE_WEIGHTS_NAME}; export the model with save_open_clip_checkpoint")
    config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    preprocess = {k: v for k, v in config.get("preprocess_cfg", {}).items() if k != "size"}
    return {"file": file or weights.name, "sha256": file_sha256(weights),
            "url": "", "hf_hub": "", **preprocess}


