"""MobileCLIP (timm MCi FastViT image towers) against open_clip 3.3.0 + timm, on JAX and torch.

Embedding parity of every shipped MobileCLIP config (train-time form) runs in test_parity.py. Here: the
architecture table against timm itself, the shipped configs and registry pairs against open_clip's, the
re-parameterised form against timm's ``reparameterize_model`` (ours fused from the train-time weights, and
timm's fused checkpoint loaded directly), training-mode BatchNorm, locking, and config errors.
"""

import copy

import numpy as np
import pytest
from backend_runner import start_in_backend
from model_pairs import (
    assert_config_like_open_clip,
    assert_pretrained_like_open_clip,
    model_pair,
    open_clip_model,
    trainable_visual_keys,
)

import anyclip
import anyclip.weights
from anyclip.models import CLIPConfig, ConfigError
from anyclip.towers.timm.fastvit_config import FASTVIT_ARCHS

NAMES = ["MobileCLIP-S1", "MobileCLIP-S2", "MobileCLIP2-S0", "MobileCLIP2-S2", "MobileCLIP2-S3", "MobileCLIP2-S4"]
TEXT = {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 1, "no_causal_mask": True}


def _cfg(timm_name, layers, embed_dim, size):
    return {"embed_dim": embed_dim, "custom_text": True, "text_cfg": dict(TEXT),
            "vision_cfg": {"timm_model_name": timm_name, "timm_model_pretrained": False, "timm_pool": "avg",
                           "timm_proj": None, "timm_drop": 0.0, "timm_drop_path": 0.0, "image_size": size,
                           "timm_model_kwargs": {"layers": layers}}}


# Reduced depths keep every block type: BatchNorm attention (mci0), LayerNorm attention + 5 stages (mci3).
CASES = {"mci0": _cfg("fastvit_mci0", [1, 2, 1, 2], 512, 96), "mci3": _cfg("fastvit_mci3", [1, 1, 2, 1, 2], 768, 128)}


def _reference(cfg, seed=0):
    """open_clip's model on random weights: its outputs, train-time state, timm's fused state, a training step."""
    import torch
    from timm.models import reparameterize_model
    model = open_clip_model(cfg, seed)
    state = model.state_dict()
    size = cfg["vision_cfg"]["image_size"]
    images = np.random.default_rng(seed).standard_normal((2, size, size, 3)).astype(np.float32)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    arrays = {"images": images, **{"state/" + k: v.numpy().copy() for k, v in state.items()}}  # not views
    with torch.no_grad():
        arrays["ref"] = model.encode_image(x, normalize=True).numpy()
        fused = copy.deepcopy(model)
        fused.visual.trunk = reparameterize_model(fused.visual.trunk)
        arrays["ref_fused"] = fused.encode_image(x, normalize=True).numpy()
        arrays.update({"fused/" + k: v.numpy() for k, v in fused.state_dict().items()})
        model.train()
        arrays["ref_train"] = model.visual(x).numpy()
        arrays.update({"after/" + k: v.numpy() for k, v in model.state_dict().items() if "running" in k})
    return arrays


def fastvit_outputs(arrays, params):
    """anyclip's outputs for a reference case (run on JAX here and on torch through backend_runner)."""
    import keras

    from anyclip.weights import export_state_dict, load_state_dict
    from anyclip.weights.reparameterize import reparameterize
    cfg = CLIPConfig.from_dict(params["cfg"])
    images = arrays["images"]
    model = anyclip.CLIP(cfg, seed=None)
    load_state_dict(model, {k[6:]: v for k, v in arrays.items() if k.startswith("state/")})
    out = {"ours": keras.ops.convert_to_numpy(model.encode_image(images, normalize=True))}
    fast = reparameterize(model)
    out["ours_fused"] = keras.ops.convert_to_numpy(fast.encode_image(images, normalize=True))
    out.update({"fused/" + k: v for k, v in export_state_dict(fast).items() if k.startswith("visual.")})
    direct = anyclip.CLIP(fast.config, seed=None)  # timm's fused checkpoint, loaded strictly
    load_state_dict(direct, {k[6:]: v for k, v in arrays.items() if k.startswith("fused/")})
    out["timm_fused"] = keras.ops.convert_to_numpy(direct.encode_image(images, normalize=True))
    out["train"] = keras.ops.convert_to_numpy(model.visual(images, training=True))
    out.update({"after/" + k: v for k, v in export_state_dict(model).items() if "running" in k})
    return out


