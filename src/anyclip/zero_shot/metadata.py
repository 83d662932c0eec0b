"""ImageNet-1k class names and prompt templates (OpenAI CLIP's zero-shot notebook), as data."""

import json
from importlib import resources

_DATA = json.loads(resources.files("anyclip.zero_shot").joinpath("imagenet.json").read_text(encoding="utf-8"))

IMAGENET_CLASSNAMES: tuple[str, ...] = tuple(_DATA["imagenet_classnames"])
"""The 1,000 ImageNet class names in class-index order."""

OPENAI_IMAGENET_TEMPLATES: tuple[str, ...] = tuple(_DATA["openai_imagenet_templates"])
"""OpenAI's 80 prompt templates, ``str.format`` style (``"a photo of a {}."``)."""

SIMPLE_IMAGENET_TEMPLATES: tuple[str, ...] = tuple(_DATA["simple_imagenet_templates"])
"""The 7-template subset OpenAI found to work as well as all 80."""
