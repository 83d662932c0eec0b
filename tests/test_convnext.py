"""ConvNeXt towers (timm's ConvNeXt under open_clip's TimmModel head) against open_clip 3.3.0 + timm.

Embedding parity of every shipped convnext config runs in test_parity.py (JAX and torch). Here: the
architecture table against timm itself, shipped configs and registry pairs, the head variants (linear,
MLP, none; biases), image sizes ConvNeXt accepts, locking, export, weight-mapping and config errors.
"""

import keras
import numpy as np
import open_clip
import pytest
from inputs import images_like as _images
from model_pairs import (
    anyclip_model,
    assert_config_like_open_clip,
    assert_export_loads_into_open_clip,
    assert_lock_matches_open_clip,
    assert_pretrained_like_open_clip,
    image_features,
    model_pair,
    open_clip_model,
    torch_state,
    with_vision,
)

import anyclip
import anyclip.weights
from anyclip.layers.drop import dropout
from anyclip.models import CLIPConfig, ConfigError
from anyclip.towers.timm.pooled import CONVNEXTS
from anyclip.weights import WeightMismatchError, export_state_dict, load_state_dict

CONVNEXT_NAMES = sorted(n for n in open_clip.list_models() if n.startswith("convnext_"))
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"timm_model_name": "convnext_tiny", "timm_model_pretrained": False, "timm_pool": "",
                   "timm_proj": "linear", "timm_drop": 0.0, "timm_drop_path": 0.1, "image_size": 64,
                   "timm_model_kwargs": {"depths": [1, 1, 2, 1]}},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def pair():
    return model_pair(TINY)


