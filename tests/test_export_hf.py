"""Hugging Face transformers round trip, offline, on random open_clip ViT CLIPs (OpenAI layout with QuickGELU,
LAION layout with GELU): ``anyclip export --format hf`` -> ``transformers.CLIPModel.from_pretrained`` equals
open_clip's model; ``anyclip convert --from hf`` -> open_clip and anyclip load it with the same outputs."""

import json

import numpy as np
import pytest
from reference import randomize

import anyclip
from anyclip.cli import main
from anyclip.export.verify import CAPTIONS, sample_photos


def _config(quick_gelu: bool, bias=None) -> dict:
    return {"embed_dim": 24, "quick_gelu": quick_gelu, "init_logit_bias": bias,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "head_width": 16, "patch_size": 8},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


@pytest.fixture(scope="module", params=[pytest.param(True, id="openai-quickgelu"),
                                        pytest.param(False, id="laion-gelu", marks=pytest.mark.slow)])
def source(request, tmp_path_factory):
    """A random open_clip model in open_clip's folder layout, photos, captions and open_clip's unit vectors."""
    import open_clip
    import torch
    from safetensors.torch import save_file
    folder = tmp_path_factory.mktemp("hf") / "source"
    folder.mkdir()
    cfg = _config(request.param)
    model = open_clip.model.CLIP(**{k: v for k, v in cfg.items() if k != "quick_gelu"},
                                 quick_gelu=request.param).eval()
    model.load_state_dict(randomize(model.state_dict(), 7))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {"size": 32}}))
    preprocess = anyclip.transforms.image_transform(anyclip.transforms.PreprocessConfig(size=32), output="numpy")
    images = np.stack([preprocess(photo) for photo in sample_photos()])
    tokens = open_clip.get_tokenizer("ViT-B-32")(list(CAPTIONS))
    with torch.no_grad():
        ref = {"image": model.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2), normalize=True).numpy(),
               "text": model.encode_text(tokens, normalize=True).numpy()}
    return {"folder": folder, "images": images, "tokens": tokens.numpy(), "ref": ref, "quick_gelu": request.param,
            "logit_scale": model.logit_scale.detach().numpy()}


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    """``anyclip export --format hf`` of the source model (in this JAX process: any backend will do)."""
    out = tmp_path_factory.mktemp("hf-export") / "hf"
    assert main(["export", f"local-dir:{source['folder']}", "--format", "hf", "--out", str(out)]) == 0
    return out


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_transformers_loads_the_export_offline_and_matches_open_clip(source, exported):
    import torch
    import transformers
    out = exported
    config = json.loads((out / "config.json").read_text())
    assert config["text_config"]["hidden_act"] == ("quick_gelu" if source["quick_gelu"] else "gelu")
    model = transformers.CLIPModel.from_pretrained(out, local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    ids = tokenizer(list(CAPTIONS), padding="max_length", max_length=77, truncation=True)["input_ids"]
    np.testing.assert_array_equal(ids, source["tokens"])  # open_clip's ids, its zero padding included
    with torch.no_grad():
        image = model.get_image_features(pixel_values=torch.from_numpy(source["images"]).permute(0, 3, 1, 2))
        text = model.get_text_features(input_ids=torch.tensor(ids))
    image, text = (getattr(x, "pooler_output", x).numpy() for x in (image, text))
    assert np.abs(_unit(image) - source["ref"]["image"]).max() <= 1e-5
    assert np.abs(_unit(text) - source["ref"]["text"]).max() <= 1e-5
    assert float(model.logit_scale.detach()) == pytest.approx(float(source["logit_scale"]))


def test_convert_from_hf_round_trips_to_open_clip_and_anyclip(source, exported, tmp_path):
    import open_clip
    import torch
    hf, back = exported, tmp_path / "back"
    assert main(["convert", "--from", "hf", str(hf), str(back)]) == 0
    reloaded = open_clip.create_model(f"local-dir:{back}").eval()
    with torch.no_grad():
        text = reloaded.encode_text(torch.from_numpy(source["tokens"]), normalize=True).numpy()
    np.testing.assert_allclose(text, source["ref"]["text"], atol=1e-6)
    model = anyclip.create_model(f"local-dir:{back}")
    import keras
    image = keras.ops.convert_to_numpy(model.encode_image(source["images"], normalize=True))
    assert np.abs(image - source["ref"]["image"]).max() <= 1e-5
    assert model.config.quick_gelu == source["quick_gelu"]


def test_models_clipmodel_cannot_hold_are_refused_with_the_reason(tmp_path, capsys):
    (tmp_path / "siglip.json").write_text(json.dumps(_config(False, bias=-10.0)))
    assert main(["export", str(tmp_path / "siglip.json"), "--pretrained", "none", "--format", "hf",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "CLIPModel" in err and "SiglipModel" in err and "logit bias" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
