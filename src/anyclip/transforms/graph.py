"""Batched in-graph preprocessing in ``keras.ops``: uint8 ``[B, H, W, 3]`` -> normalised float32.

:func:`preprocess_images` and the :class:`ImagePreprocessor` layer run on the jax, torch and
tensorflow backends, eagerly or compiled (``jax.jit``, ``tf.function``, ``torch.compile``) and, on the
TensorFlow backend, inside ``tf.data.Dataset.map``. All images of one call share one static size, so
the resize / crop / pad geometry (the same as the host path's, see
:func:`anyclip.transforms.host.resize_geometry`) is fixed when the graph is built.

Two resamplers:

``resampler="pil"`` (default) reproduces PIL's 8-bit resampler: the same filter taps and weights
(computed on the host in float64, rounded to PIL's 22-bit fixed point), two passes (horizontal, then
vertical) with PIL's round-half-up and clip to 0-255 after each. The weights are split into 8-bit digits
so every product and partial sum is an integer below 2**24: float32 arithmetic is then exact, even on
accelerators that multiply in TF32 or bfloat16, and the digits are recombined with exact carries. Each
pass is a banded matmul (``keras.ops.take`` windows + ``keras.ops.einsum``). The 0-255 levels are then
normalised through a 256-entry table holding the host path's float32 values (computing them in-graph
lets XLA turn the divisions into reciprocal multiplies, 1 ulp off). Result: for uint8 input the output
is **bit-identical** to the host path, hence to open_clip.

``resampler="keras"`` uses ``keras.ops.image.resize(antialias=True)`` once per axis, rounding and
clipping to 0-255 after each pass as PIL does. Close, not equal; faster on some backends.

Measured against the exact host path (:func:`anyclip.transforms.image_transform`, which equals
open_clip) on scikit-image's photos -- astronaut 512x512, coffee 400x600, chelsea 300x451, rocket
427x640, camera (as RGB), plus coffee shrunk to 100x150 (an upscaling case), 199x301 and 3x5 -- for
sizes 224, 336 and (256, 192), all three resize modes, bicubic and bilinear, fill 0 and 128
(72 cases per interpolation; normalised units, where one 8-bit level is 1 / 255 / std ~ 0.0150):

==========  =================  ================================================================
backend     ``"pil"``          ``"keras"``: max |diff|, mean |diff|, share of values off
==========  =================  ================================================================
jax (jit)   0 (bit-identical)  0.0150 (one level); bicubic 2.2e-6, 0.015 %; bilinear 2.3e-5, 0.16 %
torch       0 (bit-identical)  0.0150 (one level); bicubic 3.8e-6, 0.026 %; bilinear 2.2e-5, 0.15 %
tensorflow  0 (bit-identical)  0.0150 (one level); bicubic 2.8e-6, 0.019 %; bilinear 2.4e-5, 0.17 %
==========  =================  ================================================================

(CPU, keras 3.15, jax 0.10, torch 2.14, tensorflow 2.21. For comparison, one ``image.resize`` call
for both axes without the per-pass rounding is off by up to 0.075, mean 0.002; without ``antialias``
by up to 1.6.) ``tests/test_transforms.py`` checks ``"pil"`` to 1e-6 and ``"keras"`` to one level on
every backend.

Speed: on CPU both resamplers run about as fast as each other and slower than PIL itself (see
``bench/bench_preprocess.py``); the in-graph path is for accelerators, for fusing preprocessing into a
compiled model, and for ``tf.data``.

Limits: sizes must be static (decode in ``tf.data`` to a known size, or group images by size); inputs
are RGB (3 channels) -- use the host path for other modes. Float inputs are read as 0-255 values;
non-integer values work but have no PIL counterpart, and float input that needs no resize is
normalised arithmetically (jit may then differ by 1 ulp). Large downscales (beyond ~55x bicubic) use
narrower digits automatically and stay exact. Only the TensorFlow backend can run inside ``tf.data``.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops

from ..models.preprocess import PreprocessConfig
from .host import crop_offsets, resize_geometry

RESAMPLERS = ("pil", "keras")
_PRECISION_BITS = 22  # PIL's fixed point for 8-bit images: 32 - 8 - 2
_BLOCK = 16  # outputs per band of the banded matmul


def _bicubic(x: np.ndarray) -> np.ndarray:  # PIL's cubic convolution, a = -0.5, support 2
    a = -0.5
    x = np.abs(x)
    inner = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    outer = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))


def _bilinear(x: np.ndarray) -> np.ndarray:  # triangle, support 1
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


_FILTERS = {"bicubic": (_bicubic, 2.0), "bilinear": (_bilinear, 1.0)}


@functools.lru_cache(maxsize=128)
def pil_resample_weights(in_size: int, out_size: int, interpolation: str) -> np.ndarray:
    """PIL's 8-bit resampling weights as integers (units of 2**-22), shape ``[in_size, out_size]``.

    Output pixel ``j`` of one pass is ``clip(floor((sum_i x[i] * w[i, j] + 2**21) / 2**22), 0, 255)``.
    Computed in float64 in PIL's order of operations (support scaled by the downscale factor, kernel
    renormalised over the in-range taps, rounded half away from zero).
    """
    filt, filter_support = _FILTERS[interpolation]
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = filter_support * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)[None, :]
    k = filt(((taps + xmin[:, None]).astype(np.float64) - center[:, None] + 0.5) * (1.0 / filterscale))
    k = np.where(taps < xmax[:, None], k, 0.0)
    total = np.zeros(out_size)
    for t in range(ksize):  # sequential sum, as PIL's loop
        total = total + k[:, t]
    k = np.where(total[:, None] != 0.0, k / np.where(total == 0.0, 1.0, total)[:, None], k)
    fixed = np.where(k < 0, np.trunc(-0.5 + k * (1 << _PRECISION_BITS)), np.trunc(0.5 + k * (1 << _PRECISION_BITS)))
    weights = np.zeros((in_size, out_size), np.int64)
    rows = taps + xmin[:, None]
    valid = taps < xmax[:, None]
    weights[rows[valid], np.nonzero(valid)[0]] = fixed[valid].astype(np.int64)
    return weights


@functools.lru_cache(maxsize=128)
def _banded_digits(in_size: int, out_size: int, interpolation: str):
    """Window indices and digit weights for the banded, exact float32 resampling of one axis."""
    weights = pil_resample_weights(in_size, out_size, interpolation)
    nonzero = weights != 0
    first = np.where(nonzero.any(0), nonzero.argmax(0), 0)
    last = np.where(nonzero.any(0), in_size - nonzero[::-1].argmax(0), 1)
    n_blocks = -(-out_size // _BLOCK)
    starts, window = [], 1
    for b in range(n_blocks):
        lo, hi = b * _BLOCK, min((b + 1) * _BLOCK, out_size)
        starts.append(int(first[lo:hi].min()))
        window = max(window, int(last[lo:hi].max()) - starts[-1])
    window = min(window, in_size)
    starts = [min(s, in_size - window) for s in starts]
    banded = np.zeros((n_blocks, window, _BLOCK), np.int64)
    for b, s in enumerate(starts):
        lo, hi = b * _BLOCK, min((b + 1) * _BLOCK, out_size)
        banded[b, :, : hi - lo] = weights[s:s + window, lo:hi]
    # Digit width: every partial sum (255 * digit * taps, plus the 2**21 rounding term) must stay < 2**24.
    taps = int(nonzero.sum(0).max())
    bits = next((s for s in (8, 6, 4, 2, 1) if 255 * ((1 << s) - 1) * taps + (1 << 21) < (1 << 24)), 1)
    n_low = -(-16 // bits)  # low digits cover >= 16 bits; the signed top digit holds the rest (|top| <= 2**7)
    top_shift = bits * n_low
    digits = [(banded >> (bits * j)) & ((1 << bits) - 1) for j in range(n_low)] + [banded >> top_shift]
    index = (np.asarray(starts)[:, None] + np.arange(window)[None, :]).reshape(-1).astype(np.int32)
    return index, np.stack(digits).astype(np.float32), bits, top_shift


def _pil_resize_axis(x, axis: int, out_size: int, interpolation: str):
    """One PIL pass along ``axis`` (1: height, 2: width) of a float32 ``[B, H, W, C]`` batch."""
    index, digits, bits, top_shift = _banded_digits(int(x.shape[axis]), out_size, interpolation)
    n_digits, n_blocks, window, block = digits.shape
    windows = ops.take(x, ops.convert_to_tensor(index), axis=axis)
    digits = ops.convert_to_tensor(digits)
    if axis == 2:
        h, c = x.shape[1], x.shape[3]
        windows = ops.reshape(windows, (-1, h, n_blocks, window, c))
        sums = ops.einsum("bhiwc,diwk->dbhikc", windows, digits)
        sums = ops.reshape(sums, (n_digits, -1, h, n_blocks * block, c))[:, :, :, :out_size]
    else:
        w, c = x.shape[2], x.shape[3]
        windows = ops.reshape(windows, (-1, n_blocks, window, w, c))
        sums = ops.einsum("biwxc,diwk->dbikxc", windows, digits)
        sums = ops.reshape(sums, (n_digits, -1, n_blocks * block, w, c))[:, :, :out_size]
    # floor((sum_j S_j * 2**(bits*j) + 2**21) / 2**22) with exact float32 carries, then PIL's clip8
    base = float(1 << bits)
    total = sums[0] + float(1 << (_PRECISION_BITS - 1))
    for j in range(1, n_digits):
        total = sums[j] + ops.floor(total / base)
    return ops.clip(ops.floor(total / float(1 << (_PRECISION_BITS - top_shift))), 0.0, 255.0)


def _keras_resize_axis(x, axis: int, out_size: int, interpolation: str):
    size = (out_size, x.shape[2]) if axis == 1 else (x.shape[1], out_size)
    x = ops.image.resize(x, size, interpolation=interpolation, antialias=True, data_format="channels_last")
    return ops.floor(ops.clip(x, 0.0, 255.0) + 0.5)  # PIL rounds half up and clips after each pass


def _static(dim):
    try:  # None (tf / keras) or a symbolic jax dimension: not static
        return None if dim is None else int(dim)
    except Exception:  # noqa: BLE001
        return None


def preprocess_images(images, cfg: PreprocessConfig, *, resampler: str = "pil"):
    """Resize, crop or pad, and normalise RGB images with ``keras.ops`` (in-graph, any backend).

    ``images``: ``[B, H, W, 3]`` or ``[H, W, 3]``, uint8 (or other ints, clipped to 0-255) or float
    0-255, one static size per call (``B`` may be dynamic). Returns float32 ``[B, *cfg.hw, 3]`` (or
    ``[*cfg.hw, 3]``). With ``resampler="pil"`` (default) the result is bit-identical to the host path
    (:func:`anyclip.transforms.image_transform`, i.e. open_clip) on the same RGB pixels; ``"keras"``
    resamples with ``keras.ops.image.resize`` and is within one 8-bit level (see the module docstring).
    Works under ``jax.jit`` / ``tf.function`` and, on the TensorFlow backend, in ``tf.data``.

    Example:
        >>> import numpy as np
        >>> out = preprocess_images(np.zeros((2, 480, 640, 3), "uint8"), PreprocessConfig(size=224))
        >>> tuple(out.shape)
        (2, 224, 224, 3)
    """
    if resampler not in RESAMPLERS:
        raise ValueError(f"resampler must be one of {RESAMPLERS}, got {resampler!r}")
    x = ops.convert_to_tensor(images)
    single = len(x.shape) == 3
    if single:
        x = ops.expand_dims(x, 0)
    if len(x.shape) != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be [batch, height, width, 3] (or [height, width, 3]), got {tuple(x.shape)}")
    h, w = _static(x.shape[1]), _static(x.shape[2])
    if h is None or w is None:
        raise ValueError(f"preprocess_images needs static image sizes, got {tuple(x.shape)}; batch images of one "
                         f"size together (or use the host path, anyclip.transforms.image_transform)")
    if h == 0 or w == 0:
        raise ValueError(f"images have no pixels (size {h}x{w})")
    integral = "int" in keras.backend.standardize_dtype(x.dtype)  # uint8 / int: whole 0-255 levels
    x = ops.cast(x, "float32")
    if integral:
        x = ops.clip(x, 0.0, 255.0)
    (rh, rw), interpolation = resize_geometry(h, w, cfg)
    resize_axis = _pil_resize_axis if resampler == "pil" else _keras_resize_axis
    if rw != w:  # PIL: horizontal pass first, then vertical; each pass rounds and clips to 0-255
        x = resize_axis(x, 2, rw, interpolation)
        integral = True
    if rh != h:
        x = resize_axis(x, 1, rh, interpolation)
        integral = True
    th, tw = cfg.hw
    if cfg.resize_mode != "squash":
        top, left, pad_top, pad_left = crop_offsets(rh, rw, (th, tw))
        x = x[:, top:top + min(th, rh), left:left + min(tw, rw), :]
        ch, cw = min(th, rh), min(tw, rw)
        if (ch, cw) != (th, tw):  # only the longest mode pads (with the fill colour)
            fill = float(cfg.fill_color) if cfg.resize_mode == "longest" else 0.0
            x = ops.pad(x, [[0, 0], [pad_top, th - ch - pad_top], [pad_left, tw - cw - pad_left], [0, 0]],
                        constant_values=fill)
    if integral:
        # Values are integers 0-255 here: look the host path's float32 results up. Computing them in-graph
        # would let XLA turn the divisions into reciprocal multiplies (1 ulp off under jax.jit).
        table = ops.convert_to_tensor(_normalisation_table(cfg.mean, cfg.std).reshape(-1))
        x = ops.take(table, ops.cast(x, "int32") * 3 + ops.convert_to_tensor(np.arange(3, dtype=np.int32)))
    else:
        mean = ops.convert_to_tensor(np.asarray(cfg.mean, np.float32))
        std = ops.convert_to_tensor(np.asarray(cfg.std, np.float32))
        x = (x / 255.0 - mean) / std  # the host path's (and torchvision's) float32 operations, in order
    return x[0] if single else x


@functools.lru_cache(maxsize=32)
def _normalisation_table(mean, std) -> np.ndarray:
    """``[256, 3]`` float32: ``(v / 255 - mean) / std`` exactly as the host path computes it."""
    levels = np.arange(256, dtype=np.float32)[:, None] / np.float32(255.0)
    return (levels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


@keras.saving.register_keras_serializable(package="anyclip")
class ImagePreprocessor(keras.layers.Layer):
    """A Keras layer running :func:`preprocess_images` (put it in front of a model, or in ``tf.data``).

    Serialisable: ``get_config`` stores the :class:`PreprocessConfig` as a dict and the resampler.

    Example:
        >>> layer = ImagePreprocessor(PreprocessConfig(size=224))
        >>> tuple(layer(np.zeros((1, 300, 400, 3), "uint8")).shape)  # doctest: +SKIP
        (1, 224, 224, 3)
    """

    def __init__(self, cfg: PreprocessConfig | dict | None = None, resampler: str = "pil", **kwargs):
        kwargs.setdefault("autocast", False)  # keep float32 under mixed precision: 0-255 needs it
        super().__init__(**kwargs)
        if cfg is None:
            cfg = PreprocessConfig()
        self.cfg = cfg if isinstance(cfg, PreprocessConfig) else PreprocessConfig.from_dict(cfg)
        if resampler not in RESAMPLERS:
            raise ValueError(f"resampler must be one of {RESAMPLERS}, got {resampler!r}")
        self.resampler = resampler
        self.built = True

    def call(self, images):
        return preprocess_images(images, self.cfg, resampler=self.resampler)

    def get_config(self):
        config = super().get_config()
        config.update({"cfg": self.cfg.to_dict(), "resampler": self.resampler})
        return config
