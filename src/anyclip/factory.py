"""open_clip-compatible entry points: create models, transforms and tokenizers by name."""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from .models.clip import CLIP
from .models.config import (
    CLIPConfig,
    builtin_config_names,
    get_model_config,
    load_config_file,
)
from .models.custom_text import is_custom_text
from .models.placement import DEFAULT_DEVICE, device_scope, warn_jit
from .models.preprocess import PreprocessConfig
from .weights import hub
from .weights.checkpoint import file_sha256, read_state_dict
from .weights.mapping import load_state_dict
from .weights.pretrained import (
    UnknownPretrainedError,
    get_pretrained_cfg,
    list_pretrained_tags_by_model,
)
from .weights.tower_weights import load_tower_weights

log = logging.getLogger("anyclip")

HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"
_PRECISIONS = {"fp32": "float32", "float32": "float32", "tf32": "float32", "bf16": "bfloat16", "pure_bf16": "bfloat16",
               "fp16": "float16", "pure_fp16": "float16", "amp": "mixed_float16", "amp_fp16": "mixed_float16",
               "amp_bf16": "mixed_bfloat16", "amp_bfloat16": "mixed_bfloat16"}


@dataclasses.dataclass
class _Resolved:
    config: dict
    checkpoint: str | None = None
    preprocess: dict = dataclasses.field(default_factory=dict)
    tag_quick_gelu: bool | None = None
    name: str = "clip"


def list_models() -> list[str]:
    """Names of all model architectures anyclip ships.

    Example:
        >>> "ViT-B-32" in list_models()
        True
    """
    return builtin_config_names()


def _resolve(model_name: str, pretrained: str | None, cache_dir: str | None, load_weights: bool) -> _Resolved:
    if model_name.startswith(HF_HUB_PREFIX):
        repo_id = model_name[len(HF_HUB_PREFIX):]
        data = hub.hf_config(repo_id, cache_dir=cache_dir)
        ckpt = hub.hf_download(repo_id, cache_dir=cache_dir) if load_weights else None
        return _Resolved(data["model_cfg"], ckpt, data.get("preprocess_cfg", {}), name=repo_id.split("/")[-1])
    if model_name.startswith(LOCAL_DIR_PREFIX):
        folder = Path(model_name[len(LOCAL_DIR_PREFIX):]).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"'local-dir:' folder not found: {folder}")
        data = hub.read_config_json(folder / hub.CONFIG_NAME)
        ckpt = str(hub.find_checkpoint_in_dir(folder)) if load_weights else None
        return _Resolved(data["model_cfg"], ckpt, data.get("preprocess_cfg", {}), name=folder.name)
    if model_name.endswith(".json") and os.path.isfile(model_name):
        config = load_config_file(model_name).to_dict()
        name = Path(model_name).stem
    else:
        name = model_name.replace("/", "-")
        config = get_model_config(name).to_dict()
    resolved = _Resolved(config, name=name)
    if not pretrained:
        return resolved
    path = Path(os.path.expanduser(pretrained))
    if pretrained.startswith(HF_HUB_PREFIX):
        repo_id = pretrained[len(HF_HUB_PREFIX):]
        resolved.checkpoint = hub.hf_download(repo_id, cache_dir=cache_dir) if load_weights else None
    elif path.is_file():
        resolved.checkpoint = str(path)
    elif path.is_dir():
        resolved.checkpoint = str(hub.find_checkpoint_in_dir(path)) if load_weights else None
        if (path / hub.CONFIG_NAME).is_file():
            resolved.preprocess = hub.read_config_json(path / hub.CONFIG_NAME).get("preprocess_cfg", {})
    else:
        try:
            entry = get_pretrained_cfg(name, pretrained)
        except UnknownPretrainedError as e:
            if os.sep in pretrained or pretrained.endswith((".safetensors", ".bin", ".pt", ".pth")):
                raise FileNotFoundError(f"pretrained checkpoint file not found: {pretrained}") from None
            raise UnknownPretrainedError(f"{e} (pretrained={pretrained!r} is neither a tag nor an existing path)") \
                from None
        resolved.preprocess = {k: v for k, v in dataclasses.asdict(entry.preprocess).items() if k != "size"}
        resolved.tag_quick_gelu = entry.quick_gelu
        if load_weights and entry.file:
            resolved.checkpoint = str(_packaged_weights(entry))
        elif load_weights:
            resolved.checkpoint = hub.hf_download(entry.repo_id, entry.filename, cache_dir=cache_dir)
    return resolved


