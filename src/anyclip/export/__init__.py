"""Writing models out for other tools: an open_clip checkpoint folder or a Keras file (``anyclip convert``),
and deployable encoders (``anyclip export``: ONNX, int8) verified in their runtime.

Example:
    >>> from anyclip.export import convert, export_model
    >>> convert("ViT-B-32", "laion2b_s34b_b79k", "vit-b-32/", to="open_clip")  # doctest: +SKIP
    >>> export_model("ViT-B-32", "openai", "vit-b-32-onnx/", format="onnx")  # doctest: +SKIP
"""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".convert": ("FORMATS", "convert", "save_keras"),
    ".deploy": ("export", "export_model"),
    ".onnx_model": ("OnnxCLIP",),
    ".quantization": ("quantize", "quantize_onnx"),
    ".verify": ("ExportVerificationError",),
})
