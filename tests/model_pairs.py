"""open_clip and anyclip models on the same random weights, shared by the tower tests.

``open_clip_model(cfg)`` builds open_clip's model for a config dict (``CustomTextCLIP`` when the config says
``custom_text`` or names a Hugging Face text tower; ``vision_cfg.timm_model_kwargs`` passed on to timm) with its
weights re-drawn by ``reference.randomize``; ``anyclip_model(torch_model, cfg)`` is anyclip's model for the same
config holding those weights. The rest: open_clip's normalised image features and
the LiT lock comparison (which visual weights each leaves trainable), and the pretrained-registry comparison.
"""

import copy

import numpy as np
import open_clip  # noqa: F401 - torch loads first: importing it after a .keras save segfaults (triton import)
from reference import _timm_kwargs, randomize

import anyclip
import anyclip.weights
from anyclip.models import CLIPConfig
from anyclip.weights import load_state_dict
from anyclip.weights.mapping import model_entries


def open_clip_model(cfg, seed=0, **kwargs):
    """open_clip's model for ``cfg`` in eval mode, its weights re-drawn at random (``seed``); ``kwargs`` go to
    the model class (e.g. ``output_dict=True``)."""
    cfg = copy.deepcopy(cfg)
    custom = cfg.pop("custom_text", False) or bool(cfg["text_cfg"].get("hf_model_name"))
    with _timm_kwargs(cfg):
        model = (open_clip.CustomTextCLIP if custom else open_clip.CLIP)(**cfg, **kwargs).eval()
    model.load_state_dict(randomize(model.state_dict(), seed))
    return model


def torch_state(torch_model):
    """A torch model's state dict as numpy arrays."""
    return {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}


def anyclip_model(torch_model, cfg):
    """anyclip's CLIP for ``cfg`` holding ``torch_model``'s weights."""
    model = anyclip.CLIP(CLIPConfig.from_dict(copy.deepcopy(cfg)), seed=None)
    load_state_dict(model, torch_state(torch_model))
    return model


def model_pair(cfg, seed=0):
    """``(open_clip's model, anyclip's model)`` for ``cfg`` on the same random weights."""
    torch_model = open_clip_model(cfg, seed)
    return torch_model, anyclip_model(torch_model, cfg)


def with_vision(cfg, **changes):
    """A copy of the config ``cfg`` with ``vision_cfg`` updated by ``changes``."""
    cfg = copy.deepcopy(cfg)
    cfg["vision_cfg"].update(changes)
    return cfg


def image_features(torch_model, images):
    """open_clip's normalised image features of channels-last ``images``."""
    import torch
    with torch.no_grad():
        return torch_model.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2), normalize=True).numpy()


def assert_config_like_open_clip(name, keys=("embed_dim",), null_means_unset=False):
    """anyclip ships config ``name`` with open_clip's values: every key of open_clip's ``vision_cfg``,
    ``text_cfg`` and ``multimodal_cfg``, and the top-level ``keys``. ``null_means_unset``: an open_clip null
    may be absent from ours. Returns ``(ours, theirs)`` as dicts for further checks."""
    from anyclip.models import get_model_config
    assert name in anyclip.list_models(), name
    ours, theirs = get_model_config(name).to_dict(), open_clip.get_model_config(name)
    for tower in ("vision_cfg", "text_cfg", "multimodal_cfg"):
        for key, value in theirs.get(tower, {}).items():
            if value is not None or key in ours[tower] or not null_means_unset:
                assert ours[tower][key] == value, (name, tower, key)
    for key in keys:
        assert ours[key] == theirs[key], (name, key)
    return ours, theirs


def assert_export_loads_into_open_clip(pair, cfg, images, seed=5):
    """anyclip's exported state dict (of ``pair``'s model) loads strictly into a fresh open_clip model of ``cfg``,
    which then gives the image features of ``pair``'s open_clip model."""
    import torch

    from anyclip.weights import export_state_dict
    torch_model, model = pair
    fresh = open_clip_model(cfg, seed=seed)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in export_state_dict(model).items()}, strict=True)
    np.testing.assert_allclose(image_features(fresh, images), image_features(torch_model, images), atol=1e-6)


def assert_pretrained_like_open_clip(names):
    """open_clip's pretrained (model, tag) pairs of the models ``names``, each checked to be in anyclip's registry
    with open_clip's hub location and preprocessing (mean, std, interpolation, resize mode) and quick_gelu."""
    theirs = [(m, t) for m, t in open_clip.list_pretrained() if m in set(names)]
    assert set(theirs) <= set(anyclip.list_pretrained())
    for model, tag in theirs:
        ref, entry = open_clip.get_pretrained_cfg(model, tag), anyclip.weights.get_pretrained_cfg(model, tag)
        assert entry.hf_hub == ref["hf_hub"], (model, tag)
        assert (entry.preprocess.mean, entry.preprocess.std) == (tuple(ref["mean"]), tuple(ref["std"])), (model, tag)
        assert (entry.preprocess.interpolation, entry.preprocess.resize_mode) == (ref["interpolation"],
                                                                                  ref["resize_mode"]), (model, tag)
        assert entry.quick_gelu == ref.get("quick_gelu", False), (model, tag)
    return theirs


def trainable_visual_keys(torch_model, model):
    """``(open_clip's, ours)``: the ``visual.`` weight names each model leaves trainable."""
    theirs = {k for k, p in torch_model.named_parameters() if k.startswith("visual.") and p.requires_grad}
    trainable = {id(v) for v in model.trainable_variables}
    ours = {k for k, (v, _) in model_entries(model).items() if k.startswith("visual.") and id(v) in trainable}
    return theirs, ours


def assert_lock_matches_open_clip(torch_model, model, unlocked_counts):
    """For each count, open_clip's ``lock_image_tower`` and ours leave the same visual weights trainable."""
    try:
        for unlocked in unlocked_counts:
            for param in torch_model.parameters():
                param.requires_grad_(True)
            torch_model.lock_image_tower(unlocked_groups=unlocked)
            model.lock_image_tower(unlocked_groups=unlocked)
            theirs, ours = trainable_visual_keys(torch_model, model)
            assert ours == theirs, unlocked
    finally:
        model.visual.lock(unlocked_groups=10_000)  # everything trainable again for the other tests
