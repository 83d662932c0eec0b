"""CoCa == open_clip 3.3.0 ``CoCa``: teacher-forced caption logits, ``generate`` (greedy, beam search, top-p),
``CoCaLoss``, strict weight mapping, bad inputs, and ``anyclip train --coca``.

The reference model is a small random open_clip CoCa with the real 49,408-token vocabulary, its end-token
logit boosted so that captions end at different lengths. open_clip's ``generate`` needs transformers'
``BeamSearchScorer``, which transformers 5 removed: ``hf_beam_search.py`` carries it (transformers 4.57.6).
"""

import json
import sys

import keras
import numpy as np
import pytest
from backend_runner import start_in_backend
from reference import randomize
from towers import tiny_hf_dir

import anyclip

EOT = 49407
TINY = {
    "embed_dim": 64, "custom_text": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 96, "head_width": 32, "patch_size": 8,
                   "attentional_pool": True, "attn_pooler_heads": 4, "attn_pooler_queries": 9, "output_tokens": True},
    "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2,
                 "embed_cls": True, "output_tokens": True},
    "multimodal_cfg": {"context_length": 20, "width": 64, "heads": 4, "layers": 2},
}
# generate options compared with open_clip (each compiles once on JAX)
GREEDY = {
    "greedy": dict(generation_type="top_k", top_k=1, seq_len=12, fixed_output_length=True),
    "greedy_window": dict(generation_type="top_k", top_k=1, seq_len=30, max_seq_len=8, min_seq_len=2,
                          repetition_penalty=1.3),  # the last 8 tokens only, once the caption is longer
    "top_p_0": dict(generation_type="top_p", top_p=0.0, seq_len=12, min_seq_len=3),  # keeps the best token
    "greedy_prompt": dict(generation_type="top_k", top_k=1, seq_len=12, text=[49406, 320, 1125]),  # "a photo"
}
BEAM = {
    "beam_3": dict(seq_len=12, num_beams=3, num_beam_groups=1, min_seq_len=2),
    "beam_default": dict(seq_len=12, repetition_penalty=1.5, fixed_output_length=True),  # 6 beams in 3 groups
}
TORCH_CASES = ["greedy_window", "beam_3"]


def _open_clip_generate_ready():
    """Give open_clip's coca_model the beam scorer and warpers that its transformers import missed."""
    import hf_beam_search
    from open_clip import coca_model
    from transformers import TopKLogitsWarper, TopPLogitsWarper
    coca_model.BeamSearchScorer = hf_beam_search.BeamSearchScorer
    coca_model.GENERATION_TYPES = {"top_k": TopKLogitsWarper, "top_p": TopPLogitsWarper, "beam_search": "beam_search"}
    coca_model._has_transformers = True


def _reference_case(cfg, folder, seed, eos, images, tokens, generate, worker, worker_cases):
    """Save a random open_clip CoCa built from ``cfg`` in ``folder``; its outputs, captions and a torch job.

    ``generate`` maps case names to open_clip ``generate`` options; the end token's logit is boosted so that
    captions end at different lengths.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file
    _open_clip_generate_ready()
    model = open_clip.CoCa(**{k: v for k, v in cfg.items() if k != "custom_text"}).eval()
    state = randomize(model.state_dict(), seed)
    state["text_decoder.text_projection"][:, eos] *= 8
    model.load_state_dict(state, strict=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {"size": 32}}))
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = {k: v.numpy() for k, v in model(pixels, torch.from_numpy(tokens).long()).items()}
        refs = {name: model.generate(pixels, **opts).numpy() for name, opts in generate.items()}
    job = start_in_backend("torch", f"test_coca:{worker}", {"images": images},
                           {"folder": str(folder), "cases": worker_cases})
    return {"folder": folder, "images": images, "tokens": tokens, "out": out, "refs": refs, "state": state,
            "torch": job}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A random open_clip CoCa saved in open_clip's folder layout, its inputs and its outputs."""
    import open_clip
    images = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype(np.float32)
    texts = ["a photo of a cat", "", "two dogs and a cat on a sofa near a window at night, " * 3, "a"]
    tokens = open_clip.get_tokenizer("coca_ViT-B-32", context_length=20)(texts).numpy().astype(np.int32)
    generate = {name: _torch_options(opts, len(images)) for name, opts in {**GREEDY, **BEAM}.items()}
    out = _reference_case(TINY, tmp_path_factory.mktemp("coca"), 0, EOT, images, tokens, generate, "torch_worker",
                          TORCH_CASES)
    yield out
    out["torch"].kill()


