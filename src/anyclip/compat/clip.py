"""OpenAI's ``clip`` package API on anyclip: ``import anyclip.compat.clip as clip``.

``available_models()``, ``load(name, device, jit, download_root)`` and ``tokenize(texts, context_length,
truncate)`` behave as in github.com/openai/CLIP, and the loaded model has ``encode_image``, ``encode_text``,
``model(image, text) -> (logits_per_image, logits_per_text)``, ``visual.input_resolution`` and
``context_length``. Differences from OpenAI's package:

- Arrays: with torch installed (and ``array_type="auto"``, the default of :func:`load` and :func:`tokenize`)
  ``preprocess`` and ``tokenize`` return torch tensors, so OpenAI's README runs unchanged; otherwise (or with
  ``array_type="numpy"``) they
  return numpy arrays. ``preprocess`` gives a channels-first float32 ``[3, H, W]`` image, as OpenAI's. The model
  takes numpy, torch or backend arrays and answers in the type of its input (torch tensors on the input's device).
- Images may also be channels-last ``[N, H, W, 3]`` (anyclip's own layout); ``[N, 3, H, W]`` is read first.
- ``device`` is accepted and checked but placement follows the Keras backend (JAX/TF use the accelerator when
  present); the model computes in float32 everywhere (OpenAI's uses float16 on CUDA).
- ``jit=True`` is a documented no-op: there is no TorchScript here; a warning says so and the model is loaded
  as with ``jit=False`` (what OpenAI's ``load`` does for a file that is not a JIT archive).
- Named models come from anyclip's registry (the ``"openai"`` weights of the ``*-quickgelu`` architectures,
  fetched from the Hugging Face hub into ``download_root``), not from OpenAI's download URLs.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings

import numpy as np

from ..models.clip import CLIP
from ..models.config import CLIPConfig
from ..models.preprocess import (
    OPENAI_DATASET_MEAN,
    OPENAI_DATASET_STD,
    PreprocessConfig,
)

__all__ = ["CLIPModel", "anyclip_name", "available_models", "load", "openai_config_from_state_dict", "tokenize"]

# OpenAI's names -> anyclip architectures; all take the "openai" pretrained tag (QuickGELU, as OpenAI trained them).
_MODELS = {
    "RN50": "RN50-quickgelu", "RN101": "RN101-quickgelu", "RN50x4": "RN50x4-quickgelu",
    "RN50x16": "RN50x16-quickgelu", "RN50x64": "RN50x64-quickgelu", "ViT-B/32": "ViT-B-32-quickgelu",
    "ViT-B/16": "ViT-B-16-quickgelu", "ViT-L/14": "ViT-L-14-quickgelu", "ViT-L/14@336px": "ViT-L-14-336-quickgelu",
}
_DEVICE_KINDS = ("cpu", "cuda", "gpu", "tpu", "mps")
_JIT_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def _torch_out(array_type: str) -> bool:
    """Whether results are torch tensors: ``"torch"``, ``"numpy"`` or ``"auto"`` (torch when installed)."""
    if array_type not in ("auto", "torch", "numpy"):
        raise ValueError(f"array_type must be 'auto', 'torch' or 'numpy', got {array_type!r}")
    if array_type == "auto":
        return importlib.util.find_spec("torch") is not None
    return array_type == "torch"


@functools.cache
def _clip_tokenizer():
    from ..tokenizers import CLIPTokenizer
    return CLIPTokenizer()


def available_models() -> list[str]:
    """The names of the available CLIP models, as OpenAI's ``clip.available_models()``.

    Example:
        >>> available_models()[:2], len(available_models())
        (['RN50', 'RN101'], 9)
    """
    return list(_MODELS)


def anyclip_name(name: str) -> tuple[str, str]:
    """The anyclip ``(model, pretrained)`` pair for an OpenAI model name.

    Example:
        >>> anyclip_name("ViT-L/14@336px")
        ('ViT-L-14-336-quickgelu', 'openai')
    """
    if name not in _MODELS:
        raise RuntimeError(f"Model {name} not found; available models = {available_models()}")
    return _MODELS[name], "openai"


def _check_device(device) -> str:
    if device is None:
        return "default"
    kind = getattr(device, "type", device)  # a torch.device has .type
    if not isinstance(kind, str) or kind.split(":")[0].lower() not in _DEVICE_KINDS:
        raise ValueError(f"device must be None, a torch.device or a string starting with one of {_DEVICE_KINDS}, "
                         f"got {device!r}")
    return str(device)


def openai_config_from_state_dict(state: dict) -> dict:
    """An anyclip model config inferred from an OpenAI-layout state dict's shapes, as OpenAI's ``build_model``.

    Example:
        >>> openai_config_from_state_dict(read_state_dict("ViT-B-32.pt"))["vision_cfg"]  # doctest: +SKIP
        {'layers': 12, 'width': 768, 'patch_size': 32, 'image_size': 224}
    """
    required = ("text_projection", "positional_embedding", "token_embedding.weight", "ln_final.weight")
    missing = [k for k in required if k not in state]
    if missing:
        raise RuntimeError(f"not an OpenAI CLIP state dict: missing {missing}")
    if "visual.proj" in state:  # vision transformer
        width, _, patch, _ = state["visual.conv1.weight"].shape
        layers = len([k for k in state if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")])
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = {"layers": layers, "width": int(width), "patch_size": int(patch), "image_size": int(patch * grid)}
    else:  # modified ResNet
        layers = [len({k.split(".")[2] for k in state if k.startswith(f"visual.layer{b}.")}) for b in (1, 2, 3, 4)]
        tokens = state["visual.attnpool.positional_embedding"].shape[0]
        grid = round((tokens - 1) ** 0.5)
        if grid * grid + 1 != tokens:
            raise RuntimeError(f"visual.attnpool.positional_embedding has {tokens} rows, not a square grid + 1")
        vision = {"layers": layers, "width": int(state["visual.layer1.0.conv1.weight"].shape[0]),
                  "patch_size": None, "image_size": int(grid * 32)}
    text_width = int(state["ln_final.weight"].shape[0])
    text = {"context_length": int(state["positional_embedding"].shape[0]),
            "vocab_size": int(state["token_embedding.weight"].shape[0]), "width": text_width,
            "heads": text_width // 64,
            "layers": len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})}
    return {"embed_dim": int(state["text_projection"].shape[1]), "quick_gelu": True,
            "vision_cfg": vision, "text_cfg": text}


def load(name: str, device=None, jit: bool = False, download_root: str | None = None, *, array_type: str = "auto"):
    """``(model, preprocess)`` for an OpenAI model name or a local OpenAI-format checkpoint, as ``clip.load``.

    ``name``: one of :func:`available_models` or the path of a checkpoint holding an OpenAI state dict (a plain
    ``torch.save``'d state dict, OpenAI's TorchScript archive, or a ``.safetensors`` file); the architecture is
    read from the weights' shapes. ``device``: accepted for compatibility (see the module notes).
    ``jit=True`` warns and loads the ordinary model. ``download_root``: the download cache folder.
    ``array_type``: what ``preprocess`` and the model's ``logit_scale`` give (see the module notes).

    Example:
        >>> model, preprocess = load("ViT-B/32", device="cpu")  # doctest: +SKIP
        >>> model.visual.input_resolution, model.context_length  # doctest: +SKIP
        (224, 77)
    """
    from .. import factory
    from ..transforms import image_transform
    from ..weights.checkpoint import read_state_dict
    from ..weights.mapping import load_state_dict

    device = _check_device(device)
    _torch_out(array_type)  # checks the value
    if jit:
        warnings.warn("anyclip has no TorchScript models; jit=True is ignored and the ordinary model is loaded",
                      UserWarning, stacklevel=2)
    if name in _MODELS:
        arch, tag = anyclip_name(name)
        model = factory.create_model(arch, tag, cache_dir=download_root)
    elif os.path.isfile(name):
        state = {k: v for k, v in read_state_dict(name).items() if k not in _JIT_EXTRAS}
        model = CLIP(CLIPConfig.from_dict(openai_config_from_state_dict(state)), seed=None, name="openai_clip")
        load_state_dict(model, state, source=str(name))
        model.preprocess_cfg = PreprocessConfig(size=model.config.vision_cfg.image_size, mean=OPENAI_DATASET_MEAN,
                                                std=OPENAI_DATASET_STD, interpolation="bicubic",
                                                resize_mode="shortest")
    else:
        raise RuntimeError(f"Model {name} not found; available models = {available_models()}")
    return CLIPModel(model, device, array_type), _ChannelsFirst(image_transform(model.preprocess_cfg, output="numpy"), array_type)


def tokenize(texts: str | list[str], context_length: int = 77, truncate: bool = False, *, array_type: str = "auto"):
    """Token ids ``[len(texts), context_length]`` as OpenAI's ``clip.tokenize`` (int64 torch, int32 numpy).

    A text longer than ``context_length`` (with its start and end tokens) raises ``RuntimeError`` unless
    ``truncate``, which keeps the first tokens and writes the end token last. ``array_type``: ``"auto"``
    (torch tensor when torch is installed), ``"torch"`` or ``"numpy"``.

    Example:
        >>> tokenize(["a cat", "a dog"], array_type="numpy").shape
        (2, 77)
        >>> tokenize("a cat", array_type="numpy")[0, :4].tolist()
        [49406, 320, 2368, 49407]
    """
    _tokenizer = _clip_tokenizer()
    if isinstance(texts, str):
        texts = [texts]
    sot, eot = _tokenizer.sot_token_id, _tokenizer.eot_token_id
    result = np.zeros((len(texts), context_length), dtype=np.int32)
    for i, (text, ids) in enumerate(zip(texts, _tokenizer.encode_batch(list(texts)))):
        tokens = [sot, *ids, eot]
        if len(tokens) > context_length:
            if not truncate:
                raise RuntimeError(f"Input {text} is too long for context length {context_length}")
            tokens = tokens[:context_length]
            tokens[-1] = eot
        result[i, :len(tokens)] = tokens
    if _torch_out(array_type):
        import torch
        return torch.from_numpy(result.astype(np.int64))  # a LongTensor, as OpenAI's on torch >= 1.8
    return result


class _ChannelsFirst:
    """OpenAI's ``preprocess``: PIL image -> float32 ``[3, H, W]`` (torch tensor or numpy array, see the module)."""

    def __init__(self, transform, array_type: str = "auto"):
        self.transform, self.array_type = transform, array_type

    def __call__(self, image):
        pixels = np.ascontiguousarray(self.transform(image).transpose(2, 0, 1))
        if _torch_out(self.array_type):
            import torch
            return torch.from_numpy(pixels)
        return pixels

    def __repr__(self) -> str:
        return f"Preprocess(channels_first, {self.transform.cfg})"


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _to_numpy(x) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    from keras import ops
    return np.asarray(ops.convert_to_numpy(x))


