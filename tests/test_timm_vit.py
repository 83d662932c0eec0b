"""timm ViT towers beyond SigLIP (ViT-M gap, relpos ViT, MobileCLIP's vit_base_mci_224, MobileCLIP2's ViT-L/14)
and open_clip's ``TimmModel`` pool / projection rules, against open_clip 3.3.0 + timm on the same random weights.

Embedding parity of the shipped configs runs in test_parity.py (JAX and torch). Here: the architecture table
against timm itself (meta device), every ``timm_pool`` x ``timm_proj`` head kind on 1-block towers (JAX in
process, torch in a subprocess), the heads open_clip cannot build (refused here too), LiT locking, forced
image sizes, stochastic depth, and the shipped configs.
"""

import json

import numpy as np
import pytest
from backend_runner import start_in_backend
from inputs import images_like
from model_pairs import (
    assert_config_like_open_clip,
    image_features,
    open_clip_model,
    torch_state,
    trainable_visual_keys,
)
from reference import encode_case

import anyclip
from anyclip.models import CLIPConfig, ConfigError, get_model_config
from anyclip.towers.timm.vit_config import TIMM_VITS, resolve_head

TOL = 1e-5
TEXT = {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 4, "layers": 1}
GAP, RELPOS, MCI, L14 = ("vit_medium_patch16_gap_256", "vit_relpos_medium_patch16_cls_224", "vit_base_mci_224",
                         "vit_large_patch14_clip_224")
SIGLIP = "vit_base_patch32_siglip_256"
SHIPPED = ["vit_medium_patch16_gap_256", "vit_relpos_medium_patch16_cls_224", "MobileCLIP-B", "MobileCLIP2-B",
           "MobileCLIP2-L-14", "nllb-clip-base-siglip", "nllb-clip-large-siglip", "ViTamin-S", "ViTamin-B-LTT",
           "ViTamin-L2-384", "ViTamin-XL-384"]
# id -> (timm model, timm_pool, timm_proj, timm_proj_bias, embed_dim): every head kind open_clip builds.
HEADS = {
    "gap-default-linear": (GAP, "", "linear", False, 48),
    "gap-avg-linear-bias": (GAP, "avg", "linear", True, 48),
    "gap-max-mlp": (GAP, "max", "mlp", False, 48),
    "gap-avgmax-classifier": (GAP, "avgmax", None, False, 48),
    "gap-map-none": (GAP, "map", "none", False, 512),
    "relpos-default-linear": (RELPOS, "", "linear", False, 48),
    "relpos-avg-classifier": (RELPOS, "avg", "", False, 48),
    "relpos-token-mlp-bias": (RELPOS, "token", "mlp", True, 48),
    "mci-token-classifier": (MCI, "token", None, False, 48),
    "mci-avg-classifier": (MCI, "avg", None, False, 48),  # built with avg: fc_norm after the pool
    "mci-default-linear": (MCI, "", "linear", True, 48),
    "l14-token-classifier": (L14, "token", None, False, 48),
    "l14-max-none": (L14, "max", "none", False, 1024),
    "siglip-avg-linear": (SIGLIP, "avg", "linear", False, 48),  # attention pool removed by reset_classifier
    "siglip-map-linear-bias": (SIGLIP, "map", "linear", True, 48),
    "siglip-avg-none": (SIGLIP, "avg", "none", False, 768),  # built with avg: fc_norm after the pool
}
SIZES = {GAP: 256, RELPOS: 224, MCI: 224, L14: 224, SIGLIP: 256}


def _cfg(model, pool, proj, bias, embed_dim, depth=1, size=None, **vision):
    return {"embed_dim": embed_dim, "custom_text": True, "text_cfg": TEXT,
            "vision_cfg": {"timm_model_name": model, "timm_pool": pool, "timm_proj": proj, "timm_proj_bias": bias,
                           "image_size": size or SIZES[model], "timm_model_kwargs": {"depth": depth}, **vision}}


def _open_clip_model(cfg, seed=0):
    return open_clip_model(cfg, seed, output_dict=True)


