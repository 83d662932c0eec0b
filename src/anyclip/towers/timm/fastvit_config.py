"""Config of the MobileCLIP image towers: timm's MCi FastViT models (``fastvit_mci0`` .. ``fastvit_mci4``).

open_clip hands ``vision_cfg.timm_model_name`` to ``timm.create_model``: the architecture comes from timm's
registry. anyclip writes the architectures of :data:`FASTVIT_ARCHS` here (checked against timm in
``tests/test_mobileclip.py``) and builds them natively in :mod:`anyclip.towers.timm.fastvit`.
"""

from __future__ import annotations

import dataclasses

from ..config import _pair, _require, is_positive_int
from .config import TimmTowerConfig


@dataclasses.dataclass(frozen=True)
class FastViTArch:
    """An MCi FastViT: a MobileOne stem, RepMixer stages then attention stages, a MobileOne final conv.

    Every stage but the first starts with a (reparameterisable large-kernel) patch embedding that halves
    the grid; attention stages start with a conditional positional encoding (7x7 depthwise conv).
    """

    layers: tuple[int, ...]  # blocks per stage
    embed_dims: tuple[int, ...]  # channels per stage
    mlp_ratio: float
    attention_stages: int  # the last n stages mix tokens by attention (the others by RepMixer)
    se_downsamples: tuple[bool, ...]  # a squeeze-excite in the stage's patch embedding
    layer_norm: bool  # attention blocks normalise with LayerNorm2d (eps 1e-5), otherwise BatchNorm
    stem_scale_branch: bool  # the stem's MobileOne blocks have their 1x1 scale branch

    @property
    def num_features(self) -> int:
        """Channels of the final conv (timm ``cls_ratio`` 2), the pooled width."""
        return 2 * self.embed_dims[-1]

    def token_mixer(self, stage: int) -> str:
        return "attention" if stage >= len(self.layers) - self.attention_stages else "repmixer"


def _mci(layers, dims, mlp_ratio, attention_stages, se, layer_norm, stem_scale):
    return FastViTArch(tuple(layers), tuple(dims), mlp_ratio, attention_stages, tuple(se), layer_norm, stem_scale)


_SE_S = (False, False, True, True)
# timm model name -> architecture (timm/models/fastvit.py: fastvit_mci*).
FASTVIT_ARCHS: dict[str, FastViTArch] = {
    "fastvit_mci0": _mci((2, 6, 10, 2), (64, 128, 256, 512), 3.0, 1, _SE_S, False, True),
    "fastvit_mci1": _mci((4, 12, 20, 4), (64, 128, 256, 512), 3.0, 1, _SE_S, False, True),
    "fastvit_mci2": _mci((4, 12, 24, 4), (80, 160, 320, 640), 3.0, 1, _SE_S, False, True),
    "fastvit_mci3": _mci((2, 12, 24, 4, 2), (96, 192, 384, 768, 1536), 4.0, 2, (False,) * 5, True, False),
    "fastvit_mci4": _mci((2, 12, 24, 4, 4), (128, 256, 512, 1024, 2048), 4.0, 2, (False,) * 5, True, False),
}

@dataclasses.dataclass(frozen=True)
class TimmFastViTConfig(TimmTowerConfig):
    """``vision_cfg`` of a MobileCLIP tower (open_clip ``CLIPVisionCfg`` timm fields, timm name ``fastvit_mci*``).

    ``timm_pool`` must be ``"avg"``. ``timm_proj`` null (MobileCLIP) keeps timm's classifier ``head.fc``
    (with bias) as the projection to ``embed_dim``; ``"none"`` returns the pooled features; ``"linear"``
    adds open_clip's ``head.proj`` after them. ``timm_model_kwargs`` (anyclip only, also passed to timm by
    the tests): ``{"layers": [...]}`` overrides the stage depths, ``{"inference_mode": true}`` builds the
    re-parameterised (single-branch) form that :func:`anyclip.towers.timm.fastvit.reparameterize` produces.

    Example:
        >>> cfg = TimmFastViTConfig("fastvit_mci0", 256, timm_proj=None)
        >>> cfg.arch.num_features, cfg.inference_mode
        (1024, False)
    """

    TIMM_NAMES = FASTVIT_ARCHS  # the timm names this family builds (see anyclip.towers.registry)
    # anyclip's ``timm_model_kwargs`` (as timm's ``create_model`` kwargs): stage depths, re-parameterised form.
    ARCH_KWARGS = frozenset({"layers", "inference_mode"})

    def check_family(self):
        w = "vision_cfg"
        _require(min(_pair(self.image_size, "")) >= 32, f"{w}.image_size",
                 f"{self.image_size!r} is too small for a FastViT (>= 32)")
        _require(self.timm_pool == "avg", f"{w}.timm_pool",
                 f"FastViT towers support only 'avg', got {self.timm_pool!r}")
        _require(self.timm_proj in (None, "", "none", "linear"), f"{w}.timm_proj",
                 f"must be null, 'none' or 'linear' for FastViT towers, got {self.timm_proj!r}")
        kwargs = self.timm_model_kwargs or {}
        n = len(FASTVIT_ARCHS[self.timm_model_name].layers)
        layers = kwargs.get("layers", [1] * n)
        _require(isinstance(layers, (list, tuple)) and len(layers) == n
                 and all(is_positive_int(d) for d in layers),
                 f"{w}.timm_model_kwargs.layers", f"must be {n} positive integers (one per stage), got {layers!r}")
        _require(isinstance(kwargs.get("inference_mode", False), bool), f"{w}.timm_model_kwargs.inference_mode",
                 "must be true/false")

    @property
    def arch(self) -> FastViTArch:
        """The architecture: timm's, with the ``timm_model_kwargs`` stage depths."""
        layers = (self.timm_model_kwargs or {}).get("layers")
        arch = FASTVIT_ARCHS[self.timm_model_name]
        return dataclasses.replace(arch, layers=tuple(layers)) if layers else arch

    @property
    def inference_mode(self) -> bool:
        """Whether the tower is built re-parameterised (``timm_model_kwargs.inference_mode``)."""
        return bool((self.timm_model_kwargs or {}).get("inference_mode", False))

    @property
    def head(self) -> str:
        """``"fc"`` (timm's classifier as projection), ``"none"`` or ``"linear"`` (open_clip's ``head.proj``)."""
        return "fc" if not self.timm_proj else self.timm_proj

    @property
    def unprojected_width(self) -> int | None:
        """The tower's output width when it has no projection (``timm_proj: "none"``), else None."""
        return self.arch.num_features if self.head == "none" else None

    @property
    def grid_size(self) -> tuple[int, int]:
        """The grid of the final feature map (total stride 4 * 2 per downsampling stage)."""
        stride = 2 ** (len(self.arch.layers) + 1)
        h, w = _pair(self.image_size, "")
        return -(-h // stride), -(-w // stride)
