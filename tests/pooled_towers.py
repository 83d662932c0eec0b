"""Helpers shared by the tests of the timm towers with an average-pool head (ConvNeXt, Swin): open_clip and
anyclip models on the same random weights, image features, and the LiT lock comparison.
"""

import copy

import numpy as np
import open_clip
from reference import _timm_kwargs, randomize

import anyclip
from anyclip.models import CLIPConfig
from anyclip.weights import load_state_dict
from anyclip.weights.mapping import model_entries


def open_clip_model(cfg, seed=0):
    """open_clip's CLIP for ``cfg`` (timm_model_kwargs passed to timm), its weights re-drawn at random."""
    cfg = copy.deepcopy(cfg)
    with _timm_kwargs(cfg):
        model = open_clip.CLIP(**cfg).eval()
    model.load_state_dict(randomize(model.state_dict(), seed))
    return model


def anyclip_model(torch_model, cfg):
    """anyclip's CLIP for ``cfg`` holding ``torch_model``'s weights."""
    model = anyclip.CLIP(CLIPConfig.from_dict(copy.deepcopy(cfg)), seed=None)
    load_state_dict(model, {k: v.detach().numpy() for k, v in torch_model.state_dict().items()})
    return model


def image_features(torch_model, images):
    import torch
    with torch.no_grad():
        return torch_model.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2), normalize=True).numpy()


def images_like(h, w=None, n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, h, w or h, 3)).astype(np.float32)


def assert_lock_matches_open_clip(torch_model, model, unlocked_counts):
    """For each count, open_clip's ``lock_image_tower`` and ours leave the same visual weights trainable."""
    try:
        for unlocked in unlocked_counts:
            for param in torch_model.parameters():
                param.requires_grad_(True)
            torch_model.lock_image_tower(unlocked_groups=unlocked)
            model.lock_image_tower(unlocked_groups=unlocked)
            theirs = {k for k, p in torch_model.named_parameters() if k.startswith("visual.") and p.requires_grad}
            ours = {k for k, (v, _) in model_entries(model).items() if k.startswith("visual.") and v.trainable}
            assert ours == theirs, unlocked
    finally:
        model.visual.lock(unlocked_groups=10_000)  # everything trainable again for the other tests
