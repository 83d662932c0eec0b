"""tfclip's API on anyclip (github.com/shkarupa-alex/tfclip, 2.0).

``from anyclip.compat.tfclip import create_model_and_transforms`` replaces ``from tfclip import ...``:
:func:`create_model_and_transforms` returns ``(model, image_prep, text_prep)`` where ``model`` is a Keras
functional model taking ``[uint8 images [B, H, W, 3], token ids [B, L]]`` and returning probabilities, with
tfclip's layer names, so that the image and text feature models are cut out as tfclip documents::

    image_model = keras.Model(model.inputs[0], model.get_layer("vision/head/out").output)
    text_model = keras.Model(model.inputs[1], model.get_layer("text/head/out").output)

Differences from tfclip:

- Every anyclip model and tag works (tfclip: ViTs without timm or HF towers). ``weights_path`` takes any
  checkpoint anyclip reads (open_clip ``.safetensors``/``.bin``, a folder), not tfclip's ``.h5``.
- ``image_prep`` resizes and crops with PIL exactly as open_clip's eval transform (tfclip uses TensorFlow's
  resize, "use pre-resized images to compare with open_clip"); it returns numpy ``uint8`` arrays.
- Models trained with the sigmoid loss (SigLIP: they have a logit bias) give ``sigmoid`` probabilities,
  each class on its own; tfclip applies a softmax to them too.
- Layer names ``vision/head/out`` (tfclip's README) and ``vision_head_out`` (tfclip 2.0's code) both work.
- Runs on JAX, torch and TensorFlow. Inference calls (``training`` falsy, eager) of the model and of models cut
  out at ``vision/head/out``, ``text/head/out`` or ``head/prob`` return TensorFlow's eager tensors on TensorFlow
  and, on JAX and torch, :class:`~anyclip.compat.host_array.HostArray`: numpy arrays with TensorFlow's
  ``.numpy()``, detached from autograd (torch runs them under ``torch.no_grad``). ``model.predict`` returns
  one too. Inside ``jax.jit``/``jax.grad``, ``tf.function`` and with ``training=True`` (``fit``) they stay the
  backend's tensors, so training and gradients are unchanged; for gradients through a call on torch pass
  ``training=True``.
- tfclip's README imports ``keras.src.utils.data_utils`` (gone from Keras 3.15); ``from keras import utils as
  data_utils`` gives the same ``get_file``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops
from PIL import Image

from ..factory import create_model, get_tokenizer
from ..models.clip import CLIP, l2_normalize
from ..models.config import get_model_config
from ..models.preprocess import PreprocessConfig
from ..transforms.host import Preprocess
from ..weights.pretrained import (
    get_pretrained_cfg,
    is_pretrained_cfg,
    list_pretrained,
    list_pretrained_models_by_tag,
    list_pretrained_tags_by_model,
)
from ..zero_shot.classifier import default_activation
from .host_array import HostArray, to_host

__all__ = ["create_model_and_transforms", "get_tokenizer", "list_models", "list_pretrained",
           "list_pretrained_models_by_tag", "list_pretrained_tags_by_model", "HostArray", "ImagePrep", "TFClipModel"]


def list_models() -> list[str]:
    """Model names, as ``tfclip.list_models``.

    Example:
        >>> "ViT-B-32" in list_models()
        True
    """
    from ..models.config import builtin_config_names
    return builtin_config_names()


@keras.saving.register_keras_serializable(package="anyclip.compat.tfclip")
class ImageNormalization(keras.layers.Layer):
    """``uint8 [B, H, W, 3]`` -> ``(x / 255 - mean) / std`` in float32, as open_clip's ToTensor + Normalize.

    Example:
        >>> layer = ImageNormalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        >>> np.asarray(layer(np.full((1, 1, 1, 3), 255, "uint8"))).ravel().tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def call(self, images):
        pixels = ops.cast(images, "float32") / np.float32(255.0)
        return (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, images):
        return keras.KerasTensor(images.shape, dtype="float32")

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="anyclip.compat.tfclip")
class InferenceOutput(keras.layers.Layer):
    """A named output: ``activation(x)``; at eager inference on JAX/torch a detached host array with ``.numpy()``.

    With ``training=True`` or under tracing (``jax.jit``, ``tf.function``) it returns the backend tensor.

    Example:
        >>> out = InferenceOutput("softmax")(np.zeros((1, 2), "float32"))
        >>> out.numpy().tolist() if hasattr(out, "numpy") else None
        [[0.5, 0.5]]
    """

    def __init__(self, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)

    def call(self, inputs, training=None):
        outputs = self.activation(inputs)
        return outputs if training else to_host(outputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="anyclip.compat.tfclip")
