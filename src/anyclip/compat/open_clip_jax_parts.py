"""open_clip_jax's building blocks: ``create_model_with_params``, ``create_image_transforms``, ``tokenize``.

The second example of open_clip_jax's README runs on them::

    model, vars = create_model_with_params("vit-base-patch32", pretrained="laion2b-s34b-b79k")
    image_transforms = create_image_transforms(train=False, input_format="image", do_batch_transforms=False)
    image = np.expand_dims(image_transforms(pil_image)._numpy(), axis=0)
    text = tokenize(["A diagram", "A dog", "A cat"])._numpy()
    image_proj, text_proj = model.apply(vars, image, text)      # L2-normalised; jax.jit-able on JAX

Differences from open_clip_jax: ``model`` is a :class:`FunctionalCLIP` around an anyclip :class:`~anyclip.CLIP`
(``model.apply`` runs it statelessly on any backend; ``vars`` holds the Keras variables' values by path, not
Flax's parameter tree). Images are resized with PIL's bicubic filter (open_clip_jax: TensorFlow's). Results are
:class:`~anyclip.compat.host_array.HostArray` (numpy with ``.numpy()`` / ``._numpy()``), not TensorFlow tensors.
``pretrained`` left out gives random weights with a warning and never downloads (open_clip_jax downloads its
default tag); ``pretrained=True`` asks for that default tag.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..models.clip import CLIP
from ..models.config import CLIPConfig
from ..models.preprocess import (
    OPENAI_DATASET_MEAN,
    OPENAI_DATASET_STD,
    PreprocessConfig,
)
from .host_array import HostArray
from .open_clip_jax_names import _EPS_CONFIG, anyclip_name

__all__ = ["FunctionalCLIP", "create_clip", "create_image_transforms", "create_model_with_params", "tokenize"]

_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
RANDOM_WEIGHTS_WARNING = ("You are performing inference with randomly-initialized weights. (anyclip: pass "
                          "pretrained=True for open_clip_jax's default weights, or a pretrained name; nothing is "
                          "downloaded unless asked.)")


def dtype_name(dtype) -> str:
    """``"float32"``, ``"bfloat16"`` or ``"float16"`` from a name or a numpy/JAX dtype; others raise."""
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return name


def create_clip(model_name: str, pretrained=None, dtype="float32", image_size: int = 224,
                context_len: int = 77) -> CLIP:
    """The anyclip model for an open_clip_jax name; ``pretrained`` False/None: random weights, no download.

    Example:
        >>> create_clip("vit-eps-patch32").config.embed_dim
        64
    """
    from .. import factory
    from ..weights.checkpoint import read_state_dict
    from ..weights.mapping import load_state_dict
    arch, tag = anyclip_name(model_name, pretrained)
    name = dtype_name(dtype)
    if arch != "vit-eps-patch32":
        sizes = {} if tag else {"force_image_size": image_size, "force_context_length": context_len}
        return factory.create_model(arch, tag, precision=_DTYPES[name], **sizes)
    config = {**_EPS_CONFIG, "vision_cfg": {**_EPS_CONFIG["vision_cfg"], "image_size": image_size},
              "text_cfg": {**_EPS_CONFIG["text_cfg"], "context_length": context_len}}
    model = CLIP(CLIPConfig.from_dict(config), seed=None if tag else 0, name="vit_eps_patch32", dtype=name)
    if tag:
        load_state_dict(model, read_state_dict(tag), source=str(tag))
    model.preprocess_cfg = PreprocessConfig(size=image_size)
    return model


class FunctionalCLIP:
    """open_clip_jax's model object: ``apply(vars, image_input, text_input)`` -> L2-normalised
    ``(image_proj, text_proj)``, the image side times ``exp(vars["params"]["temp"])`` when made with ``temp_init``.

    ``apply`` is pure (Keras ``stateless_call``): on JAX it runs under ``jax.jit`` / ``jax.grad`` with ``vars`` as
    the traced argument. ``clip`` is the anyclip model (its variables are not changed by ``apply``).

    Example:
        >>> model, vars = create_model_with_params("vit-eps-patch32", pretrained=False)
        >>> image_proj, text_proj = model.apply(vars, np.zeros((1, 224, 224, 3), "float32"), tokenize(["a cat"]))
        >>> tuple(image_proj.shape), tuple(text_proj.shape)
        ((1, 64), (1, 64))
    """

    def __init__(self, clip: CLIP, temp_init: float | None = None):
        self.clip, self.temp_init = clip, temp_init

    def __repr__(self) -> str:
        return f"FunctionalCLIP({self.clip.name}, temp_init={self.temp_init})"

    def init_vars(self) -> dict:
        """``{"params": {path: value}, "state": {path: value}}`` from the model's current variables."""
        params = {v.path: v.value for v in self.clip.trainable_variables}
        if self.temp_init:
            params["temp"] = np.asarray(self.temp_init, np.float32)
        return {"params": params, "state": {v.path: v.value for v in self.clip.non_trainable_variables}}

    def apply(self, vars: dict, image_input, text_input):
        """Projected, L2-normalised ``(image_proj [B, D], text_proj [T, D])`` computed with ``vars``' values."""
        from keras import ops
        params, state = vars["params"], vars.get("state", {})
        try:
            trainable = [params[v.path] for v in self.clip.trainable_variables]
            non_trainable = [state[v.path] for v in self.clip.non_trainable_variables]
        except KeyError as e:
            raise KeyError(f"vars has no value for variable {e.args[0]!r}; pass the vars that "
                           f"create_model_with_params returned with this model") from None
        outputs, _ = self.clip.stateless_call(trainable, non_trainable,
                                              {"images": image_input, "texts": text_input}, training=False)
        image_proj, text_proj = outputs["image_features"], outputs["text_features"]
        if self.temp_init:
            image_proj = ops.exp(ops.cast(params["temp"], image_proj.dtype)) * image_proj
        return image_proj, text_proj


