"""anyclip's one rule for array types and image layouts, shared by preprocessing, tokenizers and models.

* ``preprocess`` / the tokenizer, with ``output="auto"`` (the default): on the torch backend torch tensors in
  open_clip's layout (images ``float32 [3, H, W]``, token ids ``int64 [batch, length]``), so OpenCLIP code such
  as ``preprocess(image).unsqueeze(0)`` runs; on JAX and TensorFlow numpy arrays (images ``float32 [H, W, 3]``,
  ids ``int32``), which every backend takes as input. ``output="numpy"`` / ``"torch"`` ask for one explicitly.
* Models take images channels-last ``[N, H, W, 3]`` or channels-first ``[N, 3, H, W]``: the axis that holds 3
  channels decides; when both do, the one whose other two sizes equal the model's image size; else a
  ``ValueError`` naming the shape. Outputs are the backend's arrays (torch tensors on the model's device).

Example:
    >>> import numpy as np
    >>> image_output(np.zeros((4, 5, 3), "float32"), "numpy").shape
    (4, 5, 3)
    >>> channels_last_axis((2, 3, 224, 224), (224, 224))
    False
"""

from __future__ import annotations

import os
import sys

import numpy as np

OUTPUTS = ("auto", "numpy", "torch")


def keras_backend() -> str | None:
    """The Keras backend in use (or chosen for the next Keras import); ``None`` when nothing chose one yet."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND") or None


def resolve_output(output: str, argument: str = "output") -> str:
    """``"numpy"`` or ``"torch"`` for an ``output`` option (``"auto"``: torch on the torch backend)."""
    if output not in OUTPUTS:
        raise ValueError(f"{argument} must be one of {OUTPUTS}, got {output!r}")
    if output == "auto":
        return "torch" if keras_backend() == "torch" else "numpy"
    return output


def image_output(pixels: np.ndarray, output: str = "auto"):
    """Channels-last float32 pixels (``[H, W, 3]`` or ``[N, H, W, 3]``) as ``output`` asks (see the module)."""
    if resolve_output(output) == "numpy":
        return pixels
    import torch
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(pixels, -1, -3)))


def token_output(ids: np.ndarray, output: str = "auto"):
    """Token ids as ``output`` asks: the numpy array as it is, or an int64 torch tensor (open_clip's LongTensor)."""
    if resolve_output(output) == "numpy":
        return ids
    import torch
    return torch.from_numpy(ids.astype(np.int64))


def to_channels_last(images, image_size):
    """A batch of images as ``[N, H, W, 3]`` (see :func:`channels_last_axis`), in its own array type.

    Example:
        >>> to_channels_last(np.zeros((2, 3, 32, 32), "float32"), (32, 32)).shape
        (2, 32, 32, 3)
    """
    if isinstance(images, (list, tuple)):
        images = np.asarray(images)
    if channels_last_axis(images.shape, image_size):
        return images
    if isinstance(images, np.ndarray):
        return images.transpose(0, 2, 3, 1)
    if type(images).__module__.startswith("torch"):
        return images.permute(0, 2, 3, 1)
    from keras import ops
    return ops.transpose(images, (0, 2, 3, 1))


def channels_last_axis(shape, image_size) -> bool:
    """Whether a batch of ``shape`` is channels-last (``True``) or channels-first (``False``); see the module.

    Example:
        >>> channels_last_axis((1, 32, 32, 3), (32, 32)), channels_last_axis((1, 3, 32, 32), (32, 32))
        (True, False)
    """
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(f"images must be a batch [N, H, W, 3] or [N, 3, H, W], got shape {shape}")
    last, first = shape[3] == 3, shape[1] == 3
    if last and first:
        size = tuple(image_size)
        last, first = shape[1:3] == size, shape[2:4] == size
    if last != first:
        return last
    raise ValueError(f"cannot tell the channel axis of images of shape {shape} (model image size "
                     f"{tuple(image_size)}): pass [N, H, W, 3] or [N, 3, H, W] with 3 channels on one axis")
