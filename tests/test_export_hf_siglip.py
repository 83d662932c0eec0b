"""transformers ``SiglipModel`` round trip, offline, on random open_clip SigLIP2 / SigLIP models built from the
registered configs (timm depth 2, a narrow 2-layer text tower, a tiny Gemma-style / T5-style tokenizer in the
model folder): ``anyclip export --format hf`` -> ``transformers.SiglipModel.from_pretrained`` gives open_clip's
unit vectors and logits (scale and bias), ``AutoTokenizer`` gives open_clip's ids; ``anyclip convert --from hf``
gives back the original weights bit for bit, its config and open_clip's token ids (slow tier: anyclip's logits on
it equal open_clip's; a wrong logit bias fails the export; every shipped SigLIP config maps at full size)."""

import copy
import json

import numpy as np
import pytest
from reference import _timm_kwargs, randomize

import anyclip
from anyclip.cli import main
from anyclip.export.verify import CAPTIONS, sample_photos
from anyclip.models import CLIPConfig

WORDS = ["a", "photo", "of", "an", "astronaut", "cup", "coffee", "on", "saucer", "cat", "lying", "rug", "two", "red",
         "triangles", "grey", "background", "the", "dog", "quoted", "fine", "x"]
TEXTS = list(CAPTIONS) + ["A_Photo, of: THE cat!", "  two\u3000red\x1ctriangles\n", "\u201cquoted\u201d \uff21 \ufb01ne",
                          "\x1b[31mred\x1b[0m dog\x00", "café ümlaut 日本", "x " * 80]


def _gemma_tokenizer(folder):
    """A Gemma-style BPE (byte fallback, ``▁`` for spaces, <bos> first) as SigLIP2 uses, on a tiny vocabulary."""
    import transformers
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({f"<0x{b:02X}>": 5 + b for b in range(256)})
    for c in "▁abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(c, len(vocab))
    merges = []
    for word in WORDS:
        piece = "▁"
        for c in word:
            if piece + c not in vocab:
                merges.append((piece, c))
                vocab[piece + c] = len(vocab)
            piece += c
    transformers.GemmaTokenizer(vocab=vocab, merges=merges, padding_side="right").save_pretrained(folder)
    return len(vocab)


def _t5_tokenizer(folder):
    """A T5-style unigram model (``</s>`` appended and padding) as SigLIP uses, on a tiny vocabulary."""
    import transformers
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -1.0 - i / 100) for i, w in enumerate(WORDS)] + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    transformers.T5Tokenizer(vocab=pieces, extra_ids=0, pad_token="</s>").save_pretrained(folder)
    return len(pieces)


CASES = {"ViT-B-32-SigLIP2-256": _gemma_tokenizer, "ViT-B-16-SigLIP": _t5_tokenizer,
         "ViT-SO400M-16-SigLIP-i18n-256": _gemma_tokenizer}  # i18n: no text projection (an identity head)


@pytest.fixture(scope="module", params=[pytest.param("ViT-B-32-SigLIP2-256", id="siglip2"),
                                        pytest.param("ViT-B-16-SigLIP", id="siglip", marks=pytest.mark.slow),
                                        pytest.param("ViT-SO400M-16-SigLIP-i18n-256", id="siglip-i18n",
                                                     marks=pytest.mark.slow)])
