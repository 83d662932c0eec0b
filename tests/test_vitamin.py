"""ViTamin towers (timm ``vitamin_*``: MbConv stem stages, GeGLU ViT) against timm and open_clip 3.3.0.

Embedding parity of the 15 shipped ViTamin configs runs in test_parity.py (JAX and torch). Here: the
architecture table against timm itself (meta device), odd image sizes through the padded stride-2 stem
(ViTamin-XL has no position embeddings, so open_clip takes any size), LiT locking, the image-size check,
and a ``.keras`` round trip (the shipped configs are compared in test_timm_vit.py).
"""

import numpy as np
import pytest
from backend_runner import start_in_backend
from inputs import images_like
from model_pairs import image_features, torch_state, trainable_visual_keys
from test_timm_vit import _cfg, _open_clip_model

import anyclip
from anyclip.models import CLIPConfig
from anyclip.towers.timm.vit_config import TIMM_VITS
from anyclip.weights import load_state_dict

TOL = 1e-5
VITAMINS = sorted(n for n, arch in TIMM_VITS.items() if arch.stem == "vitamin")
SMALL, XL = "vitamin_small_224", "vitamin_xlarge_256"


def test_every_open_clip_vitamin_config_is_shipped():
    import open_clip
    theirs = sorted(n for n in open_clip.list_models() if n.startswith("ViTamin"))
    assert len(theirs) == 15 and set(theirs) <= set(anyclip.list_models())


