"""The interface every tower implements: :class:`Tower` (image, text, later audio), and open_clip's lock rule.

A tower is a Keras layer built from its config dataclass (``CONFIG``; a dict is validated through it) that maps
one modality to features ``[batch, embed_dim]``. It declares how open_clip names its weights (``WEIGHT_TABLE``,
expanded by :meth:`Tower.weight_entries`), switches gradient checkpointing on its blocks, and freezes all but its
last N layer groups (``lock``, open_clip's LiT semantics).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import keras
import numpy as np


def _resolve(obj, path: str):
    for part in path.split("."):
        if obj is None:
            return None
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part, None)
    return obj


def table_entries(layer, table, prefix: str) -> dict[str, tuple[object, str | None]]:
    """Expand a weight-name table into ``{open_clip key: (variable, transform)}``.

    Rows are ``(open_clip key, attribute path, transform)``; rows whose attribute is ``None`` on this layer are
    skipped. A row whose transform is itself a tuple of rows is a sub-table: its keys are appended to the row's key
    for the sub-layer at the row's attribute, or for each sub-layer of that list when the key holds ``{i}``.
    Transforms (``None``, ``"linear"``, ``"conv"``) are applied by :mod:`anyclip.weights.mapping`.

    Example:
        >>> sorted(table_entries(model.visual, model.visual.WEIGHT_TABLE, "visual."))[:1]  # doctest: +SKIP
        ['visual.class_embedding']
    """
    entries = {}
    for key, attr, transform in table:
        if isinstance(transform, tuple):  # a sub-table for the sub-layer at attr (for each one, if key has {i})
            layers = _resolve(layer, attr)
            for i, sub in enumerate(layers if "{i}" in key else [layers]):
                if sub is not None:
                    entries.update(table_entries(sub, transform, prefix + key.format(i=i)))
            continue
        var = _resolve(layer, attr)
        if var is not None:
            entries[prefix + key] = (var, transform)
    return entries


class Tower(keras.layers.Layer):
    """Base of every tower: config in, ``call(inputs, training) -> [batch, embed_dim]`` features out.

    Subclasses set ``CONFIG`` (the config dataclass), ``WEIGHT_TABLE`` (open_clip's weight names) and implement
    ``build``, ``call`` and ``lock``. Sub-layers with a ``grad_checkpointing`` attribute (block stacks) follow
    :meth:`set_grad_checkpointing`. ``quick_gelu`` is the model-wide activation switch (towers without GELU, or
    with their own, accept and ignore it); ``seed=None`` initialises to constants, for weights loaded right after.

    Example:
        >>> from anyclip.towers.openai.vision_transformer import VisionTransformer
        >>> tower = VisionTransformer({"layers": 1, "width": 64, "patch_size": 16, "image_size": 32}, embed_dim=8)
        >>> tower.output_width, tower.compute_output_shape((2, 32, 32, 3))
        (8, (2, 8))
    """

    CONFIG: ClassVar[type] = object  # the family's config dataclass
    WEIGHT_TABLE: ClassVar[tuple] = ()  # (open_clip key, attribute path, transform) rows; see table_entries
    MODALITY: ClassVar[str] = "image"  # "image" or "text": what ``call`` takes
    CUSTOM_TEXT: ClassVar[bool] = False  # a text tower whose keys open_clip always nests under "text."

    def __init__(self, config, embed_dim: int, quick_gelu: bool = False, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, self.CONFIG) else self.config_from_dict(config)
        self.embed_dim, self.quick_gelu, self.seed = embed_dim, quick_gelu, seed
        self.grad_checkpointing = False

    @classmethod
    def config_from_dict(cls, values: dict):
        """The config from a plain dict (``get_config``'s), validated by the config class."""
        return cls.CONFIG(**values)

    @property
    def output_width(self) -> int:
        """Width of the features ``call`` returns (the model's ``embed_dim``)."""
        return self.embed_dim

    def weight_entries(self, prefix: str = "") -> dict[str, tuple[object, str | None]]:
        """``{open_clip key: (variable, transform)}`` of this tower's weights, keys under ``prefix``."""
        return table_entries(self, self.WEIGHT_TABLE, prefix)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (``keras.remat``; same values and gradients).

        Set it before the first training step: compiled steps keep the setting they were traced with.
        """
        self.grad_checkpointing = bool(enable)
        for layer in self._flatten_layers(include_self=False):
            if hasattr(layer, "grad_checkpointing"):
                layer.grad_checkpointing = bool(enable)

    def lock(self, unlocked_groups: int = 0, *args, **kwargs) -> None:
        """Freeze the tower except its last ``unlocked_groups`` layer groups (open_clip's ``lock``)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement lock()")

    def needed_length(self, tokens: np.ndarray) -> int:
        """How many leading positions of the token ids ``tokens [batch, length]`` decide a text tower's output.

        Callers may cut the ids to this length before ``call``; the result is the same. The base keeps them all;
        text towers whose trailing padding cannot change the result (causal mask, masked padding) return less.
        """
        return np.shape(tokens)[1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_width)

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config), "embed_dim": self.embed_dim,
                "quick_gelu": self.quick_gelu, "seed": self.seed}


def lock_groups(layer, groups, unlocked: int, what: str) -> None:
    """Freeze every weight of ``layer`` except those in the last ``unlocked`` of ``groups`` (lists of weights).

    open_clip's tower ``lock`` semantics: ``unlocked=0`` freezes the whole tower, a count larger than the
    number of groups leaves it all trainable. Frozen weights drop out of ``trainable_variables``.

    Example:
        >>> lock_groups(tower, [[tower.proj]], 1, "image tower")  # doctest: +SKIP
    """
    if isinstance(unlocked, bool) or not isinstance(unlocked, (int, np.integer)) or unlocked < 0:
        raise ValueError(f"{what}: the number of unlocked groups must be an integer >= 0, got {unlocked!r}")
    layer.trainable = True
    for var in layer.weights:
        var.trainable = False
    for group in (groups[-int(unlocked):] if unlocked else []):
        for var in group:
            var.trainable = True


def round_up_length(last: int, full: int, multiple: int = 8) -> int:
    """Positions ``0..last`` rounded up to a ``multiple`` of positions, at most ``full`` (the cut of padded ids).

    Rounding keeps the number of distinct shapes, so of compiled programs, small.

    Example:
        >>> round_up_length(last=2, full=77), round_up_length(last=75, full=77)
        (8, 77)
    """
    return min(full, -(-(last + 1) // multiple) * multiple)
