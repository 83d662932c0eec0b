"""``anyclip convert``: anyclip -> open_clip folder -> open_clip / anyclip, and anyclip -> .keras -> anyclip,
with outputs equal to the source open_clip model's on JAX (in process) and torch (a worker)."""

import json
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest
from backend_runner import start_in_backend
from reference import randomize

import anyclip
from anyclip.cli import main

TINY = {
    "embed_dim": 16, "init_logit_bias": -5.0,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A random open_clip model in open_clip's folder layout, its inputs and its normalised outputs."""
    import open_clip
    import torch
    from safetensors.torch import save_file
    folder = tmp_path_factory.mktemp("convert") / "source"
    folder.mkdir()
    model = open_clip.model.CLIP(**TINY).eval()
    model.load_state_dict(randomize(model.state_dict(), 4))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY, "preprocess_cfg": {"size": 32}}))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a cat", "two dogs on a sofa"]).numpy().astype(np.int32)
    with torch.no_grad():
        ref = {"image": model.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2), normalize=True).numpy(),
               "text": model.encode_text(torch.from_numpy(tokens).long(), normalize=True).numpy()}
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    return {"folder": folder, "images": images, "tokens": tokens, "ref": ref, "state": state}


def _embeddings(model, images, tokens):
    return {"image": keras.ops.convert_to_numpy(model.encode_image(images, normalize=True)),
            "text": keras.ops.convert_to_numpy(model.encode_text(tokens, normalize=True))}


def keras_worker(arrays, params):
    """(torch subprocess) embeddings of the .keras file written under JAX."""
    model = keras.saving.load_model(params["path"])
    return _embeddings(model, arrays["images"], arrays["tokens"])


def test_convert_to_open_clip_round_trips(source, tmp_path, capsys):
    import open_clip
    import torch
    out = tmp_path / "exported"
    assert main(["convert", f"local-dir:{source['folder']}", str(out), "--to", "open_clip"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["open_clip_config.json", "open_clip_model.safetensors"]
    reloaded = open_clip.create_model(f"local-dir:{out}").eval()  # open_clip reads our folder
    with torch.no_grad():
        image = reloaded.encode_image(torch.from_numpy(source["images"]).permute(0, 3, 1, 2), normalize=True).numpy()
    np.testing.assert_array_equal(image, source["ref"]["image"])
    for key, value in reloaded.state_dict().items():  # every weight, the logit bias included, exactly
        np.testing.assert_array_equal(value.numpy(), source["state"][key], err_msg=key)
    ours = _embeddings(anyclip.create_model(f"local-dir:{out}"), source["images"], source["tokens"])
    for key in ("image", "text"):
        assert np.abs(ours[key] - source["ref"][key]).max() <= 1e-5, key


def test_convert_to_keras_round_trips_on_jax_and_torch(source, tmp_path):
    path = tmp_path / "model.keras"
    assert main(["convert", f"local-dir:{source['folder']}", str(path), "--to", "keras"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # no temporary file left
    job = start_in_backend("torch", "test_convert:keras_worker",
                           {"images": source["images"], "tokens": source["tokens"]}, {"path": str(path)})
    again = keras.saving.load_model(path)
    assert isinstance(again, anyclip.CLIP) and again.logit_bias is not None
    source_model = anyclip.create_model(f"local-dir:{source['folder']}")
    assert again.preprocess_cfg == source_model.preprocess_cfg  # the .keras file keeps the preprocessing
    ours = _embeddings(again, source["images"], source["tokens"])
    theirs = job.result(timeout=600)
    for key in ("image", "text"):
        assert np.abs(ours[key] - source["ref"][key]).max() <= 1e-5, key
        assert np.abs(theirs[key] - source["ref"][key]).max() <= 1e-5, f"torch {key}"
    weights = tmp_path / "model.weights.h5"
    assert main(["convert", f"local-dir:{source['folder']}", str(weights), "--to", "keras"]) == 0
    fresh = anyclip.create_model(f"local-dir:{source['folder']}", load_weights=False)
    fresh.load_weights(weights)
    np.testing.assert_array_equal(_embeddings(fresh, source["images"], source["tokens"])["image"], ours["image"])


@pytest.mark.parametrize("argv,message", [
    (["ViT-B-32", "x.keras", "--to", "keras"], "give the weights to convert"),
    (["local-dir:{src}", "out", "--to", "keras"], "must end with .keras or .weights.h5"),
    (["local-dir:{src}", "out.bin", "--to", "keras"], "'out.bin' looks like a .bin file"),
    (["local-dir:{src}", "out", "--precision", "bf16"], "open_clip checkpoints are written in float32"),
])
def test_convert_bad_arguments_say_what_is_wrong(source, argv, message, capsys):
    argv = [a.format(src=source["folder"]) for a in argv]
    assert main(["convert", *argv]) == 2  # a usage error: one line, no traceback
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_push_to_hf_hub_uploads_open_clips_layout(source, monkeypatch):
    """huggingface_hub's HfApi calls are replaced at its public API; the uploaded folder is checked file by file."""
    import open_clip
    import torch
    from huggingface_hub import HfApi, RepoUrl
    from safetensors.numpy import load_file

    from anyclip.weights import push_to_hf_hub
    calls = {}

    def create_repo(self, repo_id, private=False, exist_ok=False, **kwargs):
        calls["create_repo"] = (repo_id, private, exist_ok)
        return RepoUrl(f"https://huggingface.co/someone/{repo_id}")  # the hub fills in the user

    def upload_folder(self, repo_id, folder_path, revision=None, create_pr=False, commit_message=None, **kwargs):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        calls["upload_folder"] = (repo_id, commit_message, create_pr, files)
        return "commit-info"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(HfApi, "file_exists", lambda self, repo_id, filename, **kw: False)
    model = anyclip.create_model(f"local-dir:{source['folder']}")
    assert push_to_hf_hub(model, None, None, repo_id="my-clip", private=True, commit_message="first") == "commit-info"
    assert calls["create_repo"] == ("my-clip", True, True)
    repo, message, create_pr, files = calls["upload_folder"]
    assert (repo, message, create_pr) == ("someone/my-clip", "first", False)
    assert sorted(files) == ["README.md", "open_clip_config.json", "open_clip_model.safetensors"]
    assert "library_name: open_clip" in files["README.md"].decode() and "# Model card for my-clip" in files[
        "README.md"].decode()
    config = json.loads(files["open_clip_config.json"])
    assert config["model_cfg"]["embed_dim"] == TINY["embed_dim"] and config["preprocess_cfg"]["size"] == 32
    with tempfile.TemporaryDirectory() as folder:  # what open_clip would download from the hub
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        state = load_file(str(Path(folder) / "open_clip_model.safetensors"))
        reloaded = open_clip.create_model(f"local-dir:{folder}").eval()
    for key, value in source["state"].items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    with torch.no_grad():
        text = reloaded.encode_text(torch.from_numpy(source["tokens"]).long(), normalize=True).numpy()
    np.testing.assert_array_equal(text, source["ref"]["text"])
    with pytest.raises(ValueError, match="needs a repo_id"):
        push_to_hf_hub(model, None, None, None)
    with pytest.raises(ValueError, match="uploads safetensors only"):
        push_to_hf_hub(model, None, None, "my-clip", safe_serialization=False)