def _packaged_weights(entry) -> Path:
    """Weights shipped in the package, checked against the registry's sha256 (a damaged install says so)."""
    path = Path(str(entry.packaged_path))
    if not path.is_file():
        raise FileNotFoundError(f"{entry.model}/{entry.tag}: the packaged weights {path} are missing; reinstall anyclip")
    digest = file_sha256(path)
    if entry.sha256 and digest != entry.sha256:
        raise ValueError(f"{entry.model}/{entry.tag}: {path} has sha256 {digest}, the registry expects "
                         f"{entry.sha256}; the file is damaged, reinstall anyclip")
    return path


def create_model(
    model_name: str,
    pretrained: Optional[str] = None,
    load_weights: bool = True,
    precision: str = "fp32",
    device=DEFAULT_DEVICE,
    jit: bool = False,
    force_quick_gelu: bool = False,
    force_custom_text: bool = False,
    force_patch_dropout: Optional[float] = None,
    force_image_size: Union[int, Tuple[int, int], None] = None,
    force_preprocess_cfg: Optional[Dict[str, Any]] = None,
    force_context_length: Optional[int] = None,
    pretrained_image: bool = False,
    pretrained_text: bool = True,
    pretrained_image_path: Optional[str] = None,
    pretrained_text_path: Optional[str] = None,
    cache_dir: Optional[str] = None,
    output_dict: Optional[bool] = None,
    require_pretrained: bool = False,
    weights_only: bool = True,
    **model_kwargs,
) -> CLIP:
    """Build a model by name and load its weights, as ``open_clip.create_model`` (same arguments).

    ``model_name``: a shipped architecture (``"ViT-B-32"``), ``"hf-hub:org/repo"``, ``"local-dir:/path"`` or a
    JSON config file. ``pretrained``: a registered tag, a checkpoint file, a folder holding one, or
    ``"hf-hub:org/repo"``. ``precision``: ``fp32`` (default; exact float32 products, also on GPUs), ``tf32``
    (float32 weights, TF32 products on GPUs), ``bf16``, ``fp16``, ``amp_bf16``, ``amp`` (Keras dtype policies). ``device``: left at its default, the backend's own placement; named, the model is built
    there. ``jit``: compiled anyway on JAX/TF, ignored with a warning on torch. ``output_dict=True``:
    ``model(images, texts)`` returns open_clip's dict. ``pretrained_text`` does not download a Hugging Face
    encoder's own weights. ``model_kwargs`` go into the model config; ``seed=`` there fixes the random
    initialisation of models created without weights. The model's ``preprocess_cfg`` holds the matching
    preprocessing. Loading is strict: weights whose positional embeddings were made for another image size or
    context length are an error unless ``resize_pos_embed=True`` (taken out of ``model_kwargs``) or
    ``force_image_size`` / ``force_context_length`` ask for the new size (then they are interpolated, as open_clip does).

    Example:
        >>> model = create_model("ViT-B-32", pretrained="laion2b_s34b_b79k")  # doctest: +SKIP
        >>> model = create_model("ViT-B-32")  # random weights
    """
    seed = model_kwargs.pop("seed", 0)
    resize_pos_embed = bool(model_kwargs.pop("resize_pos_embed", False))
    if precision not in _PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {sorted(_PRECISIONS)}")
    if not weights_only:
        raise ValueError("weights_only=False: anyclip never unpickles checkpoints (that runs arbitrary code); "
                         "convert the checkpoint to safetensors or a plain torch state dict and leave weights_only")
    warn_jit(jit)
    resolved = _resolve(model_name, pretrained, cache_dir, load_weights)
    config = dict(resolved.config)
    config["vision_cfg"] = dict(config.get("vision_cfg", {}))
    config["text_cfg"] = dict(config.get("text_cfg", {}))
    if pretrained_image and not resolved.checkpoint and config["vision_cfg"].get("timm_model_name"):
        raise ValueError("pretrained_image=True: anyclip cannot load timm's ImageNet weights into the image tower; "
                         "pass pretrained= (a CLIP checkpoint) or pretrained_image_path= (the tower's weights)")
    if force_quick_gelu:
        config["quick_gelu"] = True
    if force_custom_text:
        config["custom_text"] = True
    if force_patch_dropout is not None:
        config["vision_cfg"]["patch_dropout"] = force_patch_dropout
    if force_image_size is not None:
        config["vision_cfg"]["image_size"] = force_image_size
    if force_context_length is not None:
        config["text_cfg"]["context_length"] = force_context_length
    config.update(model_kwargs)
    if resolved.tag_quick_gelu is not None and resolved.tag_quick_gelu != config.get("quick_gelu", False):
        warnings.warn(f"QuickGELU mismatch: model {model_name} has quick_gelu={config.get('quick_gelu', False)} "
                      f"but pretrained tag {pretrained!r} was trained with quick_gelu={resolved.tag_quick_gelu}; "
                      f"use {model_name}-quickgelu or force_quick_gelu=True", UserWarning, stacklevel=2)
    clip_config = CLIPConfig.from_dict(config)
    if require_pretrained and not resolved.checkpoint:
        raise ValueError(f"require_pretrained=True but no weights were found for {model_name} "
                         f"(pretrained={pretrained!r})")
    with device_scope(device):
        model = _model_class(clip_config)(clip_config, seed=None if resolved.checkpoint else seed,
                                          name=_layer_name(resolved.name), dtype=_PRECISIONS[precision])
        if resolved.checkpoint:
            log.info("loading weights from %s", resolved.checkpoint)
            resize = resize_pos_embed or force_image_size is not None or force_context_length is not None
            load_state_dict(model, read_state_dict(resolved.checkpoint), source=str(resolved.checkpoint),
                            resize_pos_embed=resize, copy=False)
        for path, prefix in ((pretrained_image_path, "visual."), (pretrained_text_path, "text.")):
            if path:
                load_tower_weights(model, path, prefix)
    # As open_clip: the size is the image tower's (force_image_size included), over the checkpoint's preprocess_cfg.
    preprocess = {**resolved.preprocess, "size": clip_config.vision_cfg.image_size, **(force_preprocess_cfg or {})}
    if isinstance(preprocess["size"], list):
        preprocess["size"] = tuple(preprocess["size"])
    model.preprocess_cfg = PreprocessConfig.from_dict(preprocess)
    model.pretrained_cfg = {"model": model_name, "pretrained": pretrained, "checkpoint": resolved.checkpoint}
    model.output_dict = bool(output_dict)
    model.precision = "fp32" if precision == "float32" else precision
    return model


