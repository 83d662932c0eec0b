"""Config schema, registry completeness, model API, serialization and bad inputs."""

import json

import keras
import numpy as np
import open_clip
import pytest
from model_pairs import assert_config_like_open_clip, assert_pretrained_like_open_clip

import anyclip
from anyclip.models.config import CLIPConfig, get_model_config
from anyclip.towers.config import ConfigError
from anyclip.towers.openai.text_transformer import needed_length

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture
def tiny_json(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


ANYCLIP_OWN_MODELS = ("anyclip-shapes",)  # anyclip's own configs (parity-tested through open_clip.CLIP)


def _open_clip_native_configs():
    import open_clip
    names = []
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name)
        vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
        if (isinstance(vision.get("layers"), (int, list)) and not vision.get("timm_model_name")
                and not text.get("hf_model_name")):  # CoCa's decoder (multimodal_cfg) is native too
            names.append(name)
    return names


def _shipped_open_clip_models():
    """anyclip's configs taken from open_clip (each family's own test file checks its members)."""
    return [n for n in anyclip.list_models() if n not in ANYCLIP_OWN_MODELS]


def test_every_native_vit_config_is_shipped_and_equal():
    import open_clip
    names = _open_clip_native_configs()
    assert len(names) == 58  # 45 ViTs, 10 ModifiedResNets, 3 CoCa
    assert set(names) <= set(anyclip.list_models())
    assert set(_shipped_open_clip_models()) <= set(open_clip.list_models())
    for name in names:  # a null (ResNet patch_size) means unset
        ours, theirs = assert_config_like_open_clip(name, null_means_unset=True)
        assert ours["quick_gelu"] == theirs.get("quick_gelu", False)


def test_registry_has_every_pretrained_pair_with_open_clip_settings():
    theirs = assert_pretrained_like_open_clip(_shipped_open_clip_models())
    assert sorted(anyclip.list_pretrained()) == sorted(theirs + [("anyclip-shapes", "v1")])
    assert sorted(anyclip.list_pretrained_models_by_tag("openai")) == sorted(m for m, t in theirs if t == "openai")


@pytest.mark.parametrize("mutate,match", [
    (lambda c: c["vision_cfg"].update(widht=3), r"unknown key vision_cfg.'widht'; did you mean 'width'"),
    (lambda c: c.update(emb_dim=3), r"unknown key config.'emb_dim'"),
    (lambda c: c["vision_cfg"].update(width=-1), r"vision_cfg.width: must be a positive integer"),
    (lambda c: c["vision_cfg"].update(width=True), r"vision_cfg.width: must be a positive integer"),
    (lambda c: c["vision_cfg"].update(head_width=7), r"not divisible by head_width 7"),
    (lambda c: c["text_cfg"].update(pool_type="mean"), r"text_cfg.pool_type"),
    (lambda c: c["vision_cfg"].update(timm_model_name="vit_base"), r"timm vision towers"),
    (lambda c: c.update(text_cfg={"hf_model_name": "no/such-model"}), r"text_cfg.hf_model_name='no/such-model'"),
    (lambda c: c["vision_cfg"].update(layers=[3, 4, 6]), r"vision_cfg.layers: a list selects the ModifiedResNet"),
    (lambda c: c.pop("text_cfg"), r"missing required key 'text_cfg'"),
    (lambda c: c["vision_cfg"].update(patch_dropout=1.5), r"patch_dropout"),
])
def test_config_errors_name_the_key(mutate, match):
    cfg = json.loads(json.dumps(TINY))
    mutate(cfg)
    with pytest.raises(ConfigError, match=match):
        CLIPConfig.from_dict(cfg)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        anyclip.create_model(str(bad))
    with pytest.raises(ConfigError, match="Did you mean: ViT-B-32-quickgelu"):
        get_model_config("ViT-B-32-quickgelo")


def test_two_models_are_independent(tiny_json):
    a = anyclip.create_model(tiny_json)
    b = anyclip.create_model(tiny_json)
    a.logit_scale.assign(0.0)
    assert float(keras.ops.convert_to_numpy(b.logit_scale)) == pytest.approx(np.log(1 / 0.07), rel=1e-6)
    assert a.visual.positional_embedding is not b.visual.positional_embedding


def test_text_truncation_gives_the_full_length_result(tiny_json):
    model = anyclip.create_model(tiny_json)
    rng = np.random.default_rng(0)
    ids = np.zeros((3, 77), np.int32)
    for row, n in enumerate((2, 9, 77)):
        ids[row, :n] = rng.integers(1, 49000, n)
        ids[row, n - 1] = 49407
    assert needed_length(ids[:2], model.config.text_cfg) == 16
    full = keras.ops.convert_to_numpy(model.text(ids))
    fast = keras.ops.convert_to_numpy(model.encode_text(ids))
    np.testing.assert_allclose(fast, full, atol=2e-6)
    fast2 = keras.ops.convert_to_numpy(model.encode_text(ids[:2]))
    np.testing.assert_allclose(fast2, full[:2], atol=2e-6)


