"""EVA / EVA02 / PE-Core: timm ``Eva`` image towers, against open_clip 3.3.0 + timm.

Embedding parity of every shipped EVA/PE config runs in test_parity.py (JAX and torch). Here: the
architecture table against timm itself, the shipped configs and registry pairs against open_clip's, image
sizes other than the native one (open_clip's ``force_image_size``: positions and rotary tables follow the
grid), locking, weight round trip, serialization and config errors, on 1-2 block models.
"""

import copy
import json

import keras
import numpy as np
import pytest
from inputs import images_like
from model_pairs import (
    anyclip_model,
    assert_config_like_open_clip,
    assert_pretrained_like_open_clip,
    image_features,
    open_clip_model,
    torch_state,
    trainable_visual_keys,
)

import anyclip
import anyclip.weights
from anyclip.models import CLIPConfig, ConfigError, get_model_config
from anyclip.towers.timm.eva import TimmEva
from anyclip.towers.timm.eva_config import TIMM_EVAS
from anyclip.weights import export_state_dict, load_state_dict

EVA_NAMES = ["EVA01-g-14", "EVA01-g-14-plus", "EVA02-B-16", "EVA02-E-14", "EVA02-E-14-plus", "EVA02-L-14",
             "EVA02-L-14-336", "PE-Core-B-16", "PE-Core-L-14-336", "PE-Core-S-16-384", "PE-Core-T-16-384",
             "PE-Core-bigG-14-448"]
TEXT = {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 1}


def _tiny(name, depth=2, image_size=None):
    """open_clip's config of ``name`` with ``depth`` image blocks and a 1-block text tower."""
    import open_clip
    cfg = copy.deepcopy(open_clip.get_model_config(name))
    cfg["vision_cfg"]["timm_model_kwargs"] = {"depth": depth}
    if image_size is not None:
        cfg["vision_cfg"]["image_size"] = image_size
    cfg["text_cfg"] = dict(TEXT)
    return cfg


@pytest.fixture(scope="module")
def pe_pair():
    cfg = _tiny("PE-Core-T-16-384")
    torch_model = open_clip_model(cfg)
    return torch_model, anyclip_model(torch_model, cfg), cfg


@pytest.mark.parametrize("name", sorted(TIMM_EVAS))
def test_eva_architecture_table_matches_timm(name):
    import timm
    import torch
    from timm.layers import AttentionRope
    from timm.models.eva import EvaAttention, EvaBlockPostNorm
    ours = TIMM_EVAS[name]
    with torch.device("meta"):
        ref = timm.create_model(name, num_classes=16, global_pool=ours.pool)
    block, ident = ref.blocks[0], torch.nn.Identity
    attn, mlp = block.attn, block.mlp
    assert (ours.patch_size, ours.patch_size) == tuple(ref.patch_embed.patch_size)
    assert (ours.image_size, ours.image_size) == tuple(ref.patch_embed.img_size)
    assert (ours.width, ours.depth, ours.heads) == (ref.embed_dim, len(ref.blocks), attn.num_heads)
    assert ours.class_token == (ref.cls_token is not None) and ref.reg_token is None and not ref.no_embed_class
    assert ref.pos_embed.shape[1] == ref.patch_embed.num_patches + ours.prefix_tokens == ref.num_prefix_tokens + (
        ref.patch_embed.num_patches)
    assert ours.pre_norm == (not isinstance(ref.norm_pre, ident)) == (ref.patch_embed.proj.bias is None)
    assert not isinstance(ref.norm, ident) and isinstance(ref.fc_norm, ident) and ref.patch_drop is None
    assert ours.post_norm == isinstance(block, EvaBlockPostNorm)
    assert getattr(block, "gamma_1", None) is None and getattr(block, "gamma_2", None) is None  # no layer scale
    layout = {EvaAttention: "qv_bias" if attn.qkv is not None else "separate", AttentionRope: "fused"}[type(attn)]
    assert ours.attn == layout and attn.head_dim * attn.num_heads == ours.width
    if layout == "qv_bias":
        assert attn.qkv.bias is None and attn.q_bias is not None and attn.v_bias is not None
    elif layout == "separate":
        assert attn.q_proj.bias is not None and attn.k_proj.bias is None and attn.v_proj.bias is not None
    else:
        assert attn.qkv.bias is not None and attn.num_kv_heads == attn.num_heads
    assert isinstance(attn.q_norm, ident) and isinstance(attn.k_norm, ident) and getattr(attn, "gate", None) is None
    assert ours.attn_norm == (not isinstance(attn.norm, ident))
    assert ours.swiglu == (type(mlp).__name__ == "SwiGLU")
    if ours.swiglu:
        assert ours.mlp_width == mlp.fc1_g.out_features == mlp.fc1_x.out_features and not isinstance(mlp.norm, ident)
        assert isinstance(mlp.act, torch.nn.SiLU)
    else:
        assert ours.mlp_width == mlp.fc1.out_features and isinstance(mlp.norm, ident)
        assert type(mlp.act) is torch.nn.GELU and mlp.act.approximate == "none"
    norms = [m for m in ref.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == ours.norm_eps for m in norms)
    assert ours.rope == (ref.rope is not None)
    if ours.rope:
        rope = ref.rope
        assert type(rope).__name__ == "RotaryEmbeddingCat" and not rope.in_pixels and rope.grid_type == "index"
        assert not rope.rotate_half and not attn.rotate_half and rope.temperature == 10000
        assert tuple(rope.ref_feat_shape) == (ours.rope_ref, ours.rope_ref) and rope.grid_offset == ours.rope_offset
        assert rope.grid_indexing == ("xy" if ours.rope_xy else "ij") and not rope.aug_active
    assert (ref.attn_pool is not None) == (ours.pool == "map")
    if ref.attn_pool is not None:
        pool = ref.attn_pool
        assert pool.num_heads == ours.pool_heads and pool.latent_len == 1 and pool.pos_embed is None
        assert pool.mlp.fc1.out_features == int(ours.width * ours.pool_mlp_ratio)
        assert type(pool.mlp.act) is torch.nn.GELU and isinstance(pool.q_norm, ident)