@pytest.mark.parametrize("name", VITAMINS)
def test_architecture_table_matches_timm(name):
    import timm
    import torch
    with torch.device("meta"):
        ref = timm.create_model(name)
    ours, block, stem = TIMM_VITS[name], ref.blocks[0], ref.patch_embed.backbone
    assert type(ref.patch_embed).__name__ == "HybridEmbed" and isinstance(ref.patch_embed.proj, torch.nn.Identity)
    assert (ours.patch_size, ours.image_size) == (ref.patch_embed.feat_ratio(), ref.patch_embed.img_size[0])
    assert (ours.width, ours.depth, ours.heads) == (ref.embed_dim, len(ref.blocks), block.attn.num_heads)
    assert type(block.mlp).__name__ == "GeGluMlp" and ours.geglu and ours.mlp_width == block.mlp.w0.out_features
    assert block.mlp.norm.eps == 1e-6 and type(block.mlp.act).__name__ == "GELU" and block.mlp.act.approximate == "none"
    assert ours.default_pool == ref.global_pool == "avg" and ref.cls_token is None and ours.class_token is False
    assert ours.pos_embed == (ref.pos_embed is not None) and ours.qkv_bias == (block.attn.qkv.bias is not None)
    assert not isinstance(ref.fc_norm, torch.nn.Identity) and isinstance(ref.norm, torch.nn.Identity)
    assert all(n.eps == ours.norm_eps for n in (block.norm1, block.norm2, ref.fc_norm))
    assert ours.stem_widths == (stem.stem.out_chs, *(s[0].out_chs for s in stem.stages))
    assert ours.stem_depths == tuple(len(s) for s in stem.stages)
    assert stem.pool.proj.out_channels == ours.width and stem.pool.proj.stride == (2, 2)
    convs = [stem.stem.conv1, stem.stem.conv2, stem.pool.proj] + [m for s in stem.stages for b in s for m in
                                                                   (b.conv1_1x1, b.conv2_kxk, b.conv3_1x1)]
    assert all(c.padding[0] == c.kernel_size[0] // 2 and c.bias is not None for c in convs)
    for s in stem.stages:  # 4x expansion, stride 2 in the first block, depthwise 3x3
        assert [(b.conv1_1x1.out_channels, b.conv2_kxk.stride[0], b.conv2_kxk.groups) for b in s] == [
            (4 * b.out_chs, 2 if i == 0 else 1, 4 * b.out_chs) for i, b in enumerate(s)]


@pytest.mark.parametrize("size", [200, 250])
def test_any_image_size_without_position_embeddings(size):
    """ViTamin-XL has no position embeddings: open_clip encodes any size (ceil-halving grids, edge pools)."""
    cfg = _cfg(XL, "", "linear", False, 48, depth=1, size=256)
    torch_model = _open_clip_model(cfg, seed=5)
    ours = anyclip.CLIP(CLIPConfig.from_dict(cfg), seed=None)
    load_state_dict(ours, torch_state(torch_model))
    images = images_like(size, seed=5)
    np.testing.assert_allclose(np.asarray(ours.encode_image(images, normalize=True)),
                               image_features(torch_model, images), atol=TOL)


def test_wrong_image_size_is_refused_with_position_embeddings():
    model = anyclip.CLIP(CLIPConfig.from_dict(_cfg(SMALL, "", "linear", False, 48, depth=1, size=224)), seed=0)
    with pytest.raises(ValueError, match="13x13 patch grid.*14x14"):
        model.encode_image(np.zeros((1, 208, 208, 3), np.float32))


@pytest.mark.parametrize("groups", [0, 1, 2, 3])
def test_lock_image_tower_freezes_timm_groups_like_open_clip(groups):
    cfg = _cfg(SMALL, "", "linear", False, 48, depth=2, size=224)
    torch_model = _open_clip_model(cfg)
    torch_model.lock_image_tower(unlocked_groups=groups)
    model = anyclip.CLIP(CLIPConfig.from_dict(cfg), seed=None)
    model.lock_image_tower(unlocked_groups=groups)
    theirs, ours = trainable_visual_keys(torch_model, model)
    assert ours == theirs


def test_keras_round_trip_and_weights_back_to_open_clip(tmp_path):
    import keras

    from anyclip.weights import export_state_dict
    cfg = _cfg(SMALL, "", "linear", False, 48, depth=1, size=224)
    torch_model = _open_clip_model(cfg, seed=2)
    state = torch_state(torch_model)
    model = anyclip.CLIP(CLIPConfig.from_dict(cfg), seed=None)
    load_state_dict(model, state)
    back = export_state_dict(model)
    assert set(back) == set(state)
    assert all(np.array_equal(np.asarray(back[k]), state[k]) for k in state)
    model.save(tmp_path / "vitamin.keras")
    again = keras.saving.load_model(tmp_path / "vitamin.keras")
    images = images_like(224, seed=2)
    np.testing.assert_allclose(np.asarray(again.encode_image(images)), np.asarray(model.encode_image(images)),
                               atol=1e-6)


def seeded_worker(arrays, params):
    """Subprocess entry (``backend_runner``): a seeded random ViTamin with stochastic depth, eval and train."""
    import keras
    model = anyclip.CLIP(CLIPConfig.from_dict(params["cfg"]), seed=params["seed"])
    images = arrays["images"]
    train = model.visual(images, training=True)
    return {"eval": keras.ops.convert_to_numpy(model.encode_image(images)), "train": keras.ops.convert_to_numpy(train),
            "block_seeds": np.array([b.seed for b in model.visual.blocks], np.uint64)}


@pytest.mark.slow  # seeded init across backends: full sweep only (about 25 s)
def test_seeded_random_init_with_stochastic_depth_is_the_same_on_torch():
    """Weights are drawn on the host, so a seeded model is the same on every backend (the drop-path seed
    generators of ViTamin's configs, ``timm_drop_path: 0.1``, must also fit torch's int32 seeds)."""
    cfg = _cfg(SMALL, "", "linear", False, 48, depth=2, size=224, timm_drop_path=0.1)
    images = images_like(224, seed=4)
    params = {"cfg": cfg, "seed": 1}
    job = start_in_backend("torch", "test_vitamin:seeded_worker", {"images": images}, params)
    ours = seeded_worker({"images": images}, params)
    theirs = job.result(timeout=600)
    assert ours["block_seeds"].max() >= 2**31  # the case that needs folding into int32
    np.testing.assert_allclose(theirs["eval"], ours["eval"], atol=TOL)
    assert theirs["train"].shape == ours["train"].shape and np.isfinite(theirs["train"]).all()

