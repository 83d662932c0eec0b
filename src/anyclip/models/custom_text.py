"""``CustomTextCLIP``: a CLIP whose text tower keeps its weights under ``text.`` (open_clip's class name)."""

from __future__ import annotations

import keras

from .clip import CLIP

__all__ = ["CustomTextCLIP", "is_custom_text"]


@keras.saving.register_keras_serializable(package="anyclip")
class CustomTextCLIP(CLIP):
    """What ``create_model`` returns where open_clip builds a ``CustomTextCLIP``: ``custom_text: true`` configs,
    ``force_custom_text=True`` and Hugging Face text towers. Same behaviour as :class:`CLIP`.

    Example:
        >>> isinstance(anyclip.create_model("ViT-B-32", force_custom_text=True), CustomTextCLIP)  # doctest: +SKIP
        True
    """


def is_custom_text(config) -> bool:
    """open_clip's rule: ``custom_text`` in the config, or a Hugging Face text tower."""
    return bool(config.custom_text or getattr(config.text_cfg, "hf_model_name", None))
