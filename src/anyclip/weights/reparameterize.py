"""Re-parameterise a MobileCLIP (FastViT) model into its fast inference form, through its open_clip state dict."""

from __future__ import annotations

import dataclasses

from ..towers.timm.fastvit_config import TimmFastViTConfig


def reparameterize(model):
    """A new CLIP model whose FastViT image tower is re-parameterised (timm's ``reparameterize_model``).

    Every MobileOne / large-kernel / RepMixer / positional-encoding block becomes one biased convolution; the
    outputs are the same (to float rounding), inference is faster. The new model's config carries
    ``timm_model_kwargs: {"inference_mode": true}``; its ``export_state_dict`` has timm's fused key names.
    Keras layers cannot drop variables in place, so this returns a new model (``model`` is unchanged).

    Example:
        >>> fast = reparameterize(anyclip.create_model("MobileCLIP2-S0", pretrained="dfndr2b"))  # doctest: +SKIP
    """
    from ..models.clip import CLIP
    from ..weights.mapping import export_state_dict, load_state_dict
    vision = model.config.vision_cfg
    if not isinstance(vision, TimmFastViTConfig):
        raise TypeError(f"reparameterize needs a FastViT (MobileCLIP) image tower, got {type(vision).__name__}")
    if vision.inference_mode:
        return model
    kwargs = {**(vision.timm_model_kwargs or {}), "inference_mode": True}
    config = dataclasses.replace(model.config, vision_cfg=dataclasses.replace(vision, timm_model_kwargs=kwargs))
    fast = CLIP(config, seed=None, dtype=model.dtype_policy)
    load_state_dict(fast, model.visual.reparameterized_state_dict(export_state_dict(model)), source="reparameterize",
                    copy=False)
    for attr in ("pretrained_cfg", "preprocess_cfg"):
        if hasattr(model, attr):
            setattr(fast, attr, getattr(model, attr))
    return fast