def test_rope_tables_equal_timm():
    """The rotary tables themselves, on a non-square grid with a reference grid, for both axis orders."""
    from timm.layers import RotaryEmbeddingCat

    from anyclip.layers.rope import rope_tables
    for xy, offset in ((False, 0.0), (True, 1.0)):
        ref = RotaryEmbeddingCat(64, in_pixels=False, feat_shape=(5, 7), ref_feat_shape=(16, 16),
                                 grid_offset=offset, grid_indexing="xy" if xy else "ij").get_embed().numpy()
        sin, cos = rope_tables((5, 7), 64, ref_grid=(16, 16), offset=offset, xy=xy)
        np.testing.assert_allclose(np.concatenate([sin, cos], -1), ref, atol=1e-6)


def test_every_eva_config_is_shipped_and_equal():
    import open_clip
    names = sorted(n for n in open_clip.list_models() if n.startswith(("EVA", "PE-Core")))
    assert names == sorted(EVA_NAMES) and set(names) <= set(anyclip.list_models())
    for name in names:
        ours, _ = assert_config_like_open_clip(name, keys=("embed_dim", "custom_text"))
        assert CLIPConfig.from_dict(ours) == get_model_config(name)  # timm_proj null survives the round trip


def test_registry_has_every_eva_pair_with_open_clip_settings():
    theirs = assert_pretrained_like_open_clip(EVA_NAMES)
    assert len(theirs) == 12 and not any(anyclip.weights.get_pretrained_cfg(*pair).quick_gelu for pair in theirs)


def test_other_image_size_is_refused_like_open_clip(pe_pair):
    import torch
    torch_model, model, _ = pe_pair
    images = images_like(224, n=1)
    with pytest.raises(AssertionError), torch.no_grad():  # timm's PatchEmbed checks the input size
        torch_model.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"gives a 14x14 patch grid, but this model expects 384 images"):
        model.encode_image(images)


@pytest.mark.parametrize("name,size", [("EVA02-B-16", 256), ("EVA02-B-16", (160, 224)),
                                       ("PE-Core-T-16-384", (192, 320)), ("PE-Core-bigG-14-448", 224),
                                       ("EVA01-g-14", (168, 210))])
def test_forced_image_size_matches_open_clip(name, size):
    """open_clip's ``force_image_size``: timm's ``set_input_size`` resamples the positions (class token kept)
    and rebuilds the rotary tables for the new grid (same reference grid)."""
    cfg = _tiny(name, depth=1)
    torch_model = open_clip_model(cfg, seed=1)
    model = anyclip.CLIP(CLIPConfig.from_dict(_tiny(name, depth=1, image_size=size)), seed=None)
    load_state_dict(model, torch_state(torch_model), resize_pos_embed=True)  # native positions, resampled
    torch_model.visual.set_input_size(size)
    images = images_like(*(size if isinstance(size, tuple) else (size,)))
    np.testing.assert_allclose(np.asarray(model.encode_image(images, normalize=True)),
                               image_features(torch_model, images), atol=1e-5)


@pytest.mark.parametrize("groups", [0, 1, 2, 3, 4])
def test_lock_image_tower_freezes_timm_groups_like_open_clip(pe_pair, groups):
    for torch_model, model in (pe_pair[:2], _eva_pair()):
        for p in torch_model.parameters():
            p.requires_grad = True
        torch_model.lock_image_tower(unlocked_groups=groups)
        model.lock_image_tower(unlocked_groups=groups)
        theirs, ours = trainable_visual_keys(torch_model, model)
        assert ours == theirs


