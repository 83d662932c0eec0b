"""open_clip_jax's model and pretrained names (github.com/BobMcDear/open-clip-jax) and their anyclip counterparts."""

from __future__ import annotations

__all__ = ["anyclip_name", "check_model", "list_models", "list_pretrained", "list_pretrained_by_model"]

# open_clip_jax model name -> anyclip architecture.
_MODELS = {
    "vit-small-patch16": "ViT-S-16", "vit-small-patch32": "ViT-S-32", "vit-base-patch16": "ViT-B-16",
    "vit-base-patch32": "ViT-B-32", "vit-large-patch14": "ViT-L-14", "vit-large-patch16": "ViT-L-16",
    "vit-huge-patch14": "ViT-H-14", "vit-huge-patch16": "ViT-H-16", "vit-eps-patch32": "vit-eps-patch32",
}
# open_clip_jax's 2-layer test model (model_configs/vit-eps-patch32.json), which open_clip does not ship.
_EPS_CONFIG = {"embed_dim": 64, "vision_cfg": {"layers": 2, "width": 64, "head_width": 16, "patch_size": 32,
                                               "image_size": 224},
               "text_cfg": {"layers": 2, "width": 64, "heads": 4, "context_length": 77, "vocab_size": 49408}}
# open_clip_jax's pretrained names per model, in its order (the last is its "most performant" default).
_PRETRAINED = {
    "vit-base-patch32": ("laion400m-e31", "laion400m-e32", "laion2b-e16", "laion2b-s34b-b79k",
                         "datacomp-m-s128m-b4k", "datacomp-xl-s13b-b90k"),
    "vit-base-patch16": ("laion400m-e31", "laion400m-e32", "laion2b-s34b-b88k", "dfn2b", "datacomp-xl-s13b-b90k"),
    "vit-large-patch14": ("laion400m-e31", "laion400m-e32", "laion2b-s32b-b82k"),
    "vit-huge-patch14": ("laion2b-s32b-b79k",),
}
_UNSUPPORTED = ("convnext-base", "convnext-base-w", "convnext-large-d")


def list_models() -> tuple[str, ...]:
    """open_clip_jax's model names that anyclip serves.

    Example:
        >>> "vit-base-patch32" in list_models()
        True
    """
    return tuple(sorted(_MODELS))


def list_pretrained() -> tuple[tuple[str, str], ...]:
    """open_clip_jax's ``(model, pretrained)`` pairs that anyclip serves.

    Example:
        >>> ("vit-base-patch32", "laion2b-s34b-b79k") in list_pretrained()
        True
    """
    return tuple((model, tag) for model, tags in _PRETRAINED.items() for tag in tags)


def list_pretrained_by_model(model_name: str) -> tuple[str, ...]:
    """The pretrained names of one open_clip_jax model.

    Example:
        >>> list_pretrained_by_model("vit-huge-patch14")
        ('laion2b-s32b-b79k',)
    """
    check_model(model_name)
    if model_name not in _PRETRAINED:
        raise ValueError(f"{model_name} does not have pre-trained parameters.")
    return _PRETRAINED[model_name]


def check_model(model_name: str) -> None:
    if model_name in _UNSUPPORTED:
        raise ValueError(f"{model_name}: open_clip_jax's ConvNeXt models have no anyclip counterpart yet; "
                         f"available: {list_models()}")
    if model_name not in _MODELS:
        raise ValueError(f"Model {model_name} not recognized. Available models are {list(list_models())}")


def anyclip_name(model_name: str, pretrained: str | bool = True) -> tuple[str, str | None]:
    """The anyclip ``(model, pretrained)`` for open_clip_jax's names (``pretrained=False``: no weights).

    ``True`` picks open_clip_jax's default (its last listed tag); a name it does not list is passed on to anyclip
    as is (an anyclip tag or a checkpoint path).

    Example:
        >>> anyclip_name("vit-base-patch32", "laion2b-s34b-b79k")
        ('ViT-B-32', 'laion2b_s34b_b79k')
        >>> anyclip_name("vit-base-patch16")
        ('ViT-B-16', 'datacomp_xl_s13b_b90k')
    """
    check_model(model_name)
    if pretrained is False or pretrained is None:
        return _MODELS[model_name], None
    if pretrained is True:
        pretrained = list_pretrained_by_model(model_name)[-1]
    if pretrained in _PRETRAINED.get(model_name, ()):
        pretrained = pretrained.replace("-", "_")
    if model_name == "vit-base-patch32" and pretrained in ("laion400m_e31", "laion400m_e32"):
        return "ViT-B-32-quickgelu", pretrained  # open_clip's vit_b_32-quickgelu-laion400m_* were trained so
    return _MODELS[model_name], pretrained
