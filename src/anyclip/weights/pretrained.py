"""The pretrained registry: every (model, tag) of open_clip 3.3.0 for the models anyclip ships, plus
anyclip's own weights.

Entries live as data in ``pretrained.json`` beside this module: the Hugging Face hub location
(``org/repo/`` or ``org/repo/file``) or, for weights shipped inside the package, a ``file`` relative to
this folder with its ``sha256``; the original URL, the preprocessing the weights were trained with and
whether they need QuickGELU.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
from importlib import resources

from ..models.preprocess import PreprocessConfig


class UnknownPretrainedError(ValueError):
    """A (model, tag) pair that is not in the registry.

    Example:
        >>> try:
        ...     get_pretrained_cfg("ViT-B-32", "no_such_tag")
        ... except UnknownPretrainedError as e:
        ...     print("unknown")
        unknown
    """


@dataclasses.dataclass(frozen=True)
class PretrainedEntry:
    """One pretrained weight: where it lives and how its images must be preprocessed.

    Example:
        >>> get_pretrained_cfg("ViT-B-32", "openai").preprocess.interpolation
        'bicubic'
    """

    model: str
    tag: str
    hf_hub: str
    url: str
    quick_gelu: bool
    preprocess: PreprocessConfig
    file: str = ""
    sha256: str = ""

    @property
    def packaged_path(self):
        """Path of weights shipped inside the package (``None`` for hub weights)."""
        return resources.files("anyclip.weights").joinpath(self.file) if self.file else None

    @property
    def repo_id(self) -> str:
        """``org/repo`` part of :attr:`hf_hub`."""
        return "/".join(self.hf_hub.split("/")[:2])

    @property
    def filename(self) -> str | None:
        """Explicit file in the repo, or None for open_clip's default names."""
        rest = self.hf_hub.split("/", 2)[2:] or [""]
        return rest[0] or None


@functools.lru_cache(maxsize=1)
def _registry() -> dict[str, dict[str, dict]]:
    text = resources.files("anyclip.weights").joinpath("pretrained.json").read_text(encoding="utf-8")
    data = json.loads(text)
    data.pop("_comment", None)
    return data


def clean_tag(tag: str) -> str:
    """open_clip's tag normalisation: lower case, ``-`` -> ``_``.

    Example:
        >>> clean_tag("LAION2B-s34B-b79K")
        'laion2b_s34b_b79k'
    """
    return tag.lower().replace("-", "_")


def list_pretrained(as_str: bool = False) -> list:
    """All ``(model, tag)`` pairs (or ``"model:tag"`` strings).

    Example:
        >>> ("ViT-B-32", "laion2b_s34b_b79k") in list_pretrained()
        True
    """
    pairs = [(m, t) for m, tags in _registry().items() for t in tags]
    return [f"{m}:{t}" for m, t in pairs] if as_str else pairs


def list_pretrained_tags_by_model(model: str) -> list[str]:
    """Tags available for one model (empty for an unknown name).

    Example:
        >>> "openai" in list_pretrained_tags_by_model("ViT-B-16")
        True
    """
    return list(_registry().get(model, {}))


def list_pretrained_models_by_tag(tag: str) -> list[str]:
    """Models that have weights under ``tag`` (normalised as :func:`clean_tag`).

    Example:
        >>> "RN50" in list_pretrained_models_by_tag("OpenAI")
        True
    """
    tag = clean_tag(tag)
    return [m for m, tags in _registry().items() if tag in tags]


def is_pretrained_cfg(model: str, tag: str) -> bool:
    """Whether ``(model, tag)`` is a registered pretrained weight.

    Example:
        >>> is_pretrained_cfg("ViT-B-32", "openai"), is_pretrained_cfg("ViT-B-32", "nope")
        (True, False)
    """
    return clean_tag(tag) in _registry().get(model, {})


def get_pretrained_cfg(model: str, tag: str) -> PretrainedEntry:
    """The registry entry for ``(model, tag)``; unknown pairs raise with the closest names.

    Example:
        >>> get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k").repo_id
        'laion/CLIP-ViT-B-32-laion2B-s34B-b79K'
    """
    registry = _registry()
    if model not in registry:
        close = difflib.get_close_matches(model, list(registry), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownPretrainedError(f"no pretrained weights registered for model {model!r}.{hint}")
    tags = registry[model]
    key = clean_tag(tag)
    if key not in tags:
        close = difflib.get_close_matches(key, list(tags), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownPretrainedError(
            f"unknown pretrained tag {tag!r} for {model}.{hint} Available: {', '.join(tags)}")
    raw = tags[key]
    return PretrainedEntry(
        model=model, tag=key, hf_hub=raw.get("hf_hub", ""), url=raw.get("url", ""),
        quick_gelu=bool(raw.get("quick_gelu", False)), preprocess=PreprocessConfig.from_dict(raw),
        file=raw.get("file", ""), sha256=raw.get("sha256", ""))
