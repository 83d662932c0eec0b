"""Resizing learned position embeddings at load time, as open_clip does (no torch needed).

Image grids use bicubic interpolation with antialiasing (``F.interpolate(mode="bicubic",
antialias=True, align_corners=False)``); text positions use linear interpolation without antialias.
Both are separable resampling matrices computed here in float64.
"""

from __future__ import annotations

import math

import numpy as np


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _aa_matrix(n_in: int, n_out: int, kernel, support: float) -> np.ndarray:
    """Antialiased resampling weights (out, in), PIL/torch ``_upsample_*_aa`` semantics."""
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    radius = support * stretch
    mat = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - radius + 0.5), 0)
        hi = min(int(center + radius + 0.5), n_in)
        taps = np.arange(lo, hi)
        w = kernel((taps - center + 0.5) / stretch)
        total = w.sum()
        mat[i, lo:hi] = w / total if total != 0 else w
    return mat


def _linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Plain linear interpolation weights (out, in), ``align_corners=False``, no antialias."""
    scale = n_in / n_out
    mat = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max(scale * (i + 0.5) - 0.5, 0.0)
        lo = min(int(math.floor(src)), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        frac = src - lo
        mat[i, lo] += 1 - frac
        mat[i, hi] += frac
    return mat


def resize_image_pos_embed(pos_embed: np.ndarray, grid: tuple[int, int], extra_tokens: int = 1) -> np.ndarray:
    """Resize ``[extra + gh*gw, width]`` position embeddings to a new ``(gh, gw)`` grid.

    Example:
        >>> resize_image_pos_embed(np.zeros((50, 8), "float32"), (5, 5)).shape
        (26, 8)
    """
    tokens, grid_emb = pos_embed[:extra_tokens], pos_embed[extra_tokens:]
    old = math.isqrt(grid_emb.shape[0])
    if old * old != grid_emb.shape[0]:
        raise ValueError(f"cannot resize position embedding of {grid_emb.shape[0]} patches: not a square grid")
    img = grid_emb.reshape(old, old, -1).astype(np.float64)
    rows = _aa_matrix(old, grid[0], lambda x: _cubic(x, -0.5), 2.0)
    cols = _aa_matrix(old, grid[1], lambda x: _cubic(x, -0.5), 2.0)
    out = np.einsum("ij,jkc,lk->ilc", rows, img, cols).reshape(grid[0] * grid[1], -1)
    return np.concatenate([tokens, out.astype(pos_embed.dtype)], axis=0)


def resize_text_pos_embed(pos_embed: np.ndarray, length: int) -> np.ndarray:
    """Resize ``[num_pos, width]`` text position embeddings to ``length`` positions (linear).

    Example:
        >>> resize_text_pos_embed(np.zeros((77, 8), "float32"), 32).shape
        (32, 8)
    """
    mat = _linear_matrix(pos_embed.shape[0], length)
    return (mat @ pos_embed.astype(np.float64)).astype(pos_embed.dtype)