def source(request, tmp_path_factory):
    """A random open_clip SigLIP in open_clip's folder layout with its tokenizer, and open_clip's outputs."""
    import open_clip
    import torch
    from safetensors.torch import save_file
    name = request.param
    folder = tmp_path_factory.mktemp("siglip") / "source"
    folder.mkdir()
    vocab = CASES[name](folder)
    cfg = copy.deepcopy(open_clip.get_model_config(name))
    cfg["vision_cfg"]["timm_model_kwargs"] = {"depth": 2}
    cfg["text_cfg"].update(layers=2, vocab_size=vocab, hf_tokenizer_name=str(folder))
    if cfg["text_cfg"].get("proj_type") != "none":  # without a projection the text width is the embedding's
        cfg["text_cfg"].update(width=64, heads=2)
    with _timm_kwargs(cfg):
        model = open_clip.create_model(name, vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"]).eval()
    state = randomize(model.state_dict(), 3)
    state["logit_bias"] = torch.tensor(-2.5)
    model.load_state_dict(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "open_clip_model.safetensors"))
    size = cfg["vision_cfg"]["image_size"]
    preprocess_cfg = {"size": size, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic",
                      "resize_mode": "squash"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess_cfg}))
    preprocess = anyclip.transforms.image_transform(anyclip.transforms.PreprocessConfig(**preprocess_cfg),
                                                    output="numpy")
    images = np.stack([preprocess(photo) for photo in sample_photos()])
    tokens = open_clip.get_tokenizer(f"local-dir:{folder}")(TEXTS)
    with torch.no_grad():
        image, text, scale, bias = model(torch.from_numpy(images).permute(0, 3, 1, 2), tokens)
    scale, bias = scale.detach(), bias.detach()
    logits = (scale * image @ text.T + bias).numpy()
    return {"folder": folder, "images": images, "tokens": tokens.numpy(), "image": image.numpy(),
            "text": text.numpy(), "logits": logits, "state": {k: v.numpy() for k, v in state.items()},
            "scale": float(scale), "bias": float(bias)}


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    """``anyclip export --format hf`` of the source model (verified against anyclip before it is written)."""
    out = tmp_path_factory.mktemp("siglip-export") / "hf"
    assert main(["export", f"local-dir:{source['folder']}", "--format", "hf", "--out", str(out)]) == 0
    return out


def test_transformers_loads_the_siglip_export_offline_and_matches_open_clip(source, exported):
    import torch
    import transformers
    config = json.loads((exported / "config.json").read_text())
    assert config["model_type"] == "siglip"
    assert json.loads((exported / "preprocessor_config.json").read_text())["size"] == {
        "height": source["images"].shape[1], "width": source["images"].shape[2]}
    tokenizer = transformers.AutoTokenizer.from_pretrained(exported, local_files_only=True)
    length = source["tokens"].shape[1]
    ids = tokenizer(TEXTS, padding="max_length", max_length=length, truncation=True)["input_ids"]
    np.testing.assert_array_equal(ids, source["tokens"])  # open_clip's ids: its cleaning, padding, truncation
    model = transformers.SiglipModel.from_pretrained(exported, local_files_only=True).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), pixel_values=torch.from_numpy(source["images"]).permute(0, 3, 1, 2))
    image = out.image_embeds.numpy()  # transformers normalises them in forward
    text = out.text_embeds.numpy()
    worst = {"image": np.abs(image - source["image"]).max(), "text": np.abs(text - source["text"]).max(),
             "logits": np.abs(out.logits_per_image.numpy() - source["logits"]).max()}
    print(f"transformers SiglipModel vs open_clip, max |difference|: {worst} (logit scale {source['scale']:.3g})")
    assert worst["image"] <= 1e-5 and worst["text"] <= 1e-5
    assert worst["logits"] <= 1e-5
    assert float(model.logit_scale.detach().exp()) == pytest.approx(source["scale"], rel=1e-6)
    assert float(model.logit_bias.detach()) == pytest.approx(source["bias"], rel=1e-6)


def test_convert_from_hf_gives_back_the_original_siglip(source, exported, tmp_path):
    from safetensors.numpy import load_file
    back = tmp_path / "back"
    assert main(["convert", "--from", "hf", str(exported), str(back)]) == 0
    state = load_file(str(back / "open_clip_model.safetensors"))
    assert state.keys() == source["state"].keys()
    for key, value in source["state"].items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    configs = [json.loads((folder / "open_clip_config.json").read_text()) for folder in (source["folder"], back)]
    assert CLIPConfig.from_dict(configs[1]["model_cfg"]) == CLIPConfig.from_dict(configs[0]["model_cfg"])
    assert {k: configs[1]["preprocess_cfg"][k] for k in configs[0]["preprocess_cfg"]} == configs[0]["preprocess_cfg"]
    np.testing.assert_array_equal(anyclip.get_tokenizer(f"local-dir:{back}")(TEXTS), source["tokens"])
    # the same weights and config: the same model (anyclip's outputs on it: the slow test below)