def _torch_options(opts, batch):
    import torch
    if "text" not in opts:
        return opts
    return {**opts, "text": torch.tensor([opts["text"]] * batch)}


def _options(opts, batch):
    return {**opts, "text": np.array([opts["text"]] * batch)} if "text" in opts else opts


@pytest.fixture(scope="module")
def model(case):
    return anyclip.create_model(f"local-dir:{case['folder']}")


def torch_worker(arrays, params):
    """(torch subprocess) embeddings and generate results of the saved case."""
    model = anyclip.create_model(f"local-dir:{params['folder']}")
    out = {f"gen/{name}": model.generate(arrays["images"], **{**GREEDY, **BEAM}[name]) for name in params["cases"]}
    out["image"] = keras.ops.convert_to_numpy(model.encode_image(arrays["images"]))
    return out


def test_forward_matches_open_clip(case, model):
    import jax  # one compiled call (JAX runs a model call op by op otherwise, compiling each op)
    forward = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x)[0])
    out = forward([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
                  {"images": case["images"], "texts": case["tokens"]})
    ref = case["out"]
    for key, tol in (("image_features", 1e-5), ("text_features", 1e-5), ("logits", 1e-4)):
        err = np.abs(np.asarray(keras.ops.convert_to_numpy(out[key])) - ref[key]).max()
        assert err <= tol, f"{key} differs from open_clip by {err:.2e}"
    np.testing.assert_array_equal(np.asarray(out["labels"]), ref["labels"])
    np.testing.assert_allclose(np.asarray(model.encode_text(case["tokens"])), ref["text_features"], atol=1e-5)
    assert isinstance(model, anyclip.CoCa)


def test_weight_mapping_covers_the_whole_state_dict(case, model):
    exported = anyclip.export_state_dict(model)
    assert sorted(exported) == sorted(case["state"])
    for key, value in case["state"].items():
        np.testing.assert_array_equal(exported[key], value.numpy(), err_msg=key)


@pytest.mark.parametrize("name", list(GREEDY) + list(BEAM))
def test_generate_matches_open_clip(case, model, name):
    ours = model.generate(case["images"], **_options({**GREEDY, **BEAM}[name], len(case["images"])))
    ref = case["refs"][name]
    assert ours.dtype == np.int32
    np.testing.assert_array_equal(ours, ref)


def test_references_exercise_end_tokens_and_padding(case):
    """The cases above are only meaningful if captions end at different lengths (guards the fixture)."""
    for name in ("greedy_window", "beam_default", "beam_3"):
        ref = case["refs"][name]
        ended = (ref == EOT).any(axis=1)
        assert ended.any() and (ref == 0).any(), name


def test_torch_matches_open_clip(case):
    out = case["torch"].result(timeout=900)
    for name in TORCH_CASES:
        np.testing.assert_array_equal(out[f"gen/{name}"], case["refs"][name], err_msg=name)
    np.testing.assert_allclose(out["image"], case["out"]["image_features"], atol=1e-5)


def test_sampling_is_reproducible_per_seed(case, model):
    opts = dict(generation_type="top_k", top_k=5, temperature=0.7, seq_len=12)
    a = model.generate(case["images"], seed=1, **opts)
    b = model.generate(case["images"], seed=1, **opts)
    c = model.generate(case["images"], seed=2, **opts)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a[:, 0] == 49406).all()
    captions = anyclip.decode_captions(a)
    assert len(captions) == 4 and all(isinstance(c, str) for c in captions)


