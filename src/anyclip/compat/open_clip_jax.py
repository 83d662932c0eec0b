"""open_clip_jax's ``CLIPInference`` on anyclip (github.com/BobMcDear/open-clip-jax).

``from anyclip.compat.open_clip_jax import CLIPInference`` replaces ``from open_clip_jax import CLIPInference``:
open_clip_jax's model names (``vit-base-patch32``) and pretrained names (``laion2b-s34b-b79k``) map to anyclip's
(``ViT-B-32`` / ``laion2b_s34b_b79k``). Differences from open_clip_jax:

- Images are preprocessed with the model's own open_clip eval transform (PIL bicubic resize, centre crop,
  normalise), which open_clip_jax imitates with TensorFlow's resize; pixels may differ slightly.
- Results are numpy arrays, not jax arrays; the ConvNeXt models have no anyclip counterpart yet and raise.
- ``pretrained`` may also be any anyclip tag or a checkpoint file, as for :func:`anyclip.create_model`.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..models.clip import CLIP, l2_normalize
from ..models.config import CLIPConfig

__all__ = ["CLIPInference", "anyclip_name", "list_models", "list_pretrained", "list_pretrained_by_model"]

# open_clip_jax model name -> anyclip architecture.
_MODELS = {
    "vit-small-patch16": "ViT-S-16", "vit-small-patch32": "ViT-S-32", "vit-base-patch16": "ViT-B-16",
    "vit-base-patch32": "ViT-B-32", "vit-large-patch14": "ViT-L-14", "vit-large-patch16": "ViT-L-16",
    "vit-huge-patch14": "ViT-H-14", "vit-huge-patch16": "ViT-H-16", "vit-eps-patch32": "vit-eps-patch32",
}
# open_clip_jax's 2-layer test model (model_configs/vit-eps-patch32.json), which open_clip does not ship.
_EPS_CONFIG = {"embed_dim": 64, "vision_cfg": {"layers": 2, "width": 64, "head_width": 16, "patch_size": 32,
                                               "image_size": 224},
               "text_cfg": {"layers": 2, "width": 64, "heads": 4, "context_length": 77, "vocab_size": 49408}}
# open_clip_jax's pretrained names per model, in its order (the last is its "most performant" default).
_PRETRAINED = {
    "vit-base-patch32": ("laion400m-e31", "laion400m-e32", "laion2b-e16", "laion2b-s34b-b79k",
                         "datacomp-m-s128m-b4k", "datacomp-xl-s13b-b90k"),
    "vit-base-patch16": ("laion400m-e31", "laion400m-e32", "laion2b-s34b-b88k", "dfn2b", "datacomp-xl-s13b-b90k"),
    "vit-large-patch14": ("laion400m-e31", "laion400m-e32", "laion2b-s32b-b82k"),
    "vit-huge-patch14": ("laion2b-s32b-b79k",),
}
_UNSUPPORTED = ("convnext-base", "convnext-base-w", "convnext-large-d")
_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def list_models() -> tuple[str, ...]:
    """open_clip_jax's model names that anyclip serves.

    Example:
        >>> "vit-base-patch32" in list_models()
        True
    """
    return tuple(sorted(_MODELS))


def list_pretrained() -> tuple[tuple[str, str], ...]:
    """open_clip_jax's ``(model, pretrained)`` pairs that anyclip serves.

    Example:
        >>> ("vit-base-patch32", "laion2b-s34b-b79k") in list_pretrained()
        True
    """
    return tuple((model, tag) for model, tags in _PRETRAINED.items() for tag in tags)


def list_pretrained_by_model(model_name: str) -> tuple[str, ...]:
    """The pretrained names of one open_clip_jax model.

    Example:
        >>> list_pretrained_by_model("vit-huge-patch14")
        ('laion2b-s32b-b79k',)
    """
    _check_model(model_name)
    if model_name not in _PRETRAINED:
        raise ValueError(f"{model_name} does not have pre-trained parameters.")
    return _PRETRAINED[model_name]


def _check_model(model_name: str) -> None:
    if model_name in _UNSUPPORTED:
        raise ValueError(f"{model_name}: open_clip_jax's ConvNeXt models have no anyclip counterpart yet; "
                         f"available: {list_models()}")
    if model_name not in _MODELS:
        raise ValueError(f"Model {model_name} not recognized. Available models are {list(list_models())}")


def anyclip_name(model_name: str, pretrained: str | bool = True) -> tuple[str, str | None]:
    """The anyclip ``(model, pretrained)`` for open_clip_jax's names (``pretrained=False``: no weights).

    ``True`` picks open_clip_jax's default (its last listed tag); a name it does not list is passed on to anyclip
    as is (an anyclip tag or a checkpoint path).

    Example:
        >>> anyclip_name("vit-base-patch32", "laion2b-s34b-b79k")
        ('ViT-B-32', 'laion2b_s34b_b79k')
        >>> anyclip_name("vit-base-patch16")
        ('ViT-B-16', 'datacomp_xl_s13b_b90k')
    """
    _check_model(model_name)
    if pretrained is False or pretrained is None:
        return _MODELS[model_name], None
    if pretrained is True:
        pretrained = list_pretrained_by_model(model_name)[-1]
    if pretrained in _PRETRAINED.get(model_name, ()):
        pretrained = pretrained.replace("-", "_")
    if model_name == "vit-base-patch32" and pretrained in ("laion400m_e31", "laion400m_e32"):
        return "ViT-B-32-quickgelu", pretrained  # open_clip's vit_b_32-quickgelu-laion400m_* were trained so
    return _MODELS[model_name], pretrained


def _create(model_name: str, pretrained, dtype_name: str) -> CLIP:
    from .. import factory
    from ..models.preprocess import PreprocessConfig
    from ..weights.checkpoint import read_state_dict
    from ..weights.mapping import load_state_dict
    arch, tag = anyclip_name(model_name, pretrained)
    if arch != "vit-eps-patch32":
        return factory.create_model(arch, tag, precision=_DTYPES[dtype_name])
    model = CLIP(CLIPConfig.from_dict(_EPS_CONFIG), seed=None if tag else 0, name="vit_eps_patch32", dtype=dtype_name)
    if tag:
        load_state_dict(model, read_state_dict(tag), source=str(tag))
    model.preprocess_cfg = PreprocessConfig(size=224)
    return model


class CLIPInference:
    """End-to-end inference on raw images and texts, as open_clip_jax's ``CLIPInference``.

    Calling it on an image (PIL image, uint8 ``[H, W, 3]`` array or path) or a list of them and a text or list of
    texts gives ``(per_image, per_text)``: ``softmax(softmax_temp * cos)`` over texts for each image, and over
    images for each text; with ``softmax_temp=None`` (or 0) the raw cosine similarities, ``per_text`` their
    transpose. The model's own learned ``logit_scale`` is not used, as in open_clip_jax.

    Example:
        >>> clip = CLIPInference("vit-base-patch32", pretrained="laion2b-s34b-b79k")  # doctest: +SKIP
        >>> probs, _ = clip(Image.open("CLIP.png").convert("RGB"), ["A diagram", "A dog", "A cat"])  # doctest: +SKIP
    """

    def __init__(self, model_name: str, softmax_temp: float | None = 100.0, pretrained: str | bool = True,
                 dtype="float32") -> None:
        from ..factory import get_tokenizer
        from ..transforms import image_transform
        _check_model(model_name)
        dtype_name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
        if dtype_name not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if pretrained is False:
            warnings.warn("You are performing inference with randomly-initialized weights.", UserWarning, stacklevel=2)
        self.softmax_temp = softmax_temp
        self.model = _create(model_name, pretrained, dtype_name)
        self.image_transforms = image_transform(self.model.preprocess_cfg, output="numpy")
        self.tokenizer = get_tokenizer(_MODELS[model_name]) if model_name != "vit-eps-patch32" else get_tokenizer()

    def __repr__(self) -> str:
        return f"CLIPInference({self.model.name}, softmax_temp={self.softmax_temp})"

    def __call__(self, image, text) -> tuple[np.ndarray, np.ndarray]:
        """``(per_image [n_images, n_texts], per_text [n_texts, n_images])`` as float32 numpy arrays."""
        from keras import ops
        images = self.image_transforms.batch(image if isinstance(image, list) else [image])
        texts = self.tokenizer([text] if isinstance(text, str) else list(text))
        image_features = l2_normalize(ops.cast(self.model.encode_image(images), "float32"))
        text_features = l2_normalize(ops.cast(self.model.encode_text(texts), "float32"))
        cosine = np.asarray(ops.convert_to_numpy(ops.matmul(image_features, ops.transpose(text_features))))
        if not self.softmax_temp:
            return cosine, cosine.T
        from ..zero_shot import probabilities
        scaled = self.softmax_temp * cosine
        return probabilities(scaled), probabilities(scaled.T)