@pytest.mark.parametrize("name", sorted(n for n, a in TIMM_VITS.items() if a.stem != "vitamin"))  # test_vitamin
def test_architecture_table_matches_timm(name):
    import timm
    import torch
    from timm.layers import LayerScale
    with torch.device("meta"):
        ref = timm.create_model(name)
    ours, block = TIMM_VITS[name], ref.blocks[0]
    stride = ref.patch_embed.feat_ratio() if ours.stem == "mci" else ref.patch_embed.patch_size[0]
    assert ours.stem == ("mci" if type(ref.patch_embed).__name__ == "HybridEmbed" else "patch")
    assert (ours.patch_size, ours.image_size) == (stride, ref.patch_embed.img_size[0])
    assert (ours.width, ours.depth, ours.heads) == (ref.embed_dim, len(ref.blocks), block.attn.num_heads)
    assert ours.mlp_width == block.mlp.fc1.out_features and ours.default_pool == ref.global_pool
    assert ours.class_token == (ref.cls_token is not None) and getattr(ref, "reg_token", None) is None
    assert ours.no_embed_class == getattr(ref, "no_embed_class", False)
    assert ours.qkv_bias == (block.attn.qkv.bias is not None)
    assert ours.layer_scale == isinstance(block.ls1, LayerScale)
    if ours.layer_scale:
        assert float(timm.create_model(name, depth=1).blocks[0].ls1.gamma[0].detach()) == pytest.approx(1e-6)
    assert ours.pre_norm == (not isinstance(getattr(ref, "norm_pre", torch.nn.Identity()), torch.nn.Identity))
    assert ours.pre_norm == (ours.stem == "patch" and ref.patch_embed.proj.bias is None)
    assert all(n.eps == ours.norm_eps for n in (block.norm1, block.norm2))
    assert resolve_head(ours, ours.default_pool, "none").fc_norm == (not isinstance(ref.fc_norm, torch.nn.Identity))
    assert isinstance(ref.norm, torch.nn.Identity) == resolve_head(ours, ours.default_pool, "none").fc_norm
    tanh = type(block.mlp.act).__name__ == "GELUTanh" or getattr(block.mlp.act, "approximate", "none") == "tanh"
    assert ours.gelu_tanh == tanh and type(block.mlp.act).__name__ in ("GELU", "GELUTanh")
    rel_pos = getattr(block.attn, "rel_pos", None)
    assert ours.rel_pos_dim == (rel_pos.mlp.fc1.out_features if rel_pos is not None else None)
    assert (ours.rel_pos_dim is None) == (getattr(ref, "pos_embed", None) is not None)
    if rel_pos is not None:
        assert rel_pos.mode == "cr" and rel_pos.prefix_tokens == int(ours.class_token) and ref.shared_rel_pos is None
    if ours.stem == "mci":
        convs = [m.conv for m in ref.patch_embed.backbone]
        assert [(c.kernel_size[0], c.stride[0], c.padding[0], c.out_channels) for c in convs] == [
            (4, 4, 0, 192), (2, 2, 0, 192), (2, 2, 0, 768)]
        assert [type(m.bn).__name__ for m in ref.patch_embed.backbone] == ["BatchNormAct2d"] * 2 + ["Sequential"]
        assert all(type(m.bn.act).__name__ == "GELU" and m.bn.eps == 1e-5 for m in list(ref.patch_embed.backbone)[:2])


