"""2D rotary position embeddings of timm's EVA-family towers (timm ``RotaryEmbeddingCat``, ``rope_type='cat'``).

Each attention head of ``head_dim`` channels is rotated by angles ``coordinate * band`` with ``head_dim // 4``
bands ``temperature ** (-k / (head_dim // 4))``: the first half of the channels by the row (``ij``) or column
(``xy``) coordinate, the second half by the other one, channel pairs interleaved (``[x0, x1]`` rotated
together). Coordinates are patch indices plus ``offset``, rescaled to a reference grid (EVA's fine-tuning scheme:
``index / grid * ref_grid``). The tables are constants of the grid, computed once on the host.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from keras import ops


def rope_tables(grid: tuple[int, int], head_dim: int, ref_grid: tuple[int, int] | None = None, offset: float = 0.0,
                xy: bool = False, temperature: float = 10000.0, prefix_tokens: int = 0):
    """``(sin, cos)`` tables ``[prefix_tokens + gh * gw, head_dim]`` (float32) for a ``(gh, gw)`` patch grid.

    The ``prefix_tokens`` first rows (class token) are the identity rotation (sin 0, cos 1): timm leaves prefix
    tokens unrotated. Patches are in row-major order, as the patch embedding flattens them.

    Example:
        >>> sin, cos = rope_tables((2, 3), head_dim=8, prefix_tokens=1)
        >>> sin.shape, float(cos[0].min())
        ((7, 8), 1.0)
    """
    if head_dim % 4:
        raise ValueError(f"2D rotary embeddings need a head size divisible by 4, got {head_dim}")
    bands_n = head_dim // 4
    bands = (1.0 / (np.float32(temperature) ** (np.arange(bands_n, dtype=np.float32) / np.float32(bands_n))))
    shape, ref = list(grid), list(ref_grid) if ref_grid is not None else None
    if xy:  # timm swaps the axes for 'xy' indexing: the first coordinate channel is the column
        shape, ref = shape[::-1], (ref[::-1] if ref is not None else None)
    axes = [np.arange(s, dtype=np.float32) + np.float32(offset) for s in shape]
    if ref is not None:
        axes = [a / np.float32(s) * np.float32(r) for a, s, r in zip(axes, shape, ref)]
    coords = np.stack(np.meshgrid(*axes, indexing="xy" if xy else "ij"), axis=-1)  # [gh, gw, 2]
    angles = coords[..., None] * bands.astype(np.float32)  # [gh, gw, 2, bands]
    angles = angles.reshape(grid[0] * grid[1], 2 * bands_n)
    sin = np.repeat(np.sin(angles), 2, axis=-1).astype(np.float32)
    cos = np.repeat(np.cos(angles), 2, axis=-1).astype(np.float32)
    if prefix_tokens:
        sin = np.concatenate([np.zeros((prefix_tokens, head_dim), np.float32), sin])
        cos = np.concatenate([np.ones((prefix_tokens, head_dim), np.float32), cos])
    return sin, cos


@dataclasses.dataclass(frozen=True, eq=False)
class RopeTables:
    """Host (numpy, float32) rotary tables ``[tokens, head_dim]``: ``cos`` and ``sin_signed``, the sine with the
    sign of the interleaved rotation folded in (``-`` on even channels). A plain object, so that Keras passes it
    to layers untouched (no autocast of the float32 tables to a mixed-precision compute dtype).

    Example:
        >>> RopeTables.build((2, 2), head_dim=4).cos.shape
        (4, 4)
    """

    sin_signed: np.ndarray
    cos: np.ndarray

    @classmethod
    def build(cls, grid, head_dim, **kwargs) -> RopeTables:
        """The tables of :func:`rope_tables` (same arguments)."""
        sin, cos = rope_tables(grid, head_dim, **kwargs)
        sign = np.tile(np.array([-1.0, 1.0], np.float32), head_dim // 2)
        return cls((sin * sign).astype(np.float32), cos)


def apply_rope(x, tables: RopeTables):
    """Rotate ``x`` ``[batch, tokens, heads, head_dim]`` by ``tables``; the result has x's dtype.

    ``x * cos + swap_pairs(x) * sin_signed`` equals timm's ``x * cos + rot(x) * sin`` with
    ``rot([x0, x1, ...]) = [-x1, x0, ...]``; computed in the tables' float32, then cast back.

    Example:
        >>> apply_rope(ops.ones((1, 1, 1, 4)), RopeTables.build((1, 1), head_dim=4)).shape
        (1, 1, 1, 4)
    """
    shape = ops.shape(x)
    pairs = ops.reshape(x, (*shape[:-1], shape[-1] // 2, 2))
    swapped = ops.reshape(ops.flip(pairs, axis=-1), shape)
    cos = ops.convert_to_tensor(tables.cos)[:, None, :]
    sin_signed = ops.convert_to_tensor(tables.sin_signed)[:, None, :]
    out = ops.cast(x, cos.dtype) * cos + ops.cast(swapped, cos.dtype) * sin_signed
    return ops.cast(out, x.dtype)
