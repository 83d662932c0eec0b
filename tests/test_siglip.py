"""SigLIP / SigLIP2: timm ViT towers with a MAP head and the SigLIP text options, against open_clip 3.3.0 + timm.

Embedding parity of every shipped SigLIP config runs in test_parity.py (JAX and torch). Here: the timm
architecture table against timm itself, the shipped configs and registry pairs against open_clip's, sigmoid
(and softmax) probabilities, image sizes other than the native one, LiT locking, and config errors.
"""

import json

import numpy as np
import open_clip
import pytest
from model_pairs import (
    anyclip_model,
    assert_config_like_open_clip,
    assert_pretrained_like_open_clip,
    open_clip_model,
    torch_state,
    trainable_visual_keys,
)

import anyclip
import anyclip.weights
from anyclip.models import CLIPConfig, ConfigError, get_model_config
from anyclip.towers.timm.vit_config import TIMM_VITS
from anyclip.weights import export_state_dict, load_state_dict

SIGLIP_NAMES = sorted(n for n in open_clip.list_models() if "SigLIP" in n and n.startswith("ViT-"))
# A 1-block SigLIP2-style model: B/32 tower (tanh GELU) at 256 px, tiny text tower with the SigLIP options.
TINY = {
    "embed_dim": 768, "init_logit_bias": -10, "custom_text": True,
    "vision_cfg": {"image_size": 256, "timm_model_name": "vit_base_patch32_siglip_256", "timm_model_pretrained": False,
                   "timm_pool": "map", "timm_proj": "none", "timm_model_kwargs": {"depth": 2}},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 768, "heads": 12, "layers": 1,
                 "no_causal_mask": True, "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": 1e-6},
                 "act_kwargs": {"approximate": "tanh"}},
}


def _open_clip_model(cfg=TINY, seed=0):
    return open_clip_model(cfg, seed, output_dict=True)


def _inputs(size=256, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((3, size, size, 3)).astype(np.float32)
    tokens = rng.integers(1, 1000, size=(4, 16)).astype(np.int32)
    tokens[1, 9:] = 0  # padding, as the SigLIP tokenizers pad to the context length
    return images, tokens


@pytest.fixture(scope="module")
def pair():
    torch_model = _open_clip_model()
    return torch_model, anyclip_model(torch_model, TINY)


@pytest.mark.parametrize("name", sorted(n for n in TIMM_VITS if "siglip" in n))  # the others: test_timm_vit.py
def test_timm_architecture_table_matches_timm(name):
    import timm
    import torch
    with torch.device("meta"):
        ref = timm.create_model(name, num_classes=0, global_pool="map")
    ours = TIMM_VITS[name]
    block = ref.blocks[0]
    assert (ours.patch_size, ours.patch_size) == tuple(ref.patch_embed.patch_size)
    assert (ours.image_size, ours.image_size) == tuple(ref.patch_embed.img_size)
    assert (ours.width, ours.depth, ours.heads) == (ref.embed_dim, len(ref.blocks), block.attn.num_heads)
    assert ours.mlp_width == block.mlp.fc1.out_features == ref.attn_pool.mlp.fc1.out_features
    assert ref.cls_token is None and ref.reg_token is None and ref.pos_embed.shape[1] == ref.patch_embed.num_patches
    assert isinstance(ref.norm_pre, torch.nn.Identity) and isinstance(ref.fc_norm, torch.nn.Identity)
    assert all(n.eps == 1e-6 for n in (block.norm1, block.norm2, ref.norm, ref.attn_pool.norm))
    tanh = type(block.mlp.act).__name__ == "GELUTanh" or getattr(block.mlp.act, "approximate", "none") == "tanh"
    assert ours.gelu_tanh == tanh and type(ref.attn_pool.mlp.act) is type(block.mlp.act)
    assert ref.attn_pool.latent_len == 1 and isinstance(ref.attn_pool.q_norm, torch.nn.Identity)


def test_every_siglip_config_is_shipped_and_equal():
    assert len(SIGLIP_NAMES) == 26
    for name in SIGLIP_NAMES:
        assert_config_like_open_clip(name, keys=("embed_dim", "init_logit_bias", "custom_text"))


def test_registry_has_every_siglip_pair_with_open_clip_settings():
    theirs = assert_pretrained_like_open_clip(SIGLIP_NAMES)
    assert len(theirs) == 26
    for model, tag in theirs:
        entry = anyclip.weights.get_pretrained_cfg(model, tag)
        assert not entry.quick_gelu and entry.preprocess.mean == (0.5, 0.5, 0.5)
        assert entry.preprocess.resize_mode == "squash"


def test_sigmoid_and_softmax_probabilities_equal_open_clip(pair):
    import torch
    torch_model, model = pair
    images, tokens = _inputs()
    with torch.no_grad():
        out = torch_model(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(tokens).long())
        logits = out["logit_scale"] * out["image_features"] @ out["text_features"].T + out["logit_bias"]
        sigmoid, softmax = torch.sigmoid(logits).numpy(), logits.softmax(dim=-1).numpy()
    ours, _ = model.get_logits(images, tokens)
    ours = np.asarray(ours, dtype=np.float64)
    np.testing.assert_allclose(ours, logits.numpy(), atol=2e-5)
    from anyclip.zero_shot import zero_shot_probs
    np.testing.assert_allclose(zero_shot_probs(model, images, tokens, "auto"), sigmoid, atol=1e-5)  # SigLIP: sigmoid
    np.testing.assert_allclose(zero_shot_probs(model, images, tokens, "softmax"), softmax, atol=1e-5)
    assert 0.05 < sigmoid.min() and sigmoid.max() < 0.95  # probabilities away from 0 and 1: a real comparison


def test_other_image_size_is_refused_like_open_clip(pair):
    import torch
    torch_model, model = pair
    images, _ = _inputs(size=224)
    with pytest.raises(AssertionError), torch.no_grad():  # timm's PatchEmbed checks the input size
        torch_model.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"gives a 7x7 patch grid, but this model expects 256 images"):
        model.encode_image(images)
    wide = np.zeros((1, 128, 512, 3), np.float32)  # 4x16 patches: the 256 px model's count of 64, another shape
    with pytest.raises(ValueError, match=r"gives a 4x16 patch grid"):
        model.encode_image(wide)