def _images_nhwc(images) -> np.ndarray:
    images = _to_numpy(images).astype(np.float32, copy=False)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch [N, 3, H, W] (or [N, H, W, 3]), got shape {images.shape}")
    if images.shape[1] == 3:
        return images.transpose(0, 2, 3, 1)
    if images.shape[-1] == 3:
        return images
    raise ValueError(f"images must have 3 channels first ([N, 3, H, W]) or last, got shape {images.shape}")


def _like(result, *inputs):
    """``result`` as a torch tensor on the first torch input's device, else as a numpy array."""
    result = np.asarray(_to_numpy(result))
    for x in inputs:
        if _is_torch(x):
            import torch
            return torch.from_numpy(np.ascontiguousarray(result)).to(x.device)
    return result


class _Visual:
    """``model.visual``: the image tower's sizes (``input_resolution``, ``output_dim``); calling it encodes images."""

    def __init__(self, owner: CLIPModel):
        self._owner = owner
        self.input_resolution = owner.model.image_size[0]
        self.output_dim = owner.model.config.embed_dim

    def __call__(self, image):
        return self._owner.encode_image(image)


class CLIPModel:
    """The model returned by :func:`load`: OpenAI's methods over an anyclip :class:`~anyclip.CLIP` (``.model``).

    Example:
        >>> model, preprocess = load("ViT-B/32")  # doctest: +SKIP
        >>> logits_per_image, logits_per_text = model(preprocess(image)[None], tokenize(["a cat"]))  # doctest: +SKIP
    """

    def __init__(self, model: CLIP, device: str = "default", array_type: str = "auto"):
        self.model = model
        self.device, self.array_type = device, array_type
        self.visual = _Visual(self)

    @property
    def context_length(self) -> int:
        return self.model.context_length

    @property
    def vocab_size(self) -> int:
        return self.model.config.text_cfg.vocab_size

    @property
    def dtype(self) -> str:
        return str(self.model.dtype)

    @property
    def logit_scale(self):
        """The learned log temperature (``model.logit_scale.exp()`` is the 100 of the README), a tensor or array."""
        value = np.asarray(_to_numpy(self.model.logit_scale.value), dtype=np.float32)
        if _torch_out(self.array_type):
            import torch
            return torch.from_numpy(value)
        return value

    def encode_image(self, image):
        """Image features ``[N, embed_dim]``, not normalised (as OpenAI's)."""
        return _like(self.model.encode_image(_images_nhwc(image)), image)

    def encode_text(self, text):
        """Text features ``[N, embed_dim]`` from :func:`tokenize` ids, not normalised (as OpenAI's)."""
        return _like(self.model.encode_text(_to_numpy(text).astype(np.int32, copy=False)), text)

    def __call__(self, image, text):
        """``(logits_per_image [N_img, N_txt], logits_per_text [N_txt, N_img])``: 100-ish × cosine similarities."""
        per_image, _ = self.model.get_logits(_images_nhwc(image), _to_numpy(text).astype(np.int32, copy=False))
        per_image = np.asarray(_to_numpy(per_image))
        return _like(per_image, image, text), _like(per_image.T, image, text)

    forward = __call__

    def eval(self) -> CLIPModel:
        return self

    def float(self) -> CLIPModel:
        return self

    def to(self, device) -> CLIPModel:
        self.device = _check_device(device)
        return self

    def __repr__(self) -> str:
        return f"CLIPModel({self.model.name}, input_resolution={self.visual.input_resolution})"