@pytest.mark.slow
def test_anyclip_logits_of_the_converted_siglip_equal_open_clip(source, exported, tmp_path):
    import keras
    back = tmp_path / "back"
    assert main(["convert", "--from", "hf", str(exported), str(back)]) == 0
    model = anyclip.create_model(f"local-dir:{back}")
    logits = keras.ops.convert_to_numpy(model.get_logits(source["images"], source["tokens"])[0])
    assert np.abs(logits - source["logits"]).max() <= 1e-5


def test_models_siglipmodel_cannot_hold_are_refused_with_the_reason(tmp_path, capsys):
    import open_clip
    cfg = open_clip.get_model_config("ViT-B-32-SigLIP2-256")
    cfg["vision_cfg"]["timm_model_kwargs"] = {"depth": 1}
    cfg["text_cfg"].update(width=32, heads=2, layers=1, vocab_size=300, pool_type="argmax", hf_tokenizer_name=None)
    (tmp_path / "odd.json").write_text(json.dumps(cfg))
    assert main(["export", str(tmp_path / "odd.json"), "--pretrained", "none", "--format", "hf",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "SiglipModel" in err and "pool_type" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_wrong_logit_bias_fails_the_export_and_leaves_nothing(source, tmp_path, monkeypatch, capsys):
    from anyclip.export import hf_siglip
    mapping = hf_siglip.open_clip_to_hf_siglip

    def wrong_bias(*args, **kwargs):  # unit vectors stay right: only the logits check can catch it
        tensors = mapping(*args, **kwargs)
        return {**tensors, "logit_bias": tensors["logit_bias"] + 1e-3}
    monkeypatch.setattr(hf_siglip, "open_clip_to_hf_siglip", wrong_bias)
    out = tmp_path / "hf"
    assert main(["export", f"local-dir:{source['folder']}", "--format", "hf", "--out", str(out)]) == 1
    assert "logits (transformers SiglipModel)" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())


SHIPPED = sorted(n for n in anyclip.list_models() if "SigLIP" in n and n.startswith("ViT-"))


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "ViT-SO400M-14-SigLIP" else pytest.mark.slow)
                                  for n in SHIPPED])
def test_every_shipped_siglip_config_fits_and_has_open_clips_parameter_count(name):
    """At full size, on torch's meta device: transformers' SiglipModel for the config written has open_clip's
    parameters (plus the identity text head of a model without text projection)."""
    import open_clip
    import torch
    import transformers

    from anyclip.export.hf_siglip import fits_siglip_model, hf_siglip_config
    from anyclip.models import get_model_config
    config = get_model_config(name)
    assert fits_siglip_model(config) is None
    with torch.device("meta"):  # nothing allocated (open_clip then moves to device "meta": a no-op)
        ref = open_clip.create_model(name, device="meta")
        hf = transformers.SiglipModel(transformers.SiglipConfig(**hf_siglip_config(config)))
    width = config.text_cfg.width
    extra = width * width + width if config.text_cfg.proj_type == "none" else 0
    assert sum(p.numel() for p in hf.parameters()) == sum(p.numel() for p in ref.parameters()) + extra


def test_convert_from_hf_refuses_folders_it_cannot_read_with_the_reason(tmp_path, capsys):
    vision = {"hidden_size": 100, "intermediate_size": 400, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": 224, "patch_size": 16, "hidden_act": "gelu_pytorch_tanh"}
    for folder, config, says in (
            ("bert", {"model_type": "bert"}, "model_type 'bert'"),
            ("odd-siglip", {"model_type": "siglip", "vision_config": vision, "text_config": {}},
             "no timm SigLIP ViT has width 100")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "config.json").write_text(json.dumps(config))
        assert main(["convert", "--from", "hf", str(tmp_path / folder), str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists()