@pytest.mark.parametrize("size", [384, 160])
def test_forced_image_size_resizes_positions_like_open_clip(pair, size):
    """open_clip's ``force_image_size`` on a timm tower: ``set_input_size`` resamples the position embeddings."""
    import torch
    torch_model = _open_clip_model(seed=1)
    model = anyclip.CLIP(CLIPConfig.from_dict({**TINY, "vision_cfg": {**TINY["vision_cfg"], "image_size": size}}),
                         seed=None)
    load_state_dict(model, torch_state(torch_model), resize_pos_embed=True)  # 256 px positions, resampled
    torch_model.visual.set_input_size(size)
    images, _ = _inputs(size=size)
    with torch.no_grad():
        ref = torch_model.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2), normalize=True).numpy()
    np.testing.assert_allclose(np.asarray(model.encode_image(images, normalize=True)), ref, atol=1e-5)


@pytest.mark.parametrize("groups", [0, 1, 2, 3])
def test_lock_image_tower_freezes_timm_groups_like_open_clip(groups):
    torch_model = _open_clip_model()
    torch_model.lock_image_tower(unlocked_groups=groups)
    model = anyclip_model(torch_model, TINY)
    model.lock_image_tower(unlocked_groups=groups)
    theirs, ours = trainable_visual_keys(torch_model, model)
    assert ours == theirs


def test_weights_round_trip_to_open_clip(pair):
    torch_model, model = pair
    state = export_state_dict(model)
    theirs = torch_model.state_dict()
    assert set(state) == set(theirs)
    for key, value in theirs.items():
        np.testing.assert_array_equal(state[key], value.numpy(), err_msg=key)