def create_model_with_params(model_name: str, temp_init: float | None = None, image_size: int = 224,
                             context_len: int = 77, pretrained: str | bool | None = None,
                             grad_checkpoint: bool = False, dtype="float32") -> tuple[FunctionalCLIP, dict]:
    """``(model, vars)`` as open_clip_jax's ``create_model_with_params`` (see :class:`FunctionalCLIP`).

    ``pretrained``: an open_clip_jax or anyclip pretrained name, a checkpoint path, ``True`` (open_clip_jax's
    default tag, downloaded if not cached), ``False`` (random weights), or left out: random weights and a warning,
    never a download. ``image_size`` / ``context_len`` shape random weights only, as in open_clip_jax.

    Example:
        >>> model, vars = create_model_with_params("vit-eps-patch32", pretrained=False, temp_init=2.0)
        >>> float(vars["params"]["temp"])
        2.0
    """
    if pretrained is None:
        warnings.warn(RANDOM_WEIGHTS_WARNING, UserWarning, stacklevel=2)
    clip = create_clip(model_name, pretrained, dtype, image_size, context_len)
    if grad_checkpoint:
        clip.set_grad_checkpointing(True)
    model = FunctionalCLIP(clip, temp_init)
    return model, model.init_vars()


class Sequential:
    """open_clip_jax's chain of transforms: calls each in turn (``modules`` lists them)."""

    def __init__(self, *modules):
        self.modules = list(modules)

    def __repr__(self) -> str:
        return " --->\n".join(getattr(m, "__name__", repr(m)) for m in self.modules)

    def __call__(self, value):
        for module in self.modules:
            value = module(value)
        return value


def _reader(input_format: str):
    from PIL import Image

    from ..transforms.host import load_image
    if input_format == "path":
        return lambda path: load_image(Path(path))
    if input_format == "bytes":
        return lambda data: load_image(bytes(data))
    return lambda image: image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))


def create_image_transforms(train: bool, input_format: str = "path", do_batch_transforms: bool = True,
                            size: int = 224, dtype="float32"):
    """open_clip_jax's transforms: item (read, resize the shortest edge to ``size``, centre crop / pad) and batch
    (normalise with OpenAI's mean and std, cast to ``dtype``), as a pair or one :class:`Sequential`.

    ``input_format``: ``"path"``, ``"bytes"`` (encoded image) or ``"image"`` (PIL image or uint8 array).
    ``train=True`` (random resized crops) is not provided: use :func:`anyclip.transforms.train_transform`.

    Example:
        >>> transforms = create_image_transforms(train=False, input_format="image", do_batch_transforms=False)
        >>> transforms(np.zeros((300, 200, 3), "uint8"))._numpy().shape
        (224, 224, 3)
    """
    from ..transforms.host import Preprocess
    if input_format not in ("path", "bytes", "image"):
        raise ValueError(f"Input format {input_format} not recognized. Available options are [path, bytes, image].")
    if train:
        raise NotImplementedError("create_image_transforms(train=True): open_clip_jax's training crops are not "
                                  "provided; use anyclip.transforms.train_transform (open_clip's) instead")
    crop = Preprocess(PreprocessConfig(size=size)).resize_and_crop
    mean = 255 * np.asarray(OPENAI_DATASET_MEAN, np.float32)
    std = 255 * np.asarray(OPENAI_DATASET_STD, np.float32)
    name = dtype_name(dtype)

    def resize_and_crop(image):
        return HostArray.of(np.asarray(crop(image), np.float32))

    def normalize(pixels):
        return HostArray.of(((np.asarray(pixels, np.float32) - mean) / std).astype(name))

    item, batch = Sequential(_reader(input_format), resize_and_crop), Sequential(normalize)
    return (item, batch) if do_batch_transforms else Sequential(*item.modules, *batch.modules)


def tokenize(inputs, context_len: int = 77) -> HostArray:
    """CLIP BPE token ids as open_clip_jax's ``tokenize``: a string -> ``[context_len]``, a list ->
    ``[n, context_len]`` int32 (too-long texts are cut, ending in the end-of-text token, as open_clip does).

    Example:
        >>> tokenize("a cat", context_len=5)._numpy().tolist()
        [49406, 320, 2368, 49407, 0]
    """
    from ..tokenizers import CLIPTokenizer
    single = isinstance(inputs, str)
    tokens = CLIPTokenizer(output="numpy")([inputs] if single else list(inputs), context_length=context_len)
    return HostArray.of(tokens[0] if single else tokens)

