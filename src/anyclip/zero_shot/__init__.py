"""Zero-shot classification: class-embedding classifiers from prompts, and probabilities."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".classifier": ("build_zero_shot_classifier", "default_activation", "features_probs", "probabilities",
                    "zero_shot_probs"),
    ".metadata": ("IMAGENET_CLASSNAMES", "OPENAI_IMAGENET_TEMPLATES", "SIMPLE_IMAGENET_TEMPLATES"),
})