@pytest.fixture(scope="module")
def head_cases(tmp_path_factory):
    """Each head case saved as an open_clip folder (random weights, inputs, open_clip's embeddings)."""
    from safetensors.numpy import save_file
    root = tmp_path_factory.mktemp("timm-heads")
    folders = {}
    for i, (case, values) in enumerate(HEADS.items()):
        cfg = _cfg(*values)
        torch_model = _open_clip_model(cfg, seed=i)
        folder = root / case
        folder.mkdir()
        save_file(torch_state(torch_model), str(folder / "open_clip_model.safetensors"))
        (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
        images = images_like(SIZES[values[0]], seed=i)
        np.savez(folder / "case.npz", images=images, image_ref=image_features(torch_model, images))
        folders[case] = folder
    job = start_in_backend("torch", "test_timm_vit:torch_worker", {}, {"folders": [str(f) for f in folders.values()]})
    yield folders, job
    job.kill()


def _run(folder):
    return encode_case(folder, text=False)["image"]


def torch_worker(arrays, params):
    """Subprocess entry (``backend_runner``): every head case's image embeddings under torch."""
    from pathlib import Path
    return {str(i): _run(Path(folder)) for i, folder in enumerate(params["folders"])}


@pytest.mark.parametrize("case", list(HEADS))
def test_head_parity_jax(head_cases, case):
    folder = head_cases[0][case]
    ref = np.load(folder / "case.npz")["image_ref"]
    assert ref.ndim == 2 and np.abs(_run(folder) - ref).max() <= TOL


def test_head_parity_torch(head_cases):
    folders, job = head_cases
    out = job.result(timeout=900)
    for i, folder in enumerate(folders.values()):
        assert np.abs(out[str(i)] - np.load(folder / "case.npz")["image_ref"]).max() <= TOL, folder.name


@pytest.mark.parametrize("case", ["gap-default-linear", "mci-token-classifier", "relpos-token-mlp-bias"])
def test_weights_round_trip_to_open_clip(head_cases, case):
    from safetensors.numpy import load_file

    from anyclip.weights import export_state_dict
    folder = head_cases[0][case]
    theirs = load_file(str(folder / "open_clip_model.safetensors"))
    state = export_state_dict(anyclip.create_model(f"local-dir:{folder}"))
    assert set(state) == set(theirs)
    for key, value in theirs.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)


@pytest.mark.parametrize("case", ["relpos-token-mlp-bias", "mci-avg-classifier", "gap-map-none"])
def test_bfloat16_runs_close_to_float32(head_cases, case):
    import keras
    folder = head_cases[0][case]
    images = np.load(folder / "case.npz")["images"]
    ref = _run(folder)
    model = anyclip.create_model(f"local-dir:{folder}", precision="bf16")
    out = keras.ops.convert_to_numpy(keras.ops.cast(model.encode_image(images, normalize=True), "float32"))
    assert np.abs(out - ref).max() < 0.05


@pytest.mark.parametrize("model,pool,proj,match", [
    (GAP, "token", "linear", r"'token' needs a class token"),
    (GAP, "map", "linear", r"'map' with timm_proj 'linear'/'mlp' needs a model built with the attention pool"),
    (RELPOS, "map", None, r"this timm model accepts '', 'avg', 'token', got 'map'"),
    (RELPOS, "max", "linear", r"this timm model accepts '', 'avg', 'token', got 'max'"),
    (MCI, "abs_attn", "linear", r"'abs_attn' needs a 2-D feature map"),
    (L14, "", None, r"'' without an extra projection leaves the tokens unpooled"),
    (RELPOS, "", "none", r"'' without an extra projection leaves the tokens unpooled"),
])
def test_heads_open_clip_cannot_build_are_refused(model, pool, proj, match):
    cfg = _cfg(model, pool, proj, False, 1024 if model == L14 else 512)
    try:
        torch_model = _open_clip_model(cfg)
    except AssertionError:
        pass  # timm refuses the pool
    else:  # open_clip gives the unpooled tokens, not an embedding
        assert image_features(torch_model, images_like(SIZES[model], n=1)).ndim == 3
    with pytest.raises(ConfigError, match=r"vision_cfg.timm_pool: " + match):
        CLIPConfig.from_dict(cfg)


@pytest.mark.parametrize("mutate,match", [
    (lambda v: v.update(timm_proj="conv"), r"vision_cfg.timm_proj: must be 'none', 'linear', 'mlp', '' or null"),
    (lambda v: v.update(timm_drop_path=1.0), r"vision_cfg.timm_drop_path: must be a rate in \[0, 1\) or null"),
    (lambda v: v.update(timm_drop=0.1), r"vision_cfg.timm_drop: dropout in timm towers is not supported"),
    (lambda v: v.update(timm_pool=None), r"vision_cfg.timm_pool: this timm model accepts"),
    (lambda v: v.update(timm_model_name="vit_relpos_base_patch16_224"), r"not one of the timm vision towers"),
    (lambda v: v.update(timm_model_kwargs={"depth": True}), r"timm_model_kwargs.depth: must be a positive integer"),
])
def test_config_errors_name_the_key(mutate, match):
    cfg = _cfg(RELPOS, "", "linear", False, 48)
    mutate(cfg["vision_cfg"])
    with pytest.raises(ConfigError, match=match):
        CLIPConfig.from_dict(cfg)


