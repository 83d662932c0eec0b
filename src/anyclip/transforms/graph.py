"""Batched in-graph preprocessing in ``keras.ops``: uint8 ``[B, H, W, 3]`` -> normalised float32.

Runs on every backend and inside compiled code (``jax.jit``, ``tf.function``, ``tf.data.Dataset.map``
on the TensorFlow backend). All images of one call share a size, so the resize and crop geometry
is static. It follows the host path's geometry (same output sizes and crop offsets) but resamples
with ``keras.ops.image.resize`` (antialiased) in float without PIL's rounding to uint8 after the
resize, so it is close to, not equal to, the exact path: on photos the difference is about
0.5-2 % of the value range on average and up to a few tenths at sharp edges (measured values in
``tests/test_transforms.py``). Use the host path (:mod:`anyclip.transforms.host`) when exact
open_clip equality matters.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from .config import PreprocessConfig
from .host import _keep_ratio_size, _shortest_edge_size


def _target_geometry(h: int, w: int, cfg: PreprocessConfig):
    """(resize_hw, crop_or_pad) for an input of h x w, as the host path computes them."""
    th, tw = cfg.hw
    if cfg.resize_mode == "squash":
        return (th, tw), None
    if cfg.resize_mode == "longest":
        return _keep_ratio_size(h, w, (th, tw), True), "pad"
    if th == tw:
        return _shortest_edge_size(h, w, th), "crop"
    return _keep_ratio_size(h, w, (th, tw), False), "crop"


def preprocess_images(images, cfg: PreprocessConfig):
    """Resize, crop or pad, and normalise a batch (or one image) of uint8 / 0-255 float RGB pixels.

    Example:
        >>> import numpy as np
        >>> out = preprocess_images(np.zeros((2, 480, 640, 3), "uint8"), PreprocessConfig(size=224))
        >>> tuple(out.shape)
        (2, 224, 224, 3)
    """
    x = ops.convert_to_tensor(images)
    single = len(x.shape) == 3
    if single:
        x = x[None]
    if len(x.shape) != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be [batch, height, width, 3] (or [height, width, 3]), got {tuple(x.shape)}")
    h, w = x.shape[1], x.shape[2]
    if h is None or w is None:
        raise ValueError("preprocess_images needs static image sizes; batch images of one size together")
    x = ops.cast(x, "float32")
    (rh, rw), fit = _target_geometry(int(h), int(w), cfg)
    th, tw = cfg.hw
    if (rh, rw) != (h, w):
        x = ops.image.resize(x, (rh, rw), interpolation=cfg.interpolation, antialias=True,
                             data_format="channels_last")
        x = ops.clip(x, 0.0, 255.0)
    if fit == "crop" or (fit == "pad" and (rh > th or rw > tw)):
        top = int(round((max(rh, th) - th) / 2.0)) if rh >= th else 0
        left = int(round((max(rw, tw) - tw) / 2.0)) if rw >= tw else 0
        x = x[:, top:top + min(th, rh), left:left + min(tw, rw), :]
        rh, rw = min(th, rh), min(tw, rw)
    if (rh, rw) != (th, tw):  # pad (longest mode) with the fill colour
        ph, pw = th - rh, tw - rw
        x = ops.pad(x, [[0, 0], [ph // 2, (ph + 1) // 2], [pw // 2, (pw + 1) // 2], [0, 0]],
                    constant_values=float(cfg.fill_color))
    mean = ops.convert_to_tensor([m * 255.0 for m in cfg.mean], dtype="float32")
    std = ops.convert_to_tensor([s * 255.0 for s in cfg.std], dtype="float32")
    x = (x - mean) / std
    return x[0] if single else x


@keras.saving.register_keras_serializable(package="anyclip")
class ImagePreprocessor(keras.layers.Layer):
    """A Keras layer applying :func:`preprocess_images` (put it in front of a model or in tf.data).

    Example:
        >>> layer = ImagePreprocessor(PreprocessConfig(size=224))
        >>> tuple(layer(np.zeros((1, 300, 400, 3), "uint8")).shape)  # doctest: +SKIP
        (1, 224, 224, 3)
    """

    def __init__(self, cfg: PreprocessConfig | dict, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg if isinstance(cfg, PreprocessConfig) else PreprocessConfig.from_dict(cfg)

    def call(self, images):
        return preprocess_images(images, self.cfg)

    def get_config(self):
        return {**super().get_config(), "cfg": dataclasses.asdict(self.cfg)}