def _model_class(config):
    """CoCa for configs with ``multimodal_cfg``, CustomTextCLIP for custom text towers (open_clip's rules), else CLIP."""
    from .models.config import CoCaConfig
    if isinstance(config, CoCaConfig):
        from .models.coca import CoCa
        return CoCa
    if is_custom_text(config):
        from .models.custom_text import CustomTextCLIP
        return CustomTextCLIP
    return CLIP


def _layer_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name) or "clip"


def _image_overrides(image_mean, image_std, image_interpolation, image_resize_mode) -> dict:
    values = {"mean": image_mean, "std": image_std, "interpolation": image_interpolation,
              "resize_mode": image_resize_mode}
    return {k: v for k, v in values.items() if v is not None}


def create_model_and_transforms(
    model_name: str,
    pretrained: Optional[str] = None,
    load_weights: bool = True,
    precision: str = "fp32",
    device=DEFAULT_DEVICE,
    jit: bool = False,
    force_quick_gelu: bool = False,
    force_custom_text: bool = False,
    force_patch_dropout: Optional[float] = None,
    force_image_size: Union[int, Tuple[int, int], None] = None,
    force_context_length: Optional[int] = None,
    image_mean: Optional[Tuple[float, ...]] = None,
    image_std: Optional[Tuple[float, ...]] = None,
    image_interpolation: Optional[str] = None,
    image_resize_mode: Optional[str] = None,
    aug_cfg=None,
    pretrained_image: bool = False,
    pretrained_text: bool = True,
    pretrained_image_path: Optional[str] = None,
    pretrained_text_path: Optional[str] = None,
    cache_dir: Optional[str] = None,
    output_dict: Optional[bool] = None,
    weights_only: bool = True,
    **model_kwargs,
):
    """``(model, preprocess_train, preprocess_val)`` as ``open_clip.create_model_and_transforms`` (same arguments).

    The model's arguments are :func:`create_model`'s; ``image_*`` override its preprocessing; ``aug_cfg`` (a dict
    or :class:`anyclip.AugmentationCfg`) sets the training augmentation. The transforms map a PIL image (or path)
    to a float32 array: ``preprocess_train`` is open_clip's RandomResizedCrop recipe
    (:class:`anyclip.transforms.TrainTransform`), ``preprocess_val`` the exact eval transform.

    Example:
        >>> model, _, preprocess = create_model_and_transforms("ViT-B-32")
        >>> preprocess.cfg.size
        224
    """
    from .transforms import image_transform, train_transform
    from .transforms.aug_cfg import augment_config
    augment = augment_config(aug_cfg)
    overrides = _image_overrides(image_mean, image_std, image_interpolation, image_resize_mode)
    model = create_model(
        model_name, pretrained, load_weights=load_weights, precision=precision, device=device, jit=jit,
        force_quick_gelu=force_quick_gelu, force_custom_text=force_custom_text,
        force_patch_dropout=force_patch_dropout, force_image_size=force_image_size,
        force_preprocess_cfg=overrides, force_context_length=force_context_length,
        pretrained_image=pretrained_image, pretrained_text=pretrained_text,
        pretrained_image_path=pretrained_image_path, pretrained_text_path=pretrained_text_path,
        cache_dir=cache_dir, output_dict=output_dict, weights_only=weights_only, **model_kwargs)
    return model, train_transform(model.preprocess_cfg, augment), image_transform(model.preprocess_cfg)