class ImageTextSimilarity(keras.layers.Layer):
    """``[image features, text features]`` -> ``exp(scale) * cos + bias`` ``[n_images, n_texts]``.

    Example:
        >>> sim = ImageTextSimilarity(scale_init=0.0)
        >>> np.asarray(sim([np.ones((1, 2), "float32"), np.ones((3, 2), "float32")])).round(4).tolist()
        [[1.0, 1.0, 1.0]]
    """

    def __init__(self, scale_init: float, bias_init: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.scale_init, self.bias_init = float(scale_init), None if bias_init is None else float(bias_init)

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(), initializer=keras.initializers.Constant(self.scale_init))
        self.bias = None if self.bias_init is None else self.add_weight(
            name="bias", shape=(), initializer=keras.initializers.Constant(self.bias_init))

    def call(self, inputs):
        image, text = (l2_normalize(ops.cast(x, "float32")) for x in inputs)
        logits = ops.exp(self.scale) * ops.matmul(image, ops.transpose(text))
        return logits if self.bias is None else logits + self.bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[1][0])

    def get_config(self):
        return {**super().get_config(), "scale_init": self.scale_init, "bias_init": self.bias_init}


@keras.saving.register_keras_serializable(package="anyclip.compat.tfclip")
class TFClipModel(keras.Model):
    """tfclip's functional CLIP: ``model([images, texts])`` -> probabilities ``[n_images, n_texts]``.

    ``get_layer`` also accepts tfclip's README names with ``/`` (``"vision/head/out"``), which Keras 3 layer
    names cannot hold.

    Example:
        >>> model, image_prep, text_prep = create_model_and_transforms("ViT-B-32")  # doctest: +SKIP
        >>> model.get_layer("vision/head/out").name  # doctest: +SKIP
        'vision_head_out'
    """

    def get_layer(self, name=None, index=None):
        """A layer by name (``/`` read as ``_``) or index, as ``keras.Model.get_layer``."""
        if isinstance(name, str):
            name = name.replace("/", "_")
        return super().get_layer(name=name, index=index)

    def __call__(self, *args, **kwargs):
        """As ``keras.Model.__call__``; on torch an inference call (``training`` falsy) runs under ``no_grad``."""
        if keras.backend.backend() == "torch" and not kwargs.get("training"):
            import torch
            with torch.no_grad():
                return super().__call__(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def predict(self, *args, **kwargs):
        """As ``keras.Model.predict``, the probabilities as a :class:`HostArray` (numpy with ``.numpy()``)."""
        outputs = super().predict(*args, **kwargs)
        return HostArray.of(outputs) if isinstance(outputs, np.ndarray) else outputs


def build_functional_model(clip: CLIP, preprocess: PreprocessConfig) -> TFClipModel:
    """Wrap an anyclip :class:`~anyclip.CLIP` as tfclip's functional model (its towers, weights shared).

    Inputs: ``vision_images`` (``uint8 [B, H, W, 3]``, already resized, as ``image_prep`` gives) and
    ``text_texts`` (token ids ``[B, context_length]``). Named outputs along the way: ``vision_head_out`` /
    ``text_head_out`` (unnormalised features), ``head_sim`` (logits), ``head_prob`` (probabilities).

    Example:
        >>> clip = create_model("anyclip-shapes", pretrained="v1")
        >>> model = build_functional_model(clip, clip.preprocess_cfg)
        >>> [layer.name for layer in model.layers[-2:]]
        ['head_sim', 'head_prob']
    """
    (h, w), length = clip.image_size, clip.context_length
    images = keras.Input((h, w, 3), dtype="uint8", name="vision_images")
    texts = keras.Input((length,), dtype="int32", name="text_texts")
    x = ImageNormalization(preprocess.mean, preprocess.std, name="vision_image_norm")(images)
    vision = InferenceOutput(name="vision_head_out")(clip.visual(x))
    text = InferenceOutput(name="text_head_out")(clip.text(texts))
    bias = None if clip.logit_bias is None else float(ops.convert_to_numpy(clip.logit_bias))
    logits = ImageTextSimilarity(float(ops.convert_to_numpy(clip.logit_scale)), bias, name="head_sim")(
        [vision, text])
    probs = InferenceOutput(default_activation(clip), name="head_prob", dtype="float32")(logits)
    return TFClipModel(inputs=[images, texts], outputs=probs, name="clip")


class ImagePrep:
    """tfclip's ``image_prep``: one ``[H, W, 3]`` or a batch ``[B, H, W, 3]`` of RGB images -> ``uint8``
    images of the model's size, resized and cropped exactly as open_clip's eval transform (PIL).

    Inputs are ``uint8`` arrays (any backend tensor) or float arrays of 0..255 values (rounded).

    Example:
        >>> prep = ImagePrep(PreprocessConfig(size=64))
        >>> prep(np.zeros((120, 90, 3), "uint8")).shape, prep(np.zeros((2, 30, 40, 3), "uint8")).shape
        ((64, 64, 3), (2, 64, 64, 3))
    """

    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg
        self._transform = Preprocess(cfg)

    def __call__(self, image) -> np.ndarray:
        array = np.asarray(ops.convert_to_numpy(image) if not isinstance(image, np.ndarray) else image)
        if array.ndim not in (3, 4) or array.shape[-1] != 3:
            raise ValueError(f"image_prep expects a single [H, W, 3] or batched [B, H, W, 3] RGB image, "
                             f"got shape {array.shape}")
        if array.dtype != np.uint8:
            if not np.issubdtype(array.dtype, np.number) or array.size and not (0 <= array.min() <= array.max() <= 255):
                raise ValueError(f"image_prep expects uint8 pixels or numbers in [0, 255], got dtype {array.dtype}"
                                 + (f" with values in [{array.min()}, {array.max()}]" if array.size else ""))
            array = np.round(array).astype(np.uint8)
        if array.ndim == 3:
            return self._one(array)
        return np.stack([self._one(a) for a in array]) if len(array) else np.zeros((0, *self.cfg.hw, 3), np.uint8)

    def _one(self, array: np.ndarray) -> np.ndarray:
        if 0 in array.shape[:2]:
            raise ValueError(f"image_prep got an image with no pixels (shape {array.shape})")
        return np.asarray(self._transform.resize_and_crop(Image.fromarray(array)), dtype=np.uint8)


def create_model_and_transforms(model_name: str, pretrained: str | None = None, weights_path: str | None = None,
                                **model_kwargs):
    """``(model, image_prep, text_prep)`` as ``tfclip.create_model_and_transforms``.

    ``model_name`` may use ``/`` (``"ViT-B/32"``), or be any name :func:`anyclip.create_model` takes (a JSON
    config, ``hf-hub:``, ``local-dir:``); ``pretrained`` is a registered tag of the model (it also sets the
    preprocessing); ``weights_path`` a local checkpoint to load instead of downloading the tag's.
    Other keywords go to :func:`anyclip.create_model` (``precision``, ``force_image_size``, ...).

    Example:
        >>> model, image_prep, text_prep = create_model_and_transforms("anyclip-shapes", pretrained="v1")
        >>> images = image_prep(np.zeros((80, 60, 3), "uint8"))[None]
        >>> probs = model([images, text_prep(["a red circle", "a blue square"])], training=False)
        >>> tuple(probs.shape)
        (1, 2)
    """
    custom = model_name.startswith(("hf-hub:", "local-dir:")) or model_name.endswith(".json")
    name = model_name if custom else model_name.replace("/", "-")
    if not custom:
        get_model_config(name)  # unknown names raise here, naming the closest ones
        if pretrained is not None and not is_pretrained_cfg(name, pretrained):
            raise ValueError(f"Required combination of model and weights is not available: {name!r} with "
                             f"pretrained={pretrained!r}. Available weights for {name} are: "
                             f"{list_pretrained_tags_by_model(name)}")
    if weights_path is not None and pretrained is not None:
        entry = get_pretrained_cfg(name, pretrained)
        preprocess = {k: getattr(entry.preprocess, k) for k in ("mean", "std", "interpolation", "resize_mode")}
        model_kwargs.setdefault("force_preprocess_cfg", preprocess)
        if entry.quick_gelu:
            model_kwargs.setdefault("force_quick_gelu", True)
    clip = create_model(name, weights_path if weights_path is not None else pretrained, **model_kwargs)
    model = build_functional_model(clip, clip.preprocess_cfg)
    return model, ImagePrep(clip.preprocess_cfg), get_tokenizer(name, output="numpy")
