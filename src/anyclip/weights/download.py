"""open_clip's pretrained-registry and download functions: ``get_pretrained_cfg`` (a dict),
``get_pretrained_url``, ``download_pretrained``, ``download_pretrained_from_url``, ``list_openai_models``.

Nothing here runs at import or touches the network unless called; hub downloads go through
:func:`anyclip.weights.hub.hf_download` (cache first, ``HF_HUB_OFFLINE`` honoured).
"""

from __future__ import annotations

import copy
import os
import urllib.request
import warnings
from pathlib import Path
from typing import Dict, List, Optional

from ..atomic import atomic_write
from . import hub
from .checkpoint import file_sha256
from .pretrained import _registry, clean_tag, list_pretrained_models_by_tag

__all__ = ["download_pretrained", "download_pretrained_from_url", "get_pretrained_cfg", "get_pretrained_url",
           "list_openai_models"]


def get_pretrained_cfg(model: str, tag: str):
    """open_clip's registry dict for ``(model, tag)`` (``url``, ``hf_hub``, ``mean``, ``std``, ...), ``{}`` if unknown.

    Example:
        >>> get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")["hf_hub"]
        'laion/CLIP-ViT-B-32-laion2B-s34B-b79K/'
        >>> get_pretrained_cfg("ViT-B-32", "nope")
        {}
    """
    raw = copy.deepcopy(_registry().get(model, {}).get(clean_tag(tag), {}))
    for key in ("mean", "std"):
        if isinstance(raw.get(key), list):
            raw[key] = tuple(raw[key])
    if "file" in raw:  # weights shipped in the package: open_clip's 'file' key holds a path
        raw["file"] = str(Path(__file__).parent / raw["file"])
    return raw


def get_pretrained_url(model: str, tag: str):
    """The original download URL of ``(model, tag)`` (``''`` for hub-only weights).

    Example:
        >>> get_pretrained_url("RN50", "openai").endswith("/RN50.pt")
        True
    """
    return get_pretrained_cfg(model, tag).get("url", "")


def list_openai_models() -> List[str]:
    """Models with OpenAI's original weights (tag ``openai``).

    Example:
        >>> "ViT-B-32" in list_openai_models()
        True
    """
    return list_pretrained_models_by_tag("openai")


def _expected_sha256(url: str) -> str:
    name = os.path.basename(url)
    if "openaipublic" in url:
        return url.split("/")[-2]
    if "mlfoundations" in url:
        return os.path.splitext(name)[0].split("-")[-1]
    return ""


def download_pretrained_from_url(url: str, cache_dir: Optional[str] = None):
    """Download ``url`` into ``cache_dir`` (``~/.cache/clip``) once and return the file path.

    The SHA-256 that OpenAI and open_clip release URLs carry is checked (a cached file that fails it is fetched
    again, a fresh one that fails it raises). The file appears atomically.

    Example:
        >>> path = download_pretrained_from_url(get_pretrained_url("RN50", "openai"))  # doctest: +SKIP
    """
    cache_dir = os.path.expanduser(cache_dir or "~/.cache/clip")
    os.makedirs(cache_dir, exist_ok=True)
    target = os.path.join(cache_dir, os.path.basename(url))
    expected = _expected_sha256(url)
    if os.path.exists(target) and not os.path.isfile(target):
        raise RuntimeError(f"download_pretrained_from_url: {target} exists and is not a regular file")
    if os.path.isfile(target):
        if not expected or file_sha256(target).startswith(expected):
            return target
        warnings.warn(f"{target} exists, but its SHA256 does not match; downloading it again", stacklevel=2)

    def fetch(tmp: str) -> None:
        with urllib.request.urlopen(url) as source, open(tmp, "wb") as out:
            for block in iter(lambda: source.read(1 << 20), b""):
                out.write(block)
        if expected and not file_sha256(tmp).startswith(expected):
            raise RuntimeError(f"download_pretrained_from_url: {url} was downloaded but its SHA256 does not "
                               f"match {expected}")

    atomic_write(target, fetch)
    return target


def download_pretrained(cfg: Dict, prefer_hf_hub: bool = True, cache_dir: Optional[str] = None):
    """Fetch the weights a :func:`get_pretrained_cfg` dict points at and return the local path (``''`` for ``{}``).

    The Hugging Face hub is preferred when the entry has both, as in open_clip; weights shipped in the
    package (``file``) are returned as they are.

    Example:
        >>> download_pretrained(get_pretrained_cfg("anyclip-shapes", "v1")).endswith(".safetensors")
        True
    """
    if not cfg:
        return ""
    if "file" in cfg:
        return cfg["file"]
    url, hf_hub = cfg.get("url", ""), cfg.get("hf_hub", "")
    if hf_hub and prefer_hf_hub:
        url = ""
    if url:
        return download_pretrained_from_url(url, cache_dir=cache_dir)
    if hf_hub:
        repo_id, filename = os.path.split(hf_hub)  # 'org/repo/' means open_clip's default file name
        return hub.hf_download(repo_id, filename or None, cache_dir=cache_dir)
    return ""
