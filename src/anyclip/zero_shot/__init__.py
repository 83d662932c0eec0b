"""Zero-shot classification: class-embedding classifiers from prompts, and probabilities."""

from .classifier import build_zero_shot_classifier, default_activation, features_probs, probabilities, zero_shot_probs
from .metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

__all__ = ["default_activation", "features_probs", "probabilities", "IMAGENET_CLASSNAMES", "OPENAI_IMAGENET_TEMPLATES", "SIMPLE_IMAGENET_TEMPLATES",
           "build_zero_shot_classifier", "zero_shot_probs"]
