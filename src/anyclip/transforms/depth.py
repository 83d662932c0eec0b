"""High-bit-depth images to 8 bits by rescaling, not clipping (unlike PIL's ``convert("RGB")`` and open_clip).

* ``I;16``, ``I;16B``, ``I;16L``, ``I;16N`` (16-bit grey) and ``I`` (32-bit integer, as 16-bit TIFFs often
  open): the 16-bit range 0..65535 maps to 0..255 (``round(v / 257)``); an ``I`` image with values outside
  it is min-max scaled, with a warning.
* ``F`` (32-bit float): values in [0, 1] are multiplied by 255, values in [0, 255] kept, values in [0, 65535]
  divided by 257; any other range is min-max scaled, with a warning (once per run) naming the file. NaN counts
  as 0.
* Anything else (8-bit modes; 16-bit RGB PNGs, which PIL already opens as 8-bit ``RGB``) is left as it is.

:func:`~anyclip.transforms.host.load_image` applies :func:`to_8bit` to every file it opens, so a mid-grey
16-bit PNG stays mid-grey instead of turning white. A PIL image passed to a transform directly is taken as it
is (clipped, as open_clip does); call :func:`to_8bit` on it first.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> image = to_8bit(Image.fromarray(np.full((2, 2), 32896, np.uint16)))
    >>> image.mode, image.getpixel((0, 0))
    ('L', 128)
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_warned = False


def _warn_once(name: str, lo: float, hi: float, mode: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"{name}: a mode {mode} image with values {lo:g}..{hi:g} (not within 0..65535) is min-max "
                      f"scaled to 0..255; later such images are scaled the same way without a warning", stacklevel=3)


def _min_max(values: np.ndarray, name: str, mode: str) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    _warn_once(name, lo, hi, mode)
    if hi <= lo:
        return np.full(values.shape, np.clip(lo, 0, 255))
    return (values - lo) * (255.0 / (hi - lo))


def to_8bit(image: Image.Image, name: str = "<image>") -> Image.Image:
    """``image`` as an 8-bit ``L`` image if it is a 16-bit, 32-bit integer or float one (see the module); else itself.

    ``name`` (a file name) is what the warning for an unusual value range names.

    Example:
        >>> to_8bit(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))).getpixel((1, 0))
        128
    """
    mode = image.mode
    if mode not in SIXTEEN_BIT and mode not in ("I", "F"):
        return image
    values = np.asarray(image)
    if mode == "F":
        values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low < 0 or high > 65535:
            scaled = _min_max(values, name, mode)
        else:  # the smallest of the usual ranges that holds the values: 0..1, 0..255 or 0..65535
            scaled = values * 255.0 if high <= 1 else values if high <= 255 else values / 257.0
    else:
        values = values.astype(np.float64)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            scaled = _min_max(values, name, mode)
        else:
            scaled = values / 257.0
    out = Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))
    out.info = dict(image.info)
    return out


__all__ = ["SIXTEEN_BIT", "to_8bit"]