@pytest.mark.parametrize("opts,match", [
    (dict(max_seq_len=0), "max_seq_len must be an integer >= 1"),
    (dict(seq_len=30), "feed up to 29 tokens to the text tower, whose context_length is 20"),
    (dict(generation_type="top_k", seq_len=50, max_seq_len=30), "lower seq_len or max_seq_len"),
    (dict(seq_len=5, min_seq_len=5), r"seq_len \(5\) must be larger than min_seq_len \(5\)"),
    (dict(num_beams=4, num_beam_groups=3), r"num_beam_groups \(3\) must divide num_beams \(4\)"),
    (dict(num_beams=1), "num_beams must be an integer >= 2"),
    (dict(generation_type="nucleus"), "generation_type must be one of"),
    (dict(eos_token_id=10 ** 6), r"eos_token_id must be a token id in \[0, 49408\)"),
])
def test_generate_bad_input(model, opts, match):
    with pytest.raises(ValueError, match=match):
        model.generate(np.zeros((1, 32, 32, 3), np.float32), **opts)


def test_generate_bad_images(model):
    with pytest.raises(ValueError, match="cannot tell the channel axis"):
        model.generate(np.zeros((1, 5, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"images must be a batch \[N, H, W, 3\]"):
        model.generate(np.zeros((32, 32, 3), np.float32))


def test_config_errors_name_the_key():
    from anyclip.models.config import CLIPConfig
    from anyclip.towers.config import ConfigError
    bad = json.loads(json.dumps(TINY))
    bad["multimodal_cfg"]["width"] = 32
    with pytest.raises(ConfigError, match="multimodal_cfg.width"):
        CLIPConfig.from_dict(bad)
    bad = {**TINY, "custom_text": False}
    with pytest.raises(ConfigError, match="custom_text"):
        CLIPConfig.from_dict(bad)
    bad = json.loads(json.dumps(TINY))
    bad["multimodal_cfg"]["widht"] = 64
    with pytest.raises(ConfigError, match="unknown key multimodal_cfg.'widht'"):
        CLIPConfig.from_dict(bad)
    assert CLIPConfig.from_dict(TINY).to_dict()["multimodal_cfg"]["layers"] == 2
    bad = json.loads(json.dumps(TINY))
    bad["vision_cfg"] = {"layers": [1, 1, 1, 1], "width": 32, "image_size": 64}
    with pytest.raises(ConfigError, match="vision_cfg: CoCa with a ModifiedResNet image tower is not implemented"):
        CLIPConfig.from_dict(bad)


# ----------------------------------------------------------------------------- CoCa with a RoBERTa text tower
# coca_roberta-ViT-B-32 in small: the decoder's vocabulary is text_cfg.vocab_size (here 100, inside RoBERTa's
# 120, as CLIP's 49,408 is inside roberta-base's 50,265); RoBERTa's own ids: <s>=0, pad=1, </s>=2.
ROBERTA = dict(model_type="roberta", vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=96, max_position_embeddings=40, type_vocab_size=1, layer_norm_eps=1e-5)
ROBERTA_IDS = dict(sot_token_id=0, eos_token_id=2, pad_token_id=1)
ROBERTA_GEN = {
    "greedy": dict(generation_type="top_k", top_k=1, seq_len=12, **ROBERTA_IDS),
    "greedy_window": dict(generation_type="top_k", top_k=1, seq_len=16, max_seq_len=6, min_seq_len=2,
                          repetition_penalty=1.3, **ROBERTA_IDS),  # the window slides: RoBERTa positions shift
    "beam_3": dict(seq_len=12, num_beams=3, num_beam_groups=1, min_seq_len=2, **ROBERTA_IDS),
}
# on torch, the sliding window only (RoBERTa's positions shift); torch beam search is checked on the CLIP-text CoCa
ROBERTA_TORCH_CASES = ["greedy_window"]


@pytest.fixture(scope="module")
def roberta_case(tmp_path_factory):
    """A random open_clip CoCa whose text tower is a tiny RoBERTa (HFTextEncoder with output_tokens)."""
    folder = tmp_path_factory.mktemp("coca-roberta")
    tiny_hf_dir(folder / "hf", ROBERTA)
    cfg = json.loads(json.dumps(TINY))
    cfg["text_cfg"] = {"hf_model_name": str(folder / "hf"), "hf_model_pretrained": False, "hf_proj_type": "linear",
                       "output_tokens": True, "vocab_size": 100, "context_length": 20}
    rng = np.random.default_rng(5)
    images = rng.standard_normal((3, 32, 32, 3)).astype(np.float32)
    tokens = np.ones((3, 20), np.int32)  # <s> words </s> <pad>...; one row without padding
    for row, length in enumerate((6, 20, 2)):
        tokens[row, :length] = np.concatenate([[0], rng.integers(3, 100, length - 2), [2]])
    out = _reference_case(cfg, folder, 5, 2, images, tokens, ROBERTA_GEN, "roberta_torch_worker",
                          {name: ROBERTA_GEN[name] for name in ROBERTA_TORCH_CASES})
    yield out
    out["torch"].kill()


def roberta_torch_worker(arrays, params):
    """(torch subprocess) the RoBERTa CoCa's features and captions."""
    model = anyclip.create_model(f"local-dir:{params['folder']}")
    out = {f"gen/{name}": model.generate(arrays["images"], **opts) for name, opts in params["cases"].items()}
    out["image"] = keras.ops.convert_to_numpy(model.encode_image(arrays["images"]))
    return out


def test_coca_with_a_roberta_text_tower_matches_open_clip(roberta_case):
    case = roberta_case
    model = anyclip.create_model(f"local-dir:{case['folder']}")
    out = model({"images": case["images"], "texts": case["tokens"]})
    ref = case["out"]
    for key, tol in (("image_features", 1e-5), ("text_features", 1e-5), ("logits", 1e-4)):
        err = np.abs(keras.ops.convert_to_numpy(out[key]) - ref[key]).max()
        assert err <= tol, f"{key} differs from open_clip by {err:.2e}"
    assert out["logits"].shape[-1] == 100  # text_cfg.vocab_size, not RoBERTa's 120
    exported = anyclip.export_state_dict(model)
    assert sorted(exported) == sorted(case["state"])
    for name, opts in ROBERTA_GEN.items():
        np.testing.assert_array_equal(model.generate(case["images"], **opts), case["refs"][name], err_msg=name)
    ended = [(case["refs"][name] == 2).any(axis=1) for name in ROBERTA_GEN]
    assert all(e.any() for e in ended) and not all(e.all() for e in ended)  # guards the fixture
    torch_out = case["torch"].result(timeout=900)
    for name in ROBERTA_TORCH_CASES:
        np.testing.assert_array_equal(torch_out[f"gen/{name}"], case["refs"][name], err_msg=f"torch {name}")
    np.testing.assert_allclose(torch_out["image"], ref["image_features"], atol=1e-5)


def test_coca_roberta_config_is_shipped():
    from anyclip.models.config import get_model_config
    cfg = get_model_config("coca_roberta-ViT-B-32")
    assert cfg.text_cfg.output_tokens and cfg.text_cfg.arch.width == cfg.multimodal_cfg.width == 768


def test_coca_loss_matches_open_clip():
    import torch
    from open_clip.loss import CoCaLoss as Reference

    from anyclip.train.losses import CoCaLoss
    rng = np.random.default_rng(3)
    image, text = rng.standard_normal((2, 6, 16)).astype(np.float32)
    logits = 3 * rng.standard_normal((6, 9, 50)).astype(np.float32)
    labels = rng.integers(1, 50, (6, 9)).astype(np.int32)
    labels[:, 5:] = 0  # padding is ignored
    labels[2, 1:] = 0
    for caption_w, clip_w in ((2.0, 1.0), (1.5, 0.0)):
        ref = Reference(caption_loss_weight=caption_w, clip_loss_weight=clip_w)(
            torch.from_numpy(image), torch.from_numpy(text), torch.from_numpy(logits),
            torch.from_numpy(labels).long(), torch.tensor(14.0), output_dict=True)
        ours = CoCaLoss(caption_loss_weight=caption_w, clip_loss_weight=clip_w)(
            image, text, logits, labels, 14.0, output_dict=True)
        for key in ("contrastive_loss", "caption_loss"):
            np.testing.assert_allclose(float(ours[key]), float(ref[key]), atol=1e-5, rtol=1e-5, err_msg=key)


def test_coca_training_gradients_match_open_clip_with_and_without_accumulation(case):
    """open_clip's CoCaLoss gradients on the whole batch; ours with accum_freq 1 and 2 (micro-batches of 2)."""
    import open_clip
    import torch
    from open_clip.loss import CoCaLoss as Reference
    from test_train_step import grads_by_key

    from anyclip.train import TrainStep, coca_loss
    reference = open_clip.CoCa(**{k: v for k, v in TINY.items() if k != "custom_text"})
    reference.load_state_dict(case["state"], strict=True)
    reference.train()
    tokens = case["tokens"]
    out = reference(torch.from_numpy(case["images"]).permute(0, 3, 1, 2), torch.from_numpy(tokens).long())
    parts = Reference(caption_loss_weight=2.0, clip_loss_weight=1.0)(
        out["image_features"], out["text_features"], out["logits"], out["labels"], out["logit_scale"],
        output_dict=True)
    sum(parts.values()).backward()
    ref_grads = {k: p.grad.numpy() for k, p in reference.named_parameters() if p.grad is not None}
    pads = (tokens[:, 1:] == 0).sum(axis=1)
    assert pads[:2].sum() != pads[2:].sum()  # micro-batches with different numbers of real tokens
    for accum in (1, 2):
        model = anyclip.create_model(f"local-dir:{case['folder']}")
        step = TrainStep(model, keras.optimizers.SGD(0.1), lambda o: coca_loss(**o, output_dict=True),
                         accum_freq=accum)
        metrics, grads = step.compute_gradients(case["images"], tokens)
        for key in ("contrastive_loss", "caption_loss"):
            assert abs(metrics[key] - float(parts[key])) <= 1e-5, (accum, key)
        assert abs(metrics["loss"] - float(sum(parts.values()))) <= 1e-5
        ours = grads_by_key(model, grads, step.variables)
        assert sorted(ours) == sorted(ref_grads)
        for key, ref in ref_grads.items():
            err = np.abs(ours[key] - ref).max()
            assert err <= 2e-5 * max(1.0, np.abs(ref).max()), f"accum {accum}: gradient of {key} off by {err:.2e}"


def test_train_coca_cli(tmp_path, capsys):
    import open_clip
    from safetensors.numpy import load_file

    from anyclip.cli import main
    from anyclip.data import ShapesConfig, ShapesDataset, write_csv
    write_csv(ShapesDataset(ShapesConfig(image_size=32, seed=1), "train", 8), tmp_path / "data", progress=False)
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    args = ["train", "--train-data", str(tmp_path / "data" / "train.csv"), "--model", str(tmp_path / "tiny.json"),
            "--batch-size", "4", "--workers", "1", "--logs", str(tmp_path / "logs"), "--log-every-n-steps", "1"]
    assert main(args + ["--name", "coca", "--coca", "--coca-caption-loss-weight", "1.5"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "logs" / "coca" / "train.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert all(np.isfinite(line["caption_loss"]) and line["caption_loss"] > 0 for line in lines)
    assert all(abs(line["loss"] - line["caption_loss"] - line["contrastive_loss"]) < 1e-4 for line in lines)
    state = load_file(str(tmp_path / "logs" / "coca" / "final" / "open_clip_model.safetensors"))
    reference = open_clip.CoCa(**{k: v for k, v in TINY.items() if k != "custom_text"})
    import torch
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    assert main(args + ["--name", "accum", "--coca", "--accum-freq", "2"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "logs" / "accum" / "train.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1] and np.isfinite(lines[0]["caption_loss"])


def test_coca_flag_needs_a_coca_model(tmp_path, capsys):
    from anyclip.cli import main
    from anyclip.data import ShapesConfig, ShapesDataset, write_csv
    write_csv(ShapesDataset(ShapesConfig(image_size=32, seed=1), "train", 4), tmp_path / "data", progress=False)
    clip = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32,
                                            "patch_size": 8},
            "text_cfg": {"width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "clip.json").write_text(json.dumps(clip))
    assert main(["train", "--train-data", str(tmp_path / "data" / "train.csv"), "--model", str(tmp_path / "clip.json"),
                 "--coca", "--logs", str(tmp_path / "logs")]) == 2
    assert "--coca needs a CoCa model" in capsys.readouterr().err


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
