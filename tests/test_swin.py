"""Swin Transformer tower (timm's SwinTransformer under open_clip's TimmModel head) against open_clip 3.3.0 + timm.

Embedding parity of the shipped config runs in test_parity.py (JAX and torch). Here: the architecture table,
relative position indices and shifted-window masks against timm itself, the shipped config, head variants,
locking, export, and the errors for other image sizes.
"""

import numpy as np
import open_clip
import pytest
from inputs import images_like as _images
from model_pairs import (
    anyclip_model,
    assert_config_like_open_clip,
    assert_export_loads_into_open_clip,
    assert_lock_matches_open_clip,
    image_features,
    model_pair,
    open_clip_model,
    with_vision,
)

import anyclip
from anyclip.models import CLIPConfig, ConfigError
from anyclip.towers.timm.pooled import SWINS
from anyclip.towers.timm.swin import relative_position_index
from anyclip.weights import export_state_dict, load_state_dict

NAME = "swin_base_patch4_window7_224"
TINY = {  # every stage keeps a plain and (where the map is larger than a window) a shifted-window block
    "embed_dim": 32,
    "vision_cfg": {"timm_model_name": NAME, "timm_model_pretrained": False, "timm_pool": "", "timm_proj": "linear",
                   "image_size": 224,
                   "timm_model_kwargs": {"depths": [2, 2, 2, 2], "embed_dim": 16, "num_heads": [1, 2, 2, 4]}},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def pair():
    return model_pair(TINY)


def test_swin_architecture_table_matches_timm():
    import timm
    import torch
    with torch.device("meta"):
        ref = timm.create_model(NAME, num_classes=0)
    ours = SWINS[NAME]
    proj = ref.patch_embed.proj
    assert proj.kernel_size == proj.stride == (ours.patch_size,) * 2 and ref.patch_embed.img_size == (224, 224)
    assert ours.image_size == 224 and ref.patch_embed.strict_img_size
    assert tuple(len(s.blocks) for s in ref.layers) == ours.depths
    assert tuple(s.blocks[0].attn.num_heads for s in ref.layers) == ours.num_heads
    assert tuple(s.dim if i == 0 else s.downsample.out_dim for i, s in enumerate(ref.layers)) == ours.dims
    norms = [ref.patch_embed.norm, ref.norm]
    for i, stage in enumerate(ref.layers):
        assert isinstance(stage.downsample, torch.nn.Identity) == (i == 0)
        if i:
            assert stage.downsample.reduction.bias is None
            norms.append(stage.downsample.norm)
        for block in stage.blocks:
            assert block.attn.window_size == (min(ours.window_size, block.input_resolution[0]),) * 2
            assert block.attn.qkv.bias is not None and block.mlp.fc1.out_features == ours.mlp_ratio * stage.blocks[0].dim
            assert type(block.mlp.act) is torch.nn.GELU and block.mlp.act.approximate == "none"
            assert not block.always_partition and not block.dynamic_mask
            norms += [block.norm1, block.norm2]
    assert all(type(n) is torch.nn.LayerNorm and n.eps == ours.norm_eps for n in norms)
    assert ref.head.global_pool.pool_type == "avg" and ref.num_features == ours.width
    import inspect
    assert inspect.signature(type(ref)).parameters["drop_path_rate"].default == ours.drop_path


@pytest.mark.parametrize("window", [7, 2])
def test_relative_position_index_and_shift_masks_match_timm(window):
    import torch
    from timm.models.swin_transformer import SwinTransformerBlock, get_relative_position_index

    from anyclip.towers.timm.swin import shift_mask
    np.testing.assert_array_equal(relative_position_index(window), get_relative_position_index(window, window).numpy())
    block = SwinTransformerBlock(8, (4 * window, 4 * window), 2, window_size=window, shift_size=window // 2)
    np.testing.assert_array_equal(shift_mask(4 * window, window, window // 2), block.attn_mask.numpy())
    assert block.attn_mask.dtype == torch.float32


def test_swin_config_is_shipped_and_equal():
    assert_config_like_open_clip(NAME)
    assert not [t for m, t in open_clip.list_pretrained() if m == NAME]  # open_clip has no Swin weights


@pytest.mark.parametrize("changes", [None, {"timm_proj": "mlp", "timm_proj_bias": True, "timm_pool": "avg"}])
def test_head_variants_equal_open_clip(pair, changes):
    torch_model, model = pair
    if changes is not None:
        cfg = with_vision(TINY, **changes)
        torch_model = open_clip_model(cfg, seed=2)
        model = anyclip_model(torch_model, cfg)
    images = _images(224)
    np.testing.assert_allclose(np.asarray(model.encode_image(images, normalize=True)),
                               image_features(torch_model, images), atol=1e-5)


def test_other_image_sizes_are_refused(pair):
    import torch
    torch_model, model = pair
    with pytest.raises(AssertionError), torch.no_grad():  # timm's PatchEmbed checks the input size
        torch_model.encode_image(torch.zeros(1, 3, 256, 256))
    with pytest.raises(ValueError, match=r"image of \(256, 256\) pixels, but swin_base_patch4_window7_224 takes "
                                         r"224x224 images only"):
        model.encode_image(np.zeros((1, 256, 256, 3), np.float32))
    with pytest.raises(ConfigError, match=r"vision_cfg.image_size: swin_base_patch4_window7_224 runs at 224 px only"):
        CLIPConfig.from_dict(with_vision(TINY, image_size=256))


@pytest.mark.parametrize("kwargs,match", [
    ({"embed_dim": 0}, r"timm_model_kwargs.embed_dim: must be a positive integer, got 0"),
    ({"embed_dim": 16.0}, r"timm_model_kwargs.embed_dim: must be a positive integer, got 16.0"),
    ({"num_heads": [1, 2, 4]}, r"timm_model_kwargs.num_heads: must be 4 positive integers"),
    ({"num_heads": [1, 2, False, 4]}, r"timm_model_kwargs.num_heads: must be 4 positive integers"),
    ({"embed_dim": 16, "num_heads": [1, 2, 3, 4]}, r"timm_model_kwargs.num_heads: each stage's width "
                                                    r"\(16, 32, 64, 128\) must divide by its heads \(1, 2, 3, 4\)"),
    ({"window_size": 8}, r"timm_model_kwargs: only \['depths', 'embed_dim', 'num_heads'\] may be overridden"),
])
def test_architecture_overrides_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CLIPConfig.from_dict(with_vision(TINY, timm_model_kwargs=kwargs))


@pytest.mark.parametrize("depths", [[2, 0, 2, 2], [2, True, 2, 2], [2, 2, 2]])
def test_depths_must_be_one_positive_integer_per_stage(depths):
    with pytest.raises(ConfigError, match=r"vision_cfg.timm_model_kwargs.depths: must be 4 positive integers"):
        CLIPConfig.from_dict(with_vision(TINY, timm_model_kwargs={"depths": depths}))


def test_lock_freezes_the_groups_open_clip_freezes(pair):
    assert_lock_matches_open_clip(*pair, [0, 1, 2, 5, 9, 100])


@pytest.mark.slow  # Swin export: full sweep (default_tier parity and the tower contract cover Swin)
def test_export_loads_strictly_into_open_clip_and_training_mode_keeps_values(pair):
    _, model = pair
    images = _images(224)
    assert_export_loads_into_open_clip(pair, TINY, images)
    plain = anyclip.CLIP(CLIPConfig.from_dict(with_vision(TINY, timm_drop_path=0.0)), seed=None)
    load_state_dict(plain, export_state_dict(model))
    np.testing.assert_allclose(np.asarray(plain.visual(images, training=True)),
                               np.asarray(plain.encode_image(images)), atol=1e-5)