def _check(out, ref):
    for key in ("ours", "ours_fused", "timm_fused"):
        target = ref["ref_fused" if "fused" in key else "ref"]
        assert np.abs(out[key] - target).max() <= 1e-5, key
    assert np.abs(ref["ref_fused"] - ref["ref"]).max() < 1e-4  # timm's own fusion is exact up to rounding
    fused_keys = {k[6:] for k in ref if k.startswith("fused/visual.")}
    assert {k[6:] for k in out if k.startswith("fused/")} == fused_keys  # timm's re-parameterised key names
    for key in fused_keys:
        np.testing.assert_allclose(out["fused/" + key], ref["fused/" + key], rtol=1e-5, atol=1e-5, err_msg=key)
    scale = np.abs(ref["ref_train"]).max()
    np.testing.assert_allclose(out["train"], ref["ref_train"], rtol=0, atol=1e-5 * scale)  # batch statistics
    after = [k for k in ref if k.startswith("after/")]
    assert after and {k for k in out if k.startswith("after/")} == set(after)
    for key in after:  # one running-statistics update, torch's momentum and unbiased variance
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-5, atol=1e-6, err_msg=key)


# mci3 (LayerNorm attention, 5 stages) peaks at ~7 GiB across JAX and the torch worker: it runs in the slow tier
# with the MobileCLIP2-S3/S4 parity cases; mci0 (and MobileCLIP2-S0's parity case) run by default.
@pytest.mark.parametrize("case", [pytest.param(c, marks=[pytest.mark.slow] if c == "mci3" else [])
                                  for c in sorted(CASES)])
def test_train_and_reparameterized_forms_match_open_clip_and_timm(case):
    ref = _reference(CASES[case])
    arrays = {k: v for k, v in ref.items() if k == "images" or k.startswith(("state/", "fused/"))}
    job = start_in_backend("torch", "test_mobileclip:fastvit_outputs", arrays, {"cfg": CASES[case]})
    _check(fastvit_outputs(arrays, {"cfg": CASES[case]}), ref)
    _check(job.result(timeout=900), ref)


@pytest.mark.parametrize("name", sorted(FASTVIT_ARCHS))
def test_fastvit_architecture_table_matches_timm(name):
    import timm
    import torch
    from timm.layers import LayerNorm2d
    from timm.models.fastvit import AttentionBlock, RepConditionalPosEnc, RepMixerBlock
    with torch.device("meta"):
        ref = timm.create_model(name, num_classes=0)
    ours = FASTVIT_ARCHS[name]
    assert len(ref.stages) == len(ours.layers) and ref.num_features == ours.num_features
    for i, stage in enumerate(ref.stages):
        block = stage.blocks[0]
        assert len(stage.blocks) == ours.layers[i] and block.mlp.fc1.in_channels == ours.embed_dims[i]
        assert block.mlp.fc1.out_channels == int(ours.embed_dims[i] * ours.mlp_ratio)
        mixer = ours.token_mixer(i)
        assert all(isinstance(b, RepMixerBlock if mixer == "repmixer" else AttentionBlock) for b in stage.blocks)
        assert isinstance(stage.pos_emb, RepConditionalPosEnc) == (mixer == "attention")
        assert (i > 0) == (not isinstance(stage.downsample, torch.nn.Identity))
        if i > 0:
            proj = stage.downsample.proj[0]
            assert isinstance(proj.act, torch.nn.GELU) and proj.kernel_size == 7 and proj.small_kernel == 3
            assert isinstance(proj.se, torch.nn.Identity) != ours.se_downsamples[i]
        if mixer == "attention":
            assert block.token_mixer.head_dim == 32
            norm = block.norm
            assert isinstance(norm, LayerNorm2d if ours.layer_norm else torch.nn.BatchNorm2d) and norm.eps == 1e-5
    assert (ref.stem[0].conv_scale is not None) == ours.stem_scale_branch
    assert ref.final_conv.out_chs == ours.num_features and not isinstance(ref.final_conv.se, torch.nn.Identity)