def create_model_from_pretrained(
    model_name: str,
    pretrained: Optional[str] = None,
    precision: str = "fp32",
    device=DEFAULT_DEVICE,
    jit: bool = False,
    force_quick_gelu: bool = False,
    force_custom_text: bool = False,
    force_image_size: Union[int, Tuple[int, int], None] = None,
    force_context_length: Optional[int] = None,
    image_mean: Optional[Tuple[float, ...]] = None,
    image_std: Optional[Tuple[float, ...]] = None,
    image_interpolation: Optional[str] = None,
    image_resize_mode: Optional[str] = None,
    return_transform: bool = True,
    cache_dir: Optional[str] = None,
    weights_only: bool = True,
    **model_kwargs,
):
    """``(model, preprocess)`` with weights required, as ``open_clip.create_model_from_pretrained``.

    Example:
        >>> model, preprocess = create_model_from_pretrained("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")  # doctest: +SKIP
    """
    from .transforms import image_transform
    overrides = _image_overrides(image_mean, image_std, image_interpolation, image_resize_mode)
    model = create_model(
        model_name, pretrained, precision=precision, device=device, jit=jit, force_quick_gelu=force_quick_gelu,
        force_custom_text=force_custom_text, force_image_size=force_image_size,
        force_preprocess_cfg=overrides, force_context_length=force_context_length, cache_dir=cache_dir,
        require_pretrained=True, weights_only=weights_only, **model_kwargs)
    return (model, image_transform(model.preprocess_cfg)) if return_transform else model


def get_tokenizer(model_name: str = "", context_length: int | None = None, cache_dir: str | None = None,
                  **kwargs):
    """The tokenizer a model was trained with (CLIP BPE, or its Hugging Face tokenizer).

    Example:
        >>> tokenizer = get_tokenizer("ViT-B-32")
        >>> tokenizer(["a photo of a cat"]).shape
        (1, 77)
    """
    from .tokenizers import CLIPTokenizer, HFTokenizer
    if model_name.startswith(HF_HUB_PREFIX):
        text_cfg = hub.hf_config(model_name[len(HF_HUB_PREFIX):], cache_dir=cache_dir)["model_cfg"].get("text_cfg", {})
    elif model_name.startswith(LOCAL_DIR_PREFIX):
        folder = Path(model_name[len(LOCAL_DIR_PREFIX):])
        text_cfg = hub.read_config_json(folder / hub.CONFIG_NAME)["model_cfg"].get("text_cfg", {})
    elif model_name.endswith(".json") and os.path.isfile(model_name):
        text_cfg = load_config_file(model_name).to_dict()["text_cfg"]
    elif not model_name:  # open_clip: no name means CLIP's BPE tokenizer at 77 tokens
        text_cfg = {}
    else:  # an unknown name says "unknown model" (with close matches); a shipped config that fails says why
        text_cfg = get_model_config(model_name.replace("/", "-")).to_dict()["text_cfg"]
    context_length = context_length or text_cfg.get("context_length", 77)
    tokenizer_kwargs = {**(text_cfg.get("tokenizer_kwargs") or {}), **kwargs}
    if text_cfg.get("hf_tokenizer_name"):
        # as open_clip: a local-dir model's tokenizer files live in that folder
        source = str(folder) if model_name.startswith(LOCAL_DIR_PREFIX) else text_cfg["hf_tokenizer_name"]
        if text_cfg.get("tokenizer_mode"):
            tokenizer_kwargs.setdefault("tokenizer_mode", text_cfg["tokenizer_mode"])
        return HFTokenizer(source, context_length=context_length, cache_dir=cache_dir, **tokenizer_kwargs)
    return CLIPTokenizer(context_length=context_length, **tokenizer_kwargs)


__all__ = ["create_model", "create_model_and_transforms", "create_model_from_pretrained", "get_tokenizer",
           "list_models", "list_pretrained_tags_by_model"]