@pytest.mark.parametrize("mutate,match", [
    (lambda c: c["vision_cfg"].update(timm_model_name="vit_base_patch16_siglip_999"),
     r"timm_model_name='vit_base_patch16_siglip_999' .*supported: .*vit_base_patch16_siglip_224"),
    (lambda c: c["vision_cfg"].update(timm_pool="token"), r"vision_cfg.timm_pool: 'token' needs a class token"),
    (lambda c: c["vision_cfg"].update(timm_model_pretrained=True), r"vision_cfg.timm_model_pretrained"),
    (lambda c: c["vision_cfg"].update(width=1024), r"vision_cfg.width does not apply to timm towers"),
    (lambda c: c["vision_cfg"].update(timm_model_kwargs={"depth": 2, "embed_dim": 8}), r"timm_model_kwargs"),
    (lambda c: c.update(embed_dim=512), r"vision_cfg.timm_proj: 'none' needs the timm model's width \(768\)"),
    (lambda c: c["text_cfg"].update(proj_type="none", width=512, heads=8), r"text_cfg.proj_type: 'none' needs"),
    (lambda c: c["text_cfg"].update(norm_kwargs={"eps": 1e-6, "bias": False}), r"text_cfg.norm_kwargs"),
    (lambda c: c["text_cfg"].update(act_kwargs={"approximate": "sigmoid"}), r"text_cfg.act_kwargs.approximate"),
    (lambda c: c.update(quick_gelu=True), r"text_cfg.act_kwargs: QuickGELU takes no options"),
    (lambda c: c["vision_cfg"].pop("timm_model_name") and c["vision_cfg"].update(timm_pool="map", layers=1),
     r"vision_cfg.timm_pool is only used by timm vision towers"),
])
def test_config_errors_name_the_key(mutate, match):
    cfg = json.loads(json.dumps(TINY))
    mutate(cfg)
    with pytest.raises(ConfigError, match=match):
        CLIPConfig.from_dict(cfg)


def test_config_round_trips():
    for name in ("ViT-B-16-SigLIP", "ViT-SO400M-16-SigLIP-i18n-256", "ViT-gopt-16-SigLIP2-384"):
        cfg = get_model_config(name)
        assert CLIPConfig.from_dict(cfg.to_dict()) == cfg


TOKENIZER_TEXTS = [
    "a photo of a cat", "", "A DIAGRAM of the   water cycle, with arrows!", "  leading and trailing  ",
    "it's a dog's life: (really) [sic] {ok}", "café & co — naïve “quotes” and ‘more’", "emoji 🐈‍⬛ 日本語 текст",
    "tab\tnew\nline\r\nend", "under_score-hyphen/slash\\back", "ALL CAPS and MiXeD", "1,234.56 and 7/8",
    " ".join(["a very long caption that goes on"] * 20),
]


def _unigram_tokenizer(folder, gemma_like: bool):
    """A small SentencePiece-style (Unigram, ``▁`` word marker) tokenizer, built offline in ``folder``.

    T5-like (SigLIP): pad 0, eos 1, unk 2, eos appended. Gemma-like (SigLIP2): pad 0, eos 1, bos 2, unk 3, eos
    appended, no bos (open_clip's ``add_bos_token=False, add_eos_token=True``).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    specials = ["<pad>", "</s>", "<bos>", "<unk>"] if gemma_like else ["<pad>", "</s>", "<unk>"]
    words = ["▁a", "▁photo", "▁of", "▁the", "▁cat", "▁dog", "▁water", "▁cycle", "▁with", "▁and", "▁life", "▁co",
             "▁very", "▁long", "▁caption", "▁that", "▁goes", "▁on", "s", "ing", "▁"]
    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789éïçа日本語"))
    vocab = [(t, 0.0) for t in specials] + [(w, -1.0 - 0.1 * i) for i, w in enumerate(words)]
    vocab += [(c, -10.0) for c in chars]
    tok = Tokenizer(models.Unigram(vocab, unk_id=specials.index("<unk>")))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    extra = {"bos_token": "<bos>"} if gemma_like else {}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   **extra)
    fast.save_pretrained(folder)


@pytest.mark.parametrize("name", ["ViT-B-16-SigLIP", "ViT-B-16-SigLIP2"])
def test_siglip_tokenizer_from_local_dir_matches_open_clip(name, tmp_path, monkeypatch):
    """``get_tokenizer("local-dir:...")`` of a SigLIP config: HF tokenizer, ``canonicalize`` cleaning, 64 tokens."""
    import open_clip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _unigram_tokenizer(tmp_path, gemma_like=name.endswith("2"))
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": open_clip.get_model_config(name)}))
    ours = anyclip.get_tokenizer(f"local-dir:{tmp_path}")
    ref = open_clip.get_tokenizer(f"local-dir:{tmp_path}")
    got = ours(TOKENIZER_TEXTS)
    assert got.shape == (len(TOKENIZER_TEXTS), 64) and got.dtype == np.int32
    np.testing.assert_array_equal(got, ref(TOKENIZER_TEXTS).numpy())
    for context_length in (16, 3):
        np.testing.assert_array_equal(ours(TOKENIZER_TEXTS, context_length),
                                      ref(TOKENIZER_TEXTS, context_length).numpy())
    assert (got[:, -1] == 0).sum() > 0 and (got == 1).sum() >= len(TOKENIZER_TEXTS) - 1  # padded rows, eos ids