_EVA = {}


def _eva_pair():
    if not _EVA:
        cfg = _tiny("EVA02-B-16")
        torch_model = open_clip_model(cfg, seed=2)
        _EVA["pair"] = (torch_model, anyclip_model(torch_model, cfg))
    return _EVA["pair"]


def test_weights_round_trip_and_strict_mapping(pe_pair):
    for torch_model, model in (pe_pair[:2], _eva_pair()):
        state, theirs = export_state_dict(model), torch_model.state_dict()
        assert set(state) == set(theirs)
        for key, value in theirs.items():
            np.testing.assert_array_equal(state[key], value.numpy(), err_msg=key)
    from anyclip.weights.mapping import WeightMismatchError
    state = torch_state(pe_pair[0])
    with pytest.raises(WeightMismatchError, match=r"unexpected key 'visual.trunk.blocks.0.attn.q_bias'"):
        load_state_dict(pe_pair[1], {**state, "visual.trunk.blocks.0.attn.q_bias": np.zeros(192, np.float32)})
    state.pop("visual.trunk.norm_pre.weight")
    with pytest.raises(WeightMismatchError, match=r"missing key 'visual.trunk.norm_pre.weight'"):
        load_state_dict(pe_pair[1], state)


def test_tower_serializes_and_runs_in_bfloat16(tmp_path):
    path = tmp_path / "pe-tiny.json"
    path.write_text(json.dumps(_tiny("PE-Core-T-16-384", depth=1, image_size=[64, 96])))
    ref = anyclip.create_model(str(path))
    clone = keras.layers.deserialize(keras.layers.serialize(ref.visual))
    assert isinstance(clone, TimmEva) and clone.config == ref.visual.config
    assert [w.shape for w in clone.weights] == [w.shape for w in ref.visual.weights]
    model = anyclip.create_model(str(path), precision="bf16")
    load_state_dict(model, export_state_dict(ref))
    images = images_like(64, 96)
    want = keras.ops.convert_to_numpy(ref.encode_image(images, normalize=True))
    got = keras.ops.convert_to_numpy(keras.ops.cast(model.encode_image(images, normalize=True), "float32"))
    assert np.abs(got - want).max() < 0.05


@pytest.mark.parametrize("mutate,match", [
    (lambda v: v.update(timm_model_name="eva02_base_patch16_clip_999"),
     r"timm_model_name='eva02_base_patch16_clip_999' .*supported: .*eva02_base_patch16_clip_224"),
    (lambda v: v.update(timm_pool="avg"), r"vision_cfg.timm_pool: eva02_base_patch16_clip_224 .* 'token' only"),
    (lambda v: v.update(timm_proj="linear"), r"vision_cfg.timm_proj: EVA/PE towers support null"),
    (lambda v: v.pop("timm_proj"), r"vision_cfg.timm_proj: .*got 'linear'"),
    (lambda v: v.update(timm_proj="none"), r"vision_cfg.timm_proj: 'none' needs the timm model's width \(768\)"),
    (lambda v: v.update(timm_proj_bias=True), r"vision_cfg.timm_proj_bias"),
    (lambda v: v.update(timm_model_pretrained=True), r"vision_cfg.timm_model_pretrained"),
    (lambda v: v.update(layers=24), r"vision_cfg.layers does not apply to timm towers"),
    (lambda v: v.update(timm_model_kwargs={"depth": 0}), r"vision_cfg.timm_model_kwargs.depth"),
    (lambda v: v.update(timm_model_kwargs={"embed_dim": 8}), r"vision_cfg.timm_model_kwargs"),
    (lambda v: v.update(image_size=8), r"vision_cfg.image_size: 8 is smaller than the patch size 16"),
    (lambda v: v.update(timm_drop_path=0.1), r"vision_cfg.timm_drop_path"),
    (lambda v: v.update(timm_poool="token"), r"unknown key vision_cfg.'timm_poool'; did you mean 'timm_pool'"),
])
def test_config_errors_name_the_key(mutate, match):
    cfg = json.loads(json.dumps(_tiny("EVA02-B-16")))
    mutate(cfg["vision_cfg"])
    with pytest.raises(ConfigError, match=match):
        CLIPConfig.from_dict(cfg)


def test_pe_pool_is_map_only():
    cfg = _tiny("PE-Core-B-16")
    cfg["vision_cfg"]["timm_pool"] = "token"
    with pytest.raises(ConfigError, match=r"vision_cfg.timm_pool: vit_pe_core_base_patch16_224 .* 'map' only"):
        CLIPConfig.from_dict(cfg)
