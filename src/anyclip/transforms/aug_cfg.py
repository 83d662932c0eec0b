"""open_clip's ``AugmentationCfg``: the training-augmentation options of ``create_model_and_transforms(aug_cfg=)``."""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple, Union

from .augment import AugmentConfig

__all__ = ["AugmentationCfg", "augment_config"]


@dataclasses.dataclass
class AugmentationCfg:
    """open_clip's augmentation options, same fields and defaults.

    anyclip's PIL pipeline does RandomResizedCrop (``scale``, ``ratio``), colour jitter and grayscale; timm's
    pipeline (``use_timm=True``) and random erasing (``re_prob``, ``re_count``) are not available and raise
    when set.

    Example:
        >>> AugmentationCfg(scale=(0.5, 1.0)).to_augment_config().scale
        (0.5, 1.0)
    """

    scale: Tuple[float, float] = (0.9, 1.0)
    ratio: Optional[Tuple[float, float]] = None
    color_jitter: Optional[Union[float, Tuple[float, float, float], Tuple[float, float, float, float]]] = None
    re_prob: Optional[float] = None
    re_count: Optional[int] = None
    use_timm: bool = False
    color_jitter_prob: float = None
    gray_scale_prob: float = None

    def to_augment_config(self) -> AugmentConfig:
        """The equivalent :class:`anyclip.transforms.augment.AugmentConfig` (raises on what it cannot do)."""
        for name in ("use_timm", "re_prob", "re_count"):
            if getattr(self, name):
                raise ValueError(f"aug_cfg.{name}={getattr(self, name)!r}: timm's augmentation pipeline and random "
                                 f"erasing are not implemented in anyclip; leave {name} unset")
        jitter = self.color_jitter
        if isinstance(jitter, (int, float)):
            jitter = (float(jitter),) * 3 + (0.0,)
        elif jitter is not None and len(jitter) == 3:
            jitter = tuple(jitter) + (0.0,)
        values = {"scale": tuple(self.scale), "color_jitter": None if jitter is None else tuple(jitter),
                  "color_jitter_prob": self.color_jitter_prob or 0.0, "gray_scale_prob": self.gray_scale_prob or 0.0}
        if self.ratio is not None:
            values["ratio"] = tuple(self.ratio)
        return AugmentConfig(**values)


def augment_config(aug_cfg) -> Optional[AugmentConfig]:
    """``aug_cfg`` as given to open_clip (a dict, an :class:`AugmentationCfg` or None) as an ``AugmentConfig``.

    Example:
        >>> augment_config({"scale": (0.5, 1.0)}).scale
        (0.5, 1.0)
    """
    if aug_cfg is None or isinstance(aug_cfg, AugmentConfig):
        return aug_cfg
    if isinstance(aug_cfg, dict):
        fields = {f.name for f in dataclasses.fields(AugmentationCfg)}
        unknown = sorted(set(aug_cfg) - fields)
        if unknown:
            raise ValueError(f"aug_cfg: unknown key(s) {unknown}; known: {sorted(fields)}")
        aug_cfg = AugmentationCfg(**aug_cfg)
    if not isinstance(aug_cfg, AugmentationCfg):
        raise TypeError(f"aug_cfg must be a dict or AugmentationCfg, got {type(aug_cfg).__name__}")
    return aug_cfg.to_augment_config()
