"""Every public top-level name of open_clip 3.3.0 exists in anyclip with the same signature.

Signatures compare parameter names, order, kinds and defaults (not annotations). Defaults compare by value,
with three documented normalisations: a ``torch.device`` / ``torch.dtype`` default equals its name
(``'cpu'``, ``'float16'``: anyclip cannot import torch at import time); a numpy scalar equals its Python
value; a default that is the path of a file shipped with the package compares by file name (each package
ships its own copy of the BPE vocabulary). Submodules (``open_clip.factory``, ``open_clip.loss``, ...) are
not part of the comparison: they are packaging, not API.
"""

import inspect
import os
import types

import pytest

import anyclip

open_clip = pytest.importorskip("open_clip")

# name -> why its signature may differ (at most 3 entries)
ALLOW_LIST = {
    "CLIP": "a Keras model built from one validated config, CLIP(config, seed=0, **keras_kwargs); build it from "
            "open_clip's arguments with create_model or CLIPConfig.from_dict({embed_dim, vision_cfg, text_cfg})",
    "CoCa": "as CLIP: CoCa(config, seed=0, **keras_kwargs) from a CoCaConfig",
    "CustomTextCLIP": "as CLIP: CustomTextCLIP(config, seed=0, **keras_kwargs)",
}


def _public(module):
    return sorted(n for n in dir(module) if not n.startswith("_")
                  and not isinstance(getattr(module, n), types.ModuleType))


def _default(value):
    if type(value).__module__ == "torch":  # torch.device('cpu') -> 'cpu', torch.float16 -> 'float16'
        return str(value).replace("torch.", "")
    if type(value).__module__ == "numpy":
        return value.item()
    if isinstance(value, str) and os.path.isfile(value):
        return os.path.basename(value)
    return value


def _params(fn):
    return [(p.name, p.kind, _default(p.default)) for p in inspect.signature(fn).parameters.values()]


def test_allow_list_is_short():
    assert len(ALLOW_LIST) <= 3


def test_every_open_clip_name_exists():
    missing = [n for n in _public(open_clip) if not hasattr(anyclip, n)]
    assert not missing, f"open_clip names missing from anyclip: {missing}"


@pytest.mark.parametrize("name", [n for n in _public(open_clip) if callable(getattr(open_clip, n))])
def test_signature_matches(name):
    same = _params(getattr(anyclip, name)) == _params(getattr(open_clip, name))
    if name in ALLOW_LIST:  # a difference allowed for its reason; once it is gone the entry must go too
        assert not same, f"{name} now matches open_clip: remove it from ALLOW_LIST"
    else:
        assert same, f"{name}{inspect.signature(getattr(anyclip, name))} differs from open_clip's " \
                     f"{name}{inspect.signature(getattr(open_clip, name))}"


@pytest.mark.parametrize("name", [n for n in _public(open_clip) if not callable(getattr(open_clip, n))])
def test_constant_matches(name):
    ours, theirs = getattr(anyclip, name), getattr(open_clip, name)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert (a("{}") if callable(a) else a) == (b("{}") if callable(b) else b)