@pytest.mark.parametrize("name", sorted(CONVNEXTS))
def test_convnext_architecture_table_matches_timm(name):
    import timm
    import torch
    with torch.device("meta"):
        ref = timm.create_model(name, num_classes=0)
    ours = CONVNEXTS[name]
    stem_conv, stem_norm = ref.stem
    assert stem_conv.kernel_size == stem_conv.stride == (ours.patch_size,) * 2 and stem_conv.bias is not None
    assert tuple(len(s.blocks) for s in ref.stages) == ours.depths
    assert tuple(s.blocks[0].conv_dw.out_channels for s in ref.stages) == ours.dims == tuple(
        f["num_chs"] for f in ref.feature_info)
    norms = [stem_norm, ref.head.norm]
    for i, stage in enumerate(ref.stages):
        if i == 0:
            assert isinstance(stage.downsample, torch.nn.Identity)
        else:
            norm, conv = stage.downsample
            assert conv.kernel_size == conv.stride == (2, 2) and conv.bias is not None and conv.padding == (0, 0)
            norms.append(norm)
        for block in stage.blocks:
            conv = block.conv_dw
            assert conv.kernel_size == (ours.kernel_size,) * 2 and conv.groups == conv.in_channels
            assert conv.padding == (ours.kernel_size // 2,) * 2 and conv.stride == (1, 1) and conv.bias is not None
            assert block.mlp.fc1.out_features == ours.mlp_ratio * conv.out_channels
            assert not block.use_conv_mlp and block.gamma is not None and isinstance(block.shortcut, torch.nn.Identity)
            assert type(block.mlp.act).__name__ == "GELU" and getattr(block.mlp.act, "approximate", "none") == "none"
            assert isinstance(block.mlp.norm, torch.nn.Identity) and not hasattr(block.mlp, "grn")
            norms.append(block.norm)
    assert all(n.eps == ours.norm_eps for n in norms)
    assert isinstance(ref.norm_pre, torch.nn.Identity) and isinstance(ref.head.pre_logits, torch.nn.Identity)
    assert ref.head.global_pool.pool_type == "avg" and ref.num_features == ours.width


def test_every_convnext_config_is_shipped_and_equal():
    assert len(CONVNEXT_NAMES) == 11
    for name in CONVNEXT_NAMES:
        assert_config_like_open_clip(name)


def test_registry_has_every_convnext_pair_with_open_clip_settings():
    theirs = assert_pretrained_like_open_clip(CONVNEXT_NAMES)
    assert len(theirs) == 12 and not any(anyclip.weights.get_pretrained_cfg(*pair).quick_gelu for pair in theirs)


@pytest.mark.parametrize("changes", [
    {},
    {"timm_pool": "avg", "timm_proj_bias": True},
    {"timm_proj": "mlp"},
    {"timm_proj": "mlp", "timm_proj_bias": True, "timm_model_name": "convnext_base", "timm_pool": "avg"},
    {"timm_proj": "none", "timm_pool": "avg", "timm_model_name": "convnext_small"},  # 768 wide: embed_dim 768
])
def test_head_variants_equal_open_clip(changes):
    cfg = with_vision(TINY, **changes)
    if changes.get("timm_proj") == "none":
        cfg["embed_dim"] = cfg["text_cfg"]["width"] = 768
        cfg["text_cfg"]["heads"] = 12
    torch_model = open_clip_model(cfg, seed=1)
    model = anyclip_model(torch_model, cfg)
    images = _images(64)
    np.testing.assert_allclose(np.asarray(model.encode_image(images, normalize=True)),
                               image_features(torch_model, images), atol=1e-5)


@pytest.mark.parametrize("hw", [(64, 64), (100, 77), (32, 40)])
def test_any_image_size_from_32_pixels_runs_as_in_timm(pair, hw):
    torch_model, model = pair
    images = _images(*hw)
    np.testing.assert_allclose(np.asarray(model.encode_image(images, normalize=True)),
                               image_features(torch_model, images), atol=1e-5)


def test_too_small_images_are_refused(pair):
    _, model = pair
    with pytest.raises(ValueError, match=r"image of \(31, 64\) pixels is too small for convnext_tiny: .* 32 pixels"):
        model.encode_image(np.zeros((1, 31, 64, 3), np.float32))


def test_training_mode_without_drop_path_equals_inference_and_drop_path_drops_whole_samples(pair):
    _, model = pair
    cfg = with_vision(TINY, timm_drop_path=0.0)
    plain = anyclip.CLIP(CLIPConfig.from_dict(cfg), seed=None)
    load_state_dict(plain, export_state_dict(model))
    images = _images(64)
    np.testing.assert_allclose(np.asarray(plain.visual(images, training=True)),
                               np.asarray(plain.encode_image(images)), atol=1e-5)
    x = keras.ops.ones((64, 3, 2))
    kept = np.asarray(dropout(x, 0.5, keras.random.SeedGenerator(1), per_sample=True))
    assert set(np.unique(kept)) == {0.0, 2.0} and all(len(set(row.ravel())) == 1 for row in kept)


def test_lock_freezes_the_groups_open_clip_freezes(pair):
    assert_lock_matches_open_clip(*pair, [0, 1, 3, 6, 7, 100])


def test_export_loads_strictly_into_open_clip(pair):
    assert_export_loads_into_open_clip(pair, TINY, _images(64))


def test_weight_mismatch_names_the_key_and_both_shapes(pair):
    torch_model, _ = pair
    other = anyclip.CLIP(CLIPConfig.from_dict(with_vision(TINY, timm_model_kwargs={"depths": [1, 1, 3, 1]})), seed=None)
    state = torch_state(torch_model)
    with pytest.raises(WeightMismatchError, match=r"missing key 'visual.trunk.stages.2.blocks.2.conv_dw.weight' "
                                                  r"\(anyclip expects shape \(384, 1, 7, 7\)\)"):
        load_state_dict(other, state)
    state["visual.trunk.stages.1.blocks.0.conv_dw.weight"] = np.zeros((192, 1, 5, 5), np.float32)
    with pytest.raises(WeightMismatchError, match=r"shape mismatch for 'visual.trunk.stages.1.blocks.0.conv_dw."
                                                  r"weight': checkpoint \(192, 1, 5, 5\), model \(192, 1, 7, 7\)"):
        load_state_dict(anyclip.CLIP(CLIPConfig.from_dict(TINY), seed=None), state)


def test_tower_config_round_trip(pair):
    _, model = pair
    tower = type(model.visual).from_config(model.visual.get_config())
    assert tower.config == model.visual.config and tower.embed_dim == 32


@pytest.mark.parametrize("changes,match", [
    ({"timm_pool": "max"}, r"vision_cfg.timm_pool: only '' .* or 'avg' is supported, got 'max'"),
    ({"timm_pool": "abs_attn"}, r"vision_cfg.timm_pool"),
    ({"timm_proj": "none"}, r"vision_cfg.timm_proj: 'none' with timm_pool '' gives open_clip an unpooled"),
    ({"timm_proj": "conv"}, r"vision_cfg.timm_proj: must be 'linear', 'mlp' or 'none', got 'conv'"),
    ({"timm_proj": "none", "timm_pool": "avg"}, r"'none' needs the timm model's width \(768\) equal to embed_dim"),
    ({"patch_dropout": 0.5}, r"vision_cfg.patch_dropout: convnext_tiny has no patch tokens to drop"),
    ({"timm_drop_path": 1.5}, r"vision_cfg.timm_drop_path: must be a rate in \[0, 1\) or null, got 1.5"),
    ({"timm_model_kwargs": {"depth": 2}}, r"vision_cfg.timm_model_kwargs: only \['depths'\] may be overridden"),
    ({"timm_model_kwargs": {"depths": [1, 1]}}, r"timm_model_kwargs.depths: must be 4 positive integers"),
    ({"timm_model_pretrained": True}, r"vision_cfg.timm_model_pretrained: timm's own \(ImageNet\) weights"),
    ({"image_size": 16}, r"vision_cfg.image_size: 16 is smaller than convnext_tiny's total stride 32"),
    ({"timm_model_name": "convnext_nano"}, r"timm_model_name='convnext_nano' is not one of the timm vision towers"),
    ({"layers": 12, "width": 1024}, r"vision_cfg.width does not apply to timm towers"),
])
def test_config_errors_name_the_key(changes, match):
    with pytest.raises(ConfigError, match=match):
        CLIPConfig.from_dict(with_vision(TINY, **changes))
