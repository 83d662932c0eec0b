"""The two-tower CLIP model and its fast inference entry points."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ..layers.init import child_seed, constant_init
from ..runtime import compiled
from ..towers.registry import tower_class
from .config import CLIPConfig
from .layout import to_channels_last
from .placement import model_device_scope


def l2_normalize(x, axis=-1):
    """``x / max(||x||, 1e-12)`` as ``torch.nn.functional.normalize``."""
    norm = ops.sqrt(ops.sum(ops.square(x), axis=axis, keepdims=True))
    return x / ops.maximum(norm, 1e-12)


@keras.saving.register_keras_serializable(package="anyclip")
class CLIP(keras.Model):
    """Image tower ``visual`` + text tower ``text`` + learned ``logit_scale`` (and ``logit_bias``).

    Images are float batches ``[batch, H, W, 3]`` or ``[batch, 3, H, W]`` (the layout rule of
    :mod:`anyclip.models.layout`); texts are int token ids ``[batch, context_length]``. Outputs are the
    backend's arrays (torch tensors on the model's device). ``model(image, text)`` answers as open_clip's
    ``CLIP.forward``: ``(image_features, text_features, logit_scale.exp()[, logit_bias])``, normalised, or
    with ``model.output_dict = True`` the dict of those keys; ``model({"images": ..., "texts": ...})``
    gives that dict (Keras' form, used in training). Without ``training=``, the ``(image, text)`` form on torch
    follows ``model.train()`` / ``model.eval()`` as open_clip does (a new torch module is in train mode); every
    other call runs in inference mode.

    ``seed`` makes the random initialisation reproducible; ``seed=None`` initialises to zeros, for
    models whose weights are loaded right after.

    Example:
        >>> import anyclip
        >>> model = anyclip.create_model("ViT-B-32")
        >>> model.encode_image(np.zeros((1, 224, 224, 3), "float32")).shape
        (1, 512)
    """

    def __init__(self, config: CLIPConfig | dict, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, CLIPConfig) else CLIPConfig.from_dict(config)
        self.seed = seed
        cfg = self.config
        policy = self.dtype_policy
        self.visual = tower_class(cfg.vision_cfg)(cfg.vision_cfg, cfg.embed_dim, cfg.quick_gelu,
                                                  child_seed(seed, "visual"), name="visual", dtype=policy)
        self.text = tower_class(cfg.text_cfg)(cfg.text_cfg, cfg.embed_dim, cfg.quick_gelu, child_seed(seed, "text"),
                                              name="text", dtype=policy)
        self.logit_bias = None
        self.output_dict = False  # open_clip's flag: model(image, text) returns a dict instead of a tuple
        self.precision = "fp32"  # create_model's name; "tf32" lets float32 products use TF32 on GPUs
        self.pretrained_cfg: dict = {}
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        self.visual.build()
        self.text.build()
        self.logit_scale = self.add_weight(
            name="logit_scale", shape=(), initializer=constant_init(self.config.init_logit_scale))
        if self.config.init_logit_bias is not None:
            self.logit_bias = self.add_weight(
                name="logit_bias", shape=(), initializer=constant_init(self.config.init_logit_bias))
        self.built = True

    # ----------------------------------------------------------------- graph-level (differentiable)
    def call(self, image=None, text=None, training: bool | None = None):
        """``{"images", "texts"}`` (either may be missing) -> dict of normalised features and logit scale/bias;
        ``(image, text)`` -> open_clip's tuple, or its dict with ``output_dict`` (see the class)."""
        inputs, open_clip_form = _inputs(image, text)
        training = _training(self, training, open_clip_form)
        with model_device_scope(self):
            out = self._features(inputs, training)
        out["logit_scale"] = ops.exp(self.logit_scale)
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias
        if not open_clip_form:
            return out
        out = {"image_features": out.get("image_features"), "text_features": out.get("text_features"), **out}
        return out if self.output_dict else tuple(out.values())  # open_clip's order, None for a missing side

    def _features(self, inputs: dict, training: bool) -> dict:
        out = {}
        if inputs.get("images") is not None:
            images = ops.convert_to_tensor(self._images(inputs["images"]))
            out["image_features"] = l2_normalize(self.visual(images, training=training))
        if inputs.get("texts") is not None:
            out["text_features"] = l2_normalize(self.text(ops.convert_to_tensor(inputs["texts"]), training=training))
        return out

    def _images(self, images):
        return to_channels_last(images, self.image_size)

    # ----------------------------------------------------------------- inference entry points
    def encode_image(self, images, normalize: bool = False):
        """Image features ``[batch, embed_dim]`` (compiled on JAX/TF, no autograd on torch).

        For gradients, call ``model.visual(images, training=True)`` or the model itself.
        """
        with model_device_scope(self):
            return compiled(self.visual, normalize, self.precision)(self._images(images))

    def encode_text(self, texts, normalize: bool = False):
        """Text features ``[batch, embed_dim]`` from token ids.

        Padding after the last end-of-text token is cut off before the tower runs when it cannot change
        the result (causal mask with argmax/eos pooling; Hugging Face towers, whose padding is masked), in steps
        of 8 positions.
        """
        if _is_concrete(texts):
            tokens = np.asarray(ops.convert_to_numpy(texts))
            if tokens.ndim != 2:
                raise ValueError(f"texts must be token ids of shape [batch, length], got shape {tokens.shape}")
            if not np.issubdtype(tokens.dtype, np.integer):
                raise TypeError(f"texts must be integer token ids, got dtype {tokens.dtype}")
            vocab = getattr(self.text, "vocab_size", None) or self.config.text_cfg.vocab_size
            if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab):
                raise ValueError(f"token ids must lie in [0, {vocab}), got "
                                 f"[{tokens.min()}, {tokens.max()}]")
            tokens = tokens[:, :self.text.needed_length(tokens)]
            texts = tokens.astype("int32")
        with model_device_scope(self):
            return compiled(self.text, normalize, self.precision)(texts)

    def get_logits(self, images, texts):
        """``(logits_per_image [n_img, n_txt], logits_per_text [n_txt, n_img])`` as open_clip computes them."""
        image_features = self.encode_image(images, normalize=True)
        text_features = self.encode_text(texts, normalize=True)
        logits = ops.exp(self.logit_scale) * ops.matmul(image_features, ops.transpose(text_features))
        if self.logit_bias is not None:
            logits = logits + self.logit_bias
        return logits, ops.transpose(logits)

    # ----------------------------------------------------------------- training options (open_clip's names)
    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the image tower but its last ``unlocked_groups`` groups (LiT); see ``visual.lock``.

        Example:
            >>> model.lock_image_tower(unlocked_groups=1)  # only [proj] stays trainable  # doctest: +SKIP
        """
        self.visual.lock(unlocked_groups, freeze_bn_stats=freeze_bn_stats)

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        """Freeze the text tower but its last ``unlocked_layers`` groups; see ``text.lock``.

        Example:
            >>> model.lock_text_tower(unlocked_layers=2)  # doctest: +SKIP
        """
        self.text.lock(unlocked_layers, freeze_layer_norm=freeze_layer_norm)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Rematerialise every transformer block of both towers in the backward pass (same values, less memory).

        Set it before the first training step: compiled steps keep the setting they were traced with.

        Example:
            >>> model.set_grad_checkpointing()  # doctest: +SKIP
        """
        self.visual.set_grad_checkpointing(enable)
        self.text.set_grad_checkpointing(enable)

    def get_config(self):
        out = {"config": self.config.to_dict(), "name": self.name, "seed": self.seed,
               "dtype": keras.dtype_policies.serialize(self.dtype_policy)}
        preprocess = getattr(self, "preprocess_cfg", None)  # set by create_model: a .keras file keeps it
        if preprocess is not None:
            out["preprocess_cfg"] = preprocess.to_dict()
        return out

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        preprocess = config.pop("preprocess_cfg", None)
        model = cls(**config)
        if preprocess is not None:
            from .preprocess import PreprocessConfig
            model.preprocess_cfg = PreprocessConfig.from_dict(preprocess)
        return model

    @property
    def context_length(self) -> int:
        return self.config.text_cfg.context_length

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.config.vision_cfg.image_size
        return tuple(size) if isinstance(size, (list, tuple)) else (size, size)


def _inputs(image, text) -> tuple[dict, bool]:
    """``({"images", "texts"}, whether open_clip's ``forward(image, text)`` form was used)``."""
    if isinstance(image, dict):
        return image, False
    if isinstance(image, (tuple, list)) and text is None and len(image) == 2:
        return dict(zip(("images", "texts"), image)), False
    return {"images": image, "texts": text}, True


def _training(model, training, open_clip_form: bool) -> bool:
    """Keras' ``training`` when given; else, for open_clip's call form on torch, the module's ``train()`` /
    ``eval()`` state (as open_clip); else inference."""
    if training is not None:
        return bool(training)
    if open_clip_form and keras.backend.backend() == "torch":
        return bool(model.training)
    return False


def _is_concrete(x) -> bool:
    if isinstance(x, (np.ndarray, list, tuple)):
        return True
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        return not isinstance(x, jax.core.Tracer)
    if backend == "tensorflow":
        import tensorflow as tf
        return tf.executing_eagerly()
    return True
