"""The rest of open_clip 3.3.0's top-level functions, for ``import anyclip as open_clip``.

Each takes open_clip's arguments. Where a meaning cannot carry over to Keras it says so: models are Keras
models (no TorchScript: ``trace_model`` runs the encoders once; ``convert_weights_to_*`` point to
``precision=``), arrays are the backend's, and nothing is unpickled.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .. import factory
from ..models.placement import DEFAULT_DEVICE, device_scope
from ..models.preprocess import (
    OPENAI_DATASET_MEAN,
    OPENAI_DATASET_STD,
    PreprocessConfig,
)

__all__ = ["build_zero_shot_classifier_legacy", "convert_weights_to_fp16", "convert_weights_to_lp",
           "image_transform", "load_openai_model", "push_pretrained_to_hf_hub", "trace_model"]


def image_transform(image_size: Union[int, Tuple[int, int]], is_train: bool, mean: Optional[Tuple[float, ...]] = None,
                    std: Optional[Tuple[float, ...]] = None, resize_mode: Optional[str] = None,
                    interpolation: Optional[str] = None, fill_color: int = 0, aug_cfg=None):
    """open_clip's ``image_transform``: the train (``is_train``) or eval transform for these settings.

    Returns anyclip's transform objects (PIL image or path in, float32 array out).

    Example:
        >>> image_transform(224, is_train=False).cfg.size
        224
    """
    from ..transforms import image_transform as eval_transform
    from ..transforms import train_transform
    from ..transforms.aug_cfg import augment_config
    size = tuple(image_size) if isinstance(image_size, (list, tuple)) else image_size
    cfg = PreprocessConfig.from_dict({"size": size, "mean": mean, "std": std, "resize_mode": resize_mode,
                                      "interpolation": interpolation, "fill_color": fill_color})
    return train_transform(cfg, augment_config(aug_cfg)) if is_train else eval_transform(cfg)


def build_zero_shot_classifier_legacy(model, tokenizer, classnames: Sequence[str],
                                      templates: Sequence[Union[Callable, str]], device="cpu", use_tqdm: bool = False):
    """open_clip's one-class-at-a-time classifier builder; same result as :func:`anyclip.build_zero_shot_classifier`.

    Example:
        >>> weights = build_zero_shot_classifier_legacy(model, tokenizer, ["cat"], ["a {}"])  # doctest: +SKIP
    """
    from ..zero_shot import build_zero_shot_classifier
    return build_zero_shot_classifier(model, tokenizer, classnames, templates, num_classes_per_batch=1,
                                      device=device, use_tqdm=use_tqdm)


def convert_weights_to_lp(model, dtype="float16"):
    """Not available: Keras models take their precision when built; use ``create_model(..., precision=)``.

    Example:
        >>> model = anyclip.create_model("ViT-B-32", precision="fp16")  # instead  # doctest: +SKIP
    """
    raise NotImplementedError(f"convert_weights_to_lp(dtype={dtype}): anyclip sets the precision when the model is "
                              "built; use create_model(..., precision='fp16') or precision='bf16'")


def convert_weights_to_fp16(model, dtype="float16"):
    """Not available, as :func:`convert_weights_to_lp`: use ``create_model(..., precision="fp16")``.

    Example:
        >>> model = anyclip.create_model("ViT-B-32", precision="fp16")  # instead  # doctest: +SKIP
    """
    return convert_weights_to_lp(model, dtype)


def trace_model(model, batch_size=256, device="cpu"):
    """open_clip's ``trace_model``: runs ``encode_image`` and ``encode_text`` once on a batch, returns the model.

    There is no TorchScript: this only compiles (JAX/TF) or warms up the encoders for ``batch_size``.

    Example:
        >>> model = trace_model(anyclip.create_model("anyclip-shapes", "v1"), batch_size=2)  # doctest: +SKIP
    """
    height, width = model.image_size
    with device_scope(device):
        model.encode_image(np.ones((batch_size, height, width, 3), np.float32))
        model.encode_text(np.zeros((batch_size, model.context_length), np.int32))
    return model


def load_openai_model(name: str, precision: Optional[str] = None, device=None, cache_dir: Optional[str] = None):
    """An OpenAI CLIP model (a name from ``list_openai_models()`` or an OpenAI checkpoint file), in fp32 by default.

    A file may be a plain ``torch.save``'d state dict, OpenAI's TorchScript archive (read as weights, never
    run) or safetensors.

    Example:
        >>> model = load_openai_model("ViT-B-32")  # doctest: +SKIP
    """
    from ..weights.download import list_openai_models
    precision = precision or "fp32"
    device = DEFAULT_DEVICE if device is None else device
    if name in list_openai_models():
        return factory.create_model(name, "openai", precision=precision, device=device, force_quick_gelu=True,
                                    cache_dir=cache_dir)
    if not os.path.isfile(name):
        raise RuntimeError(f"load_openai_model: {name!r} is neither one of {list_openai_models()} nor a file")
    from ..models.clip import CLIP
    from ..models.config import CLIPConfig
    from ..weights.checkpoint import read_state_dict
    from ..weights.mapping import load_state_dict
    from .clip import _JIT_EXTRAS, openai_config_from_state_dict
    state = {k: v for k, v in read_state_dict(name).items() if k not in _JIT_EXTRAS}
    config = CLIPConfig.from_dict(openai_config_from_state_dict(state))
    with device_scope(device):
        model = CLIP(config, seed=None, name="openai_clip", dtype=factory._PRECISIONS[precision])
        load_state_dict(model, state, source=str(name))
    model.preprocess_cfg = PreprocessConfig(size=config.vision_cfg.image_size, mean=OPENAI_DATASET_MEAN,
                                            std=OPENAI_DATASET_STD)
    model.output_dict = False
    return model


def push_pretrained_to_hf_hub(model_name, pretrained: str, repo_id: str, precision: str = "fp32",
                              image_mean: Optional[Tuple[float, ...]] = None,
                              image_std: Optional[Tuple[float, ...]] = None, image_interpolation: Optional[str] = None,
                              image_resize_mode: Optional[str] = None, commit_message: str = "Add model",
                              token: Optional[str] = None, revision: Optional[str] = None, private: bool = False,
                              create_pr: bool = False, model_card: Optional[dict] = None,
                              hf_tokenizer_self: bool = False, **kwargs: Dict[str, Any]):
    """Load ``model_name`` with ``pretrained`` weights and push it to ``repo_id``, as open_clip.

    ``hf_tokenizer_self`` is not supported (anyclip uploads no tokenizer files).

    Example:
        >>> push_pretrained_to_hf_hub("ViT-B-32", "openai", "me/vit-b-32")  # doctest: +SKIP
    """
    if hf_tokenizer_self:
        raise ValueError("hf_tokenizer_self=True: anyclip does not upload tokenizer files; leave it False")
    from ..weights.push import push_to_hf_hub
    model = factory.create_model_from_pretrained(
        model_name, pretrained, precision=precision, image_mean=image_mean, image_std=image_std,
        image_interpolation=image_interpolation, image_resize_mode=image_resize_mode, return_transform=False,
        **kwargs)
    return push_to_hf_hub(model, factory.get_tokenizer(model_name), None, repo_id, commit_message=commit_message,
                          token=token, revision=revision, private=private, create_pr=create_pr,
                          model_card=model_card)
