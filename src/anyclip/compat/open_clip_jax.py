"""open_clip_jax's ``CLIPInference`` on anyclip (github.com/BobMcDear/open-clip-jax).

``from anyclip.compat.open_clip_jax import CLIPInference`` replaces ``from open_clip_jax import CLIPInference``:
open_clip_jax's model names (``vit-base-patch32``) and pretrained names (``laion2b-s34b-b79k``) map to anyclip's
(``ViT-B-32`` / ``laion2b_s34b_b79k``). Differences from open_clip_jax:

- Images are preprocessed with the model's own open_clip eval transform (PIL bicubic resize, centre crop,
  normalise), which open_clip_jax imitates with TensorFlow's resize; pixels may differ slightly.
- Results are numpy arrays (:class:`~anyclip.compat.host_array.HostArray`, with ``.numpy()``), not jax arrays;
  the ConvNeXt models have no anyclip counterpart yet and raise.
- ``pretrained`` may also be any anyclip tag or a checkpoint file, as for :func:`anyclip.create_model`.
- ``pretrained`` left out gives random weights and a warning, and never downloads (open_clip_jax's default,
  ``True``, downloads its most performant tag: pass ``pretrained=True`` for that).
- ``create_model_with_params``, ``create_image_transforms`` and ``tokenize`` (its README's second example) are in
  :mod:`anyclip.compat.open_clip_jax_parts`, with their differences.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..models.clip import l2_normalize
from .host_array import HostArray
from .open_clip_jax_names import (
    anyclip_name,
    check_model,
    list_models,
    list_pretrained,
    list_pretrained_by_model,
)
from .open_clip_jax_parts import (
    RANDOM_WEIGHTS_WARNING,
    FunctionalCLIP,
    create_clip,
    create_image_transforms,
    create_model_with_params,
    dtype_name,
    tokenize,
)

__all__ = ["CLIPInference", "FunctionalCLIP", "anyclip_name", "create_image_transforms", "create_model_with_params",
           "list_models", "list_pretrained", "list_pretrained_by_model", "tokenize"]


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

    def __init__(self, model_name: str, softmax_temp: float | None = 100.0, pretrained: str | bool | None = None,
                 dtype="float32") -> None:
        from ..factory import get_tokenizer
        from ..transforms.host import Preprocess
        check_model(model_name)
        name = dtype_name(dtype)
        if pretrained is False:
            warnings.warn("You are performing inference with randomly-initialized weights.", UserWarning, stacklevel=2)
        elif pretrained is None:
            warnings.warn(RANDOM_WEIGHTS_WARNING, UserWarning, stacklevel=2)
        self.softmax_temp = softmax_temp
        self.model = create_clip(model_name, pretrained, name)
        self._preprocess = Preprocess(self.model.preprocess_cfg)
        arch, _ = anyclip_name(model_name, False)
        self.tokenizer = get_tokenizer(arch) if model_name != "vit-eps-patch32" else get_tokenizer()

    def _pixels(self, image) -> np.ndarray:
        """One image (PIL, uint8 array or path) -> normalised float32 ``[H, W, 3]`` by the model's eval transform."""
        from PIL import Image

        from ..transforms.host import load_image
        if isinstance(image, np.ndarray):
            image = Image.fromarray(np.asarray(image, np.uint8))
        elif not isinstance(image, Image.Image):
            image = load_image(image)
        cfg = self._preprocess.cfg
        pixels = np.asarray(self._preprocess.resize_and_crop(image), np.float32) / np.float32(255.0)
        return (pixels - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)

    def __repr__(self) -> str:
        return f"CLIPInference({self.model.name}, softmax_temp={self.softmax_temp})"

    def __call__(self, image, text) -> tuple[np.ndarray, np.ndarray]:
        """``(per_image [n_images, n_texts], per_text [n_texts, n_images])`` as float32 numpy arrays."""
        from keras import ops
        images = np.stack([self._pixels(im) for im in (image if isinstance(image, list) else [image])])
        texts = self.tokenizer([text] if isinstance(text, str) else list(text))
        image_features = l2_normalize(ops.cast(self.model.encode_image(images), "float32"))
        text_features = l2_normalize(ops.cast(self.model.encode_text(texts), "float32"))
        cosine = np.asarray(ops.convert_to_numpy(ops.matmul(image_features, ops.transpose(text_features))))
        if not self.softmax_temp:
            return HostArray.of(cosine), HostArray.of(cosine.T)
        from ..zero_shot import probabilities
        scaled = self.softmax_temp * cosine
        return HostArray.of(probabilities(scaled)), HostArray.of(probabilities(scaled.T))