@pytest.mark.parametrize("model,groups", [(MCI, 0), (MCI, 1), (MCI, 2), (MCI, 3), (RELPOS, 1), (RELPOS, 2),
                                          (GAP, 2), (L14, 3), (L14, 9)])
def test_lock_image_tower_freezes_timm_groups_like_open_clip(model, groups):
    cfg = _cfg(model, "token" if model != GAP else "avg", None, False, 48, depth=2)
    torch_model = _open_clip_model(cfg)
    torch_model.lock_image_tower(unlocked_groups=groups, freeze_bn_stats=True)
    model_ = anyclip.CLIP(CLIPConfig.from_dict(cfg), seed=None)
    model_.lock_image_tower(unlocked_groups=groups, freeze_bn_stats=True)
    theirs, ours = trainable_visual_keys(torch_model, model_)
    assert ours == theirs
    frozen_bn = {type(m).__name__ for m in torch_model.visual.trunk.patch_embed.modules()} & {"FrozenBatchNorm2d"}
    assert [s.bn.frozen for s in model_.visual.backbone[:2]] == [bool(frozen_bn)] * (2 if model == MCI else 0)


@pytest.mark.parametrize("model,size", [(RELPOS, 160), (MCI, 288), (L14, 168), (GAP, 192)])
def test_forced_image_size_like_open_clip(model, size):
    """A checkpoint made at the native size loaded into a tower built for ``size`` (open_clip force_image_size)."""
    from anyclip.weights import load_state_dict
    cfg = _cfg(model, "token" if model != GAP else "avg", None, False, 48, depth=2)
    torch_model = _open_clip_model(cfg, seed=3)
    state = torch_state(torch_model)
    torch_model.visual.set_input_size(size)
    ours = anyclip.CLIP(CLIPConfig.from_dict({**cfg, "vision_cfg": {**cfg["vision_cfg"], "image_size": size}}),
                        seed=None)
    load_state_dict(ours, state, resize_pos_embed=True)
    images = images_like(size, seed=3)
    np.testing.assert_allclose(np.asarray(ours.encode_image(images, normalize=True)),
                               image_features(torch_model, images), atol=TOL)


def test_stochastic_depth_in_training_only():
    """timm's DropPath: per-sample, each residual branch kept with probability 1 - rate and scaled by 1 / keep."""
    import keras

    from anyclip.towers.timm.vit_blocks import TimmBlock
    block = TimmBlock(16, 2, 32, drop_path=0.5, seed=1)
    x = keras.random.normal((256, 3, 16), seed=0)
    infer = keras.ops.convert_to_numpy(block(x))
    np.testing.assert_array_equal(infer, keras.ops.convert_to_numpy(block(x, training=False)))
    train = keras.ops.convert_to_numpy(block(x, training=True))
    x = keras.ops.convert_to_numpy(x)
    skipped = np.all(np.abs(train - x) < 1e-6, axis=(1, 2))  # both branches dropped: the identity
    assert 0.15 < skipped.mean() < 0.35  # 1/4 expected
    assert not np.allclose(train, infer)
    rates = [b.drop_path for b in anyclip.CLIP(CLIPConfig.from_dict(
        _cfg(L14, "token", None, False, 48, depth=3, timm_drop_path=0.1)), seed=None).visual.blocks]
    assert rates == pytest.approx([0.0, 0.05, 0.1])  # timm's linear ramp over the blocks


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_equal_open_clip(name):
    cfg = get_model_config(name)
    ours, theirs = assert_config_like_open_clip(name, keys=())
    for key in ("embed_dim", "custom_text", "init_logit_bias"):
        assert ours.get(key) == theirs.get(key, ours.get(key)), (name, key)
    assert CLIPConfig.from_dict(ours) == cfg
