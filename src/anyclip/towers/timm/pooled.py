"""Configs and shared pieces of the timm towers with a global average-pool head: ConvNeXt and Swin.

open_clip wraps ``timm.create_model(timm_model_name)`` as ``visual.trunk``, keeps timm's own average pool
(``timm_pool`` ``""`` or ``"avg"``) and adds ``visual.head``: a ``proj`` Linear (``timm_proj: "linear"``)
or a two-layer ``mlp`` (``"mlp"``, hidden width ``2 * embed_dim``, GELU). The architectures of the timm
names anyclip builds are written here (:data:`CONVNEXTS`, :data:`SWINS`), checked against timm in
``tests/test_convnext.py`` and ``tests/test_swin.py``.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from ...layers.dense import LINEAR_TABLE, dense
from ...layers.drop import dropout
from ...layers.init import seed_generator
from ...layers.mlp import activation
from ..config import _pair, _pos_int, _require, is_positive_int
from .config import TimmTowerConfig


@dataclasses.dataclass(frozen=True)
class ConvNeXtArch:
    """A timm ``ConvNeXt`` (patch stem, LayerNorms, layer scale, 7x7 depthwise blocks, norm-after-pool head)."""

    depths: tuple[int, ...]
    dims: tuple[int, ...]
    norm_eps: float = 1e-6
    patch_size: int = 4
    kernel_size: int = 7
    mlp_ratio: int = 4
    drop_path: float = 0.0  # timm's default stochastic depth (used when timm_drop_path is null)

    @property
    def width(self) -> int:
        return self.dims[-1]

    @property
    def stride(self) -> int:
        return self.patch_size * 2 ** (len(self.dims) - 1)


@dataclasses.dataclass(frozen=True)
class SwinArch:
    """A timm ``SwinTransformer`` (v1): patch embedding, shifted-window stages joined by patch merging."""

    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    embed_dim: int
    window_size: int
    image_size: int  # the size timm builds it for: its attention masks and window sizes depend on it
    patch_size: int = 4
    mlp_ratio: int = 4
    norm_eps: float = 1e-5  # torch.nn.LayerNorm
    drop_path: float = 0.1  # timm's default stochastic depth for Swin (used when timm_drop_path is null)

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2 ** i for i in range(len(self.depths)))

    @property
    def width(self) -> int:
        return self.dims[-1]


_TINY, _BASE = (96, 192, 384, 768), (3, 3, 27, 3)
CONVNEXTS: dict[str, ConvNeXtArch] = {
    "convnext_tiny": ConvNeXtArch((3, 3, 9, 3), _TINY),
    "convnext_small": ConvNeXtArch(_BASE, _TINY),
    "convnext_base": ConvNeXtArch(_BASE, (128, 256, 512, 1024)),
    "convnext_large": ConvNeXtArch(_BASE, (192, 384, 768, 1536)),
    "convnext_xlarge": ConvNeXtArch(_BASE, (256, 512, 1024, 2048)),
    "convnext_xxlarge": ConvNeXtArch((3, 4, 30, 3), (384, 768, 1536, 3072), norm_eps=1e-5),
}
SWINS: dict[str, SwinArch] = {
    "swin_base_patch4_window7_224": SwinArch((2, 2, 18, 2), (4, 8, 16, 32), 128, 7, 224),
}


def drop_path_rates(rate: float | None, depths) -> list[list[float]]:
    """timm's stochastic-depth schedule: rates rising linearly from 0 to ``rate`` over all blocks, per stage.

    Example:
        >>> drop_path_rates(0.2, [1, 2])
        [[0.0], [0.1, 0.2]]
    """
    rates = np.linspace(0.0, float(rate or 0.0), sum(depths)).tolist()
    out, start = [], 0
    for depth in depths:
        out.append(rates[start:start + depth])
        start += depth
    return out


@dataclasses.dataclass(frozen=True)
class _PooledConfig(TimmTowerConfig):
    """``vision_cfg`` of a timm tower with an average-pool head (open_clip ``CLIPVisionCfg`` timm fields)."""

    TIMM_NAMES = {}  # the timm names the family builds (see anyclip.towers.registry), set by each family
    ARCH_KWARGS = frozenset({"depths"})
    DROPOUT = DROP_PATH = True
    PATCH_TOKENS = False

    def check_family(self):
        w = "vision_cfg"
        _require(self.timm_pool in ("", "avg"), f"{w}.timm_pool",
                 f"only '' (timm's default, an average pool) or 'avg' is supported, got {self.timm_pool!r}")
        _require(self.timm_proj in ("linear", "mlp", "none"), f"{w}.timm_proj",
                 f"must be 'linear', 'mlp' or 'none', got {self.timm_proj!r}")
        _require(self.timm_proj != "none" or self.timm_pool == "avg", f"{w}.timm_proj",
                 "'none' with timm_pool '' gives open_clip an unpooled feature map; use timm_pool 'avg'")
        self._check_per_stage("depths")

    def _check_per_stage(self, key: str):
        """``timm_model_kwargs[key]``, if given, must hold one positive integer per stage."""
        stages = len(self.TIMM_NAMES[self.timm_model_name].depths)
        values = (self.timm_model_kwargs or {}).get(key, [1] * stages)
        _require(isinstance(values, (list, tuple)) and len(values) == stages and all(map(is_positive_int, values)),
                 f"vision_cfg.timm_model_kwargs.{key}", f"must be {stages} positive integers, got {values!r}")

    @property
    def drop_path_rates(self) -> list[list[float]]:
        """Each block's stochastic-depth rate, stage by stage (``timm_drop_path``, or timm's default if null)."""
        arch = self.arch
        return drop_path_rates(arch.drop_path if self.timm_drop_path is None else self.timm_drop_path, arch.depths)


@dataclasses.dataclass(frozen=True)
class TimmConvNeXtConfig(_PooledConfig):
    """``vision_cfg`` of a timm ConvNeXt tower (open_clip's ``convnext_*`` configs).

    ConvNeXt is fully convolutional: ``image_size`` sets the preprocessing only, any image of at least
    32 pixels a side runs (as in timm). ``timm_model_kwargs`` (anyclip only): ``{"depths": [3, 3, 9, 3]}``
    overrides the blocks per stage.

    Example:
        >>> TimmConvNeXtConfig("convnext_base", 256, timm_pool="", timm_drop_path=0.1).arch.dims
        (128, 256, 512, 1024)
    """

    TIMM_NAMES = CONVNEXTS

    def __post_init__(self):
        super().__post_init__()
        size, stride = _pair(self.image_size, "vision_cfg.image_size"), self.arch.stride
        _require(min(size) >= stride, "vision_cfg.image_size",
                 f"{self.image_size!r} is smaller than {self.timm_model_name}'s total stride {stride}")


@dataclasses.dataclass(frozen=True)
class TimmSwinConfig(_PooledConfig):
    """``vision_cfg`` of a timm Swin Transformer tower (open_clip's ``swin_base_patch4_window7_224``).

    open_clip builds the timm model at its own image size (its windows and attention masks depend on it),
    so ``image_size`` must be that size. ``timm_model_kwargs`` (anyclip only, timm's names): ``depths`` as for
    ConvNeXt, ``embed_dim`` (the first stage's width; each later stage doubles it) and ``num_heads`` per stage.

    Example:
        >>> TimmSwinConfig("swin_base_patch4_window7_224", timm_pool="").arch.dims
        (128, 256, 512, 1024)
    """

    TIMM_NAMES = SWINS
    ARCH_KWARGS = frozenset({"depths", "embed_dim", "num_heads"})

    def check_family(self):
        super().check_family()
        w, kwargs = "vision_cfg.timm_model_kwargs", self.timm_model_kwargs or {}
        if "embed_dim" in kwargs:
            _pos_int(kwargs["embed_dim"], f"{w}.embed_dim")
        self._check_per_stage("num_heads")
        arch = self.arch
        _require(all(dim % h == 0 for dim, h in zip(arch.dims, arch.num_heads)), f"{w}.num_heads",
                 f"each stage's width {arch.dims} must divide by its heads {arch.num_heads}")

    def __post_init__(self):
        super().__post_init__()
        native = self.TIMM_NAMES[self.timm_model_name].image_size
        _require(_pair(self.image_size, "vision_cfg.image_size") == (native, native), "vision_cfg.image_size",
                 f"{self.timm_model_name} runs at {native} px only (open_clip builds timm's model at that size), "
                 f"got {self.image_size!r}")


# open_clip's ``visual.head`` (relative to ``head.``) -> attribute on a ProjHead; rows it lacks are skipped.
PROJ_HEAD_TABLE = (
    ("proj.", "proj", LINEAR_TABLE),
    ("mlp.fc1.", "fc1", LINEAR_TABLE),
    ("mlp.fc2.", "fc2", LINEAR_TABLE),
)


@keras.saving.register_keras_serializable(package="anyclip")
class ProjHead(keras.layers.Layer):
    """open_clip ``TimmModel.head``: dropout + ``proj`` Linear, or ``mlp`` (fc1, GELU, dropout, fc2), or nothing.

    Example:
        >>> ProjHead("mlp", 8, 4, bias=False)(keras.ops.ones((2, 8))).shape
        (2, 4)
    """

    def __init__(self, kind: str, width: int, embed_dim: int, bias: bool = False, drop: float = 0.0,
                 seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.width, self.embed_dim, self.bias, self.drop = kind, width, embed_dim, bias, drop
        self.seed, policy = seed, self.dtype_policy
        self.proj = self.fc1 = self.fc2 = None
        if kind == "linear":
            self.proj = dense(embed_dim, width ** -0.5, seed, "proj", policy, bias=bias)
        elif kind == "mlp":
            self.fc1 = dense(2 * embed_dim, width ** -0.5, seed, "fc1", policy)
            self.fc2 = dense(embed_dim, (2 * embed_dim) ** -0.5, seed, "fc2", policy, bias=bias)
        self.seed_generator = seed_generator(seed) if drop and kind != "none" else None

    def build(self, input_shape=None):
        for layer, fan_in in ((self.proj, self.width), (self.fc1, self.width), (self.fc2, 2 * self.embed_dim)):
            if layer is not None:
                layer.build((None, fan_in))
        self.built = True

    def call(self, x, training: bool = False):
        rate = self.drop if training else 0.0
        if self.proj is not None:
            return self.proj(dropout(x, rate, self.seed_generator))
        if self.fc1 is not None:
            return self.fc2(dropout(activation(False)(self.fc1(x)), rate, self.seed_generator))
        return x

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "width": self.width, "embed_dim": self.embed_dim,
                "bias": self.bias, "drop": self.drop, "seed": self.seed}