def test_get_logits_and_call_match_open_clip(tiny_json):
    import open_clip
    import torch
    from reference import randomize
    ref = open_clip.model.CLIP(**TINY).eval()
    ref.load_state_dict(randomize(ref.state_dict(), 5))
    model = anyclip.create_model(tiny_json)
    anyclip.weights.load_state_dict(model, {k: v.numpy() for k, v in ref.state_dict().items()})
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    ids = open_clip.get_tokenizer("ViT-B-32")(["a cat", "a dog", "a bird"])
    with torch.no_grad():
        want_img, want_txt = ref.get_logits(torch.from_numpy(images).permute(0, 3, 1, 2), ids)
    got_img, got_txt = model.get_logits(images, ids.numpy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got_img), want_img.numpy(), atol=2e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got_txt), want_txt.numpy(), atol=2e-4)
    out = model({"images": images, "texts": ids.numpy()})
    assert set(out) == {"image_features", "text_features", "logit_scale"}


def test_bad_model_inputs(tiny_json):
    model = anyclip.create_model(tiny_json)
    with pytest.raises(ValueError, match=r"expects 32 images"):
        model.encode_image(np.zeros((1, 48, 48, 3), np.float32))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 49408\)"):
        model.encode_text(np.full((1, 77), 60000, np.int32))
    with pytest.raises(ValueError, match="shape"):
        model.encode_text(np.zeros((77,), np.int32))
    with pytest.raises(TypeError, match="integer token ids"):
        model.encode_text(np.zeros((1, 77), np.float32))


def test_keras_serialization_round_trip(tiny_json, tmp_path):
    model = anyclip.create_model(tiny_json)
    images = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)
    ids = np.zeros((1, 77), np.int32)
    ids[0, :3] = (49406, 320, 49407)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    assert isinstance(again, anyclip.CLIP)
    for fn in ("encode_image", "encode_text"):
        x = images if fn == "encode_image" else ids
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(getattr(model, fn)(x)),
                                      keras.ops.convert_to_numpy(getattr(again, fn)(x)))
    model.save_weights(tmp_path / "m.weights.h5")
    third = anyclip.create_model(tiny_json)
    third.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.encode_image(images)),
                                  keras.ops.convert_to_numpy(third.encode_image(images)))


def test_reduced_precision_runs_close_to_fp32(tiny_json):
    ref = anyclip.create_model(tiny_json)
    state = anyclip.export_state_dict(ref)
    model = anyclip.create_model(tiny_json, precision="bf16")
    anyclip.weights.load_state_dict(model, state)
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    a = keras.ops.convert_to_numpy(ref.encode_image(images, normalize=True))
    b = keras.ops.convert_to_numpy(keras.ops.cast(model.encode_image(images, normalize=True), "float32"))
    assert np.abs(a - b).max() < 0.05


def test_patch_dropout_only_in_training(tiny_json):
    model = anyclip.create_model(tiny_json, force_patch_dropout=0.5)
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    tokens = model.visual.embed(images, training=True)
    assert tokens.shape[1] == 1 + 2  # 4 patches, half kept, class token always kept
    assert model.visual.embed(images).shape[1] == 5
    eval_a = keras.ops.convert_to_numpy(model.encode_image(images))
    eval_b = keras.ops.convert_to_numpy(model.visual(images, training=False))
    np.testing.assert_allclose(eval_a, eval_b, atol=1e-6)


def test_zero_shot_classifier_matches_open_clip(tiny_json):
    from reference import randomize
    ref = open_clip.model.CLIP(**TINY).eval()
    ref.load_state_dict(randomize(ref.state_dict(), 7))
    model = anyclip.create_model(tiny_json)
    anyclip.weights.load_state_dict(model, {k: v.numpy() for k, v in ref.state_dict().items()})
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    classes = list(anyclip.IMAGENET_CLASSNAMES[:23])
    templates = anyclip.SIMPLE_IMAGENET_TEMPLATES
    want = open_clip.build_zero_shot_classifier(ref, tokenizer, classes, templates, num_classes_per_batch=10)
    got = anyclip.build_zero_shot_classifier(model, lambda t: tokenizer(t).numpy(), classes, templates,
                                             num_classes_per_batch=4)
    assert got.shape == (16, 23)
    np.testing.assert_allclose(got, want.numpy(), atol=2e-6)
    assert len(anyclip.IMAGENET_CLASSNAMES) == 1000 and len(anyclip.OPENAI_IMAGENET_TEMPLATES) == 80
    assert anyclip.OPENAI_IMAGENET_TEMPLATES[0].format("dog") == open_clip.OPENAI_IMAGENET_TEMPLATES[0]("dog")
    images = np.random.default_rng(0).standard_normal((3, 32, 32, 3)).astype(np.float32)
    probs = anyclip.zero_shot_probs(model, images, got)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="classnames"):
        anyclip.build_zero_shot_classifier(model, tokenizer, [], templates)


def test_building_a_model_compiles_nothing_on_jax():
    # Keras turns numpy initial values into JAX arrays with a compiled program per shape (0.5 s of a ViT-B-32's
    # build); anyclip's initialisers hand JAX its own arrays, so a model builds with no compile at all.
    import jax
    from jax import monitoring

    from anyclip.models.clip import CLIP
    assert keras.backend.backend() == "jax"
    compiles = []
    monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kwargs: compiles.append(event) if event.startswith("/jax/core/compile") else None)
    jax.numpy.zeros(1).block_until_ready()
    config = CLIPConfig.from_dict({**TINY, "vision_cfg": {**TINY["vision_cfg"], "width": 48, "head_width": 24}})
    compiles.clear()
    for seed in (None, 3):  # weights to be loaded, random weights
        model = CLIP(config, seed=seed)
    assert compiles == []
    assert np.abs(keras.ops.convert_to_numpy(model.visual.positional_embedding)).max() > 0  # random, not zeros
