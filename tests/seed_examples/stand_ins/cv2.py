"""A stand-in for the three OpenCV names tfclip's README examples use, for test machines without OpenCV.

The seed example runner puts this folder on ``PYTHONPATH`` only when ``cv2`` is not installed. ``imread`` gives
what OpenCV's gives for an RGB file (uint8 ``[H, W, 3]`` in BGR order, ``None`` for an unreadable file);
``cvtColor(..., COLOR_BGR2RGB)`` reverses the channels.

Example:
    >>> cvtColor(imread("elephant.jpg"), COLOR_BGR2RGB).shape  # doctest: +SKIP
    (200, 300, 3)
"""

import numpy as np
from PIL import Image

COLOR_BGR2RGB = 4  # OpenCV's value


def imread(filename):
    try:
        with Image.open(filename) as image:
            return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
    except OSError:
        return None


def cvtColor(src, code):  # noqa: N802 (OpenCV's name)
    if code != COLOR_BGR2RGB:
        raise ValueError(f"this stand-in only converts COLOR_BGR2RGB ({COLOR_BGR2RGB}), got code={code}")
    return np.ascontiguousarray(src[..., ::-1])