def test_every_mobileclip_config_is_shipped_and_equal():
    for name in NAMES:
        ours, _ = assert_config_like_open_clip(name)
        assert ours["custom_text"] is True


def test_registry_has_every_mobileclip_pair_with_open_clip_preprocessing():
    theirs = assert_pretrained_like_open_clip(NAMES)
    assert len(theirs) == 6
    for model, tag in theirs:
        entry = anyclip.weights.get_pretrained_cfg(model, tag)
        assert (entry.preprocess.interpolation, entry.preprocess.resize_mode) == ("bilinear", "shortest")
    zero = anyclip.weights.get_pretrained_cfg("MobileCLIP2-S0", "dfndr2b").preprocess
    assert zero.mean == (0.0, 0.0, 0.0) and zero.std == (1.0, 1.0, 1.0)  # MobileCLIP: no normalisation


@pytest.mark.parametrize("groups", [0, 1, 4, 100])
def test_lock_freezes_timm_groups_and_batch_norm_statistics_like_open_clip(groups):
    import torch

    ref, ours = model_pair(CASES["mci0"], seed=1)
    ref.visual.lock(unlocked_groups=groups, freeze_bn_stats=True)
    ours.visual.lock(unlocked_groups=groups, freeze_bn_stats=True)
    theirs, trainable = trainable_visual_keys(ref, ours)
    assert trainable == theirs
    images = np.random.default_rng(0).standard_normal((2, 96, 96, 3)).astype(np.float32)
    ref.train()
    with torch.no_grad():  # a training forward: frozen groups on running statistics, the others on the batch's
        expected = ref.visual(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    got = np.asarray(ours.visual(images, training=True))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_reparameterize_needs_a_fastvit_and_is_idempotent():
    from anyclip.weights.reparameterize import reparameterize
    fast = reparameterize(anyclip.CLIP(CLIPConfig.from_dict(CASES["mci0"]), seed=0))
    assert fast.config.vision_cfg.inference_mode and reparameterize(fast) is fast
    with pytest.raises(ValueError, match="already re-parameterised"):
        fast.visual.reparameterized_state_dict({})
    with pytest.raises(TypeError, match="needs a FastViT"):
        reparameterize(anyclip.create_model("ViT-S-32", pretrained=None))


@pytest.mark.parametrize("mutate, match", [
    (lambda v: v.update(timm_pool="map"), r"vision_cfg\.timm_pool"),
    (lambda v: v.update(timm_proj="mlp"), r"vision_cfg\.timm_proj"),
    (lambda v: v.update(timm_model_kwargs={"layers": [1, 1]}), r"timm_model_kwargs\.layers"),
    (lambda v: v.update(timm_model_kwargs={"layers": [1, True, 1, 1]}), r"timm_model_kwargs\.layers: must be 4 "),
    (lambda v: v.update(timm_model_kwargs={"depth": 2}), r"vision_cfg\.timm_model_kwargs"),
    (lambda v: v.update(timm_model_kwargs={"inference_mode": "yes"}), r"inference_mode"),
    (lambda v: v.update(image_size=16), r"vision_cfg\.image_size"),
    (lambda v: v.update(timm_model_name="fastvit_mci9"), r"timm_model_name"),
    (lambda v: v.update(layers=6), r"vision_cfg\.layers"),
])
def test_config_errors_name_the_key(mutate, match):
    cfg = copy.deepcopy(CASES["mci0"])
    mutate(cfg["vision_cfg"])
    with pytest.raises(ConfigError, match=match):
        CLIPConfig.from_dict(cfg)


def test_config_round_trips():
    cfg = CLIPConfig.from_dict(CASES["mci3"])
    assert CLIPConfig.from_dict(cfg.to_dict()) == cfg
