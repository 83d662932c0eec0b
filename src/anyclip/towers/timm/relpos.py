"""timm's relative-position ViT bias (``vision_transformer_relpos``): a log-coordinate MLP per block.

Each block of ``vit_relpos_*`` has a ``RelPosMlp`` (timm's "cr" mode): the relative offsets ``(dy, dx)`` of
the patch grid, mapped to ``sign(d) * log(1 + |d|)``, go through ``fc1`` -> ReLU -> ``fc2`` (one output per
head); the result, looked up for every (query, key) pair of patches, is added to the attention logits.
Prefix tokens (the class token) get a zero bias. The offsets depend only on the grid, so another image size
needs no weight change.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ...layers.dense import LINEAR_TABLE, dense

# timm keys (relative to ``blocks.{i}.attn.rel_pos.``) -> attribute path on a RelPosMlp, transform.
REL_POS_TABLE = (
    ("mlp.fc1.", "fc1", LINEAR_TABLE),
    ("mlp.fc2.", "fc2", LINEAR_TABLE),
)


def relative_log_coords(grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(table, index)``: the log offsets ``[(2H-1)(2W-1), 2]`` and, for each (query, key) patch pair in
    row-major order, the table row of their offset ``[H*W, H*W]``.

    Example:
        >>> table, index = relative_log_coords((2, 3))
        >>> table.shape, index.shape, int(index[0, 0]) == (table.shape[0] - 1) // 2
        ((15, 2), (6, 6), True)
    """
    h, w = grid
    dy, dx = np.meshgrid(np.arange(-(h - 1), h, dtype=np.float32), np.arange(-(w - 1), w, dtype=np.float32),
                         indexing="ij")
    table = np.stack([dy, dx], axis=-1).reshape(-1, 2)
    table = (np.sign(table) * np.log1p(np.abs(table))).astype(np.float32)
    ys, xs = np.divmod(np.arange(h * w), w)
    index = (ys[:, None] - ys[None, :] + h - 1) * (2 * w - 1) + (xs[:, None] - xs[None, :] + w - 1)
    return table, index.astype(np.int32)


@keras.saving.register_keras_serializable(package="anyclip")
class RelPosMlp(keras.layers.Layer):
    """The attention bias of one relpos block, ``[1, heads, prefix + H*W, prefix + H*W]`` (no input: see
    :meth:`attention_bias`).

    Example:
        >>> RelPosMlp((3, 3), heads=2, hidden=8, prefix_tokens=1).attention_bias().shape
        (1, 2, 10, 10)
    """

    def __init__(self, grid: tuple[int, int], heads: int, hidden: int, prefix_tokens: int = 0,
                 seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.grid, self.heads, self.hidden, self.prefix_tokens, self.seed = tuple(grid), heads, hidden, \
            prefix_tokens, seed
        self.fc1 = dense(hidden, 2 ** -0.5, seed, "fc1", self.dtype_policy)
        self.fc2 = dense(heads, hidden ** -0.5, seed, "fc2", self.dtype_policy)
        self.table, self.index = relative_log_coords(self.grid)

    def build(self, input_shape=None):
        self.fc1.build((None, 2))
        self.fc2.build((None, self.hidden))
        self.built = True

    def attention_bias(self):
        """The bias, computed from the weights (the table and the lookup are constants of the grid)."""
        if not self.built:
            self.build()
        n = self.grid[0] * self.grid[1]
        table = ops.convert_to_tensor(self.table, dtype=self.compute_dtype)
        per_offset = self.fc2(ops.relu(self.fc1(table)))  # [offsets, heads]
        bias = ops.take(per_offset, ops.convert_to_tensor(self.index.reshape(-1)), axis=0)
        bias = ops.transpose(ops.reshape(bias, (n, n, self.heads)), (2, 0, 1))
        if self.prefix_tokens:
            p = self.prefix_tokens
            bias = ops.pad(bias, ((0, 0), (p, 0), (p, 0)))
        return bias[None]

    def get_config(self):
        return {**super().get_config(), "grid": self.grid, "heads": self.heads, "hidden": self.hidden,
                "prefix_tokens": self.prefix_tokens, "seed": self.seed}
