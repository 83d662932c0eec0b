"""Writing models out for other tools: an open_clip checkpoint folder or a Keras file (``anyclip convert``).

Example:
    >>> from anyclip.export import convert
    >>> convert("ViT-B-32", "laion2b_s34b_b79k", "vit-b-32/", to="open_clip")  # doctest: +SKIP
"""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {".convert": ("FORMATS", "convert", "save_keras")})
