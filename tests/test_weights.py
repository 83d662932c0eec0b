"""Loading, strict mapping, offline hub cache, export round trips and checkpoint safety."""

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from reference import randomize

import anyclip
import anyclip.weights
from anyclip.weights import (
    CheckpointError,
    WeightMismatchError,
    WeightsUnavailableError,
    export_state_dict,
    read_state_dict,
    save_open_clip_checkpoint,
)

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TEXTS = ["a photo of a cat", "", "a diagram of a very long and complicated thing " * 5]


def open_clip_model(config: dict, seed: int = 0):
    import open_clip
    model = open_clip.model.CLIP(**config).eval()
    model.load_state_dict(randomize(model.state_dict(), seed))
    return model


def reference_outputs(model, size):
    import open_clip
    rng = np.random.default_rng(1)
    images = rng.standard_normal((2, size, size, 3)).astype(np.float32)
    tokens = open_clip.get_tokenizer("ViT-B-32")(TEXTS)
    with torch.no_grad():
        img = model.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2), normalize=True).numpy()
        txt = model.encode_text(tokens, normalize=True).numpy()
    return images, tokens.numpy(), img, txt


def assert_same(model, images, tokens, img_ref, txt_ref, tol=1e-5):
    img = np.asarray(anyclip_numpy(model.encode_image(images, normalize=True)))
    txt = np.asarray(anyclip_numpy(model.encode_text(tokens, normalize=True)))
    assert np.abs(img - img_ref).max() <= tol
    assert np.abs(txt - txt_ref).max() <= tol


def anyclip_numpy(x):
    import keras
    return keras.ops.convert_to_numpy(x)


def save_state(model, path: Path):
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)
    return path


def make_hub_repo(cache: Path, repo_id: str, files: dict, revision="0123456789abcdef0123456789abcdef01234567"):
    """Lay out ``files`` ({name: source path or bytes}) as huggingface_hub's cache for ``repo_id``."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    snap = root / "snapshots" / revision
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)
    for name, src in files.items():
        if isinstance(src, bytes):
            (snap / name).write_bytes(src)
        else:
            shutil.copy(src, snap / name)
    return snap


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    model = open_clip_model(TINY)
    config_file = folder / "tiny.json"
    config_file.write_text(json.dumps(TINY))
    return {"model": model, "config": str(config_file), "st": save_state(model, folder / "w.safetensors"),
            "bin": save_state(model, folder / "w.bin"), "ref": reference_outputs(model, 64)}


def test_local_safetensors_and_bin(tiny):
    for key in ("st", "bin"):
        model = anyclip.create_model(tiny["config"], pretrained=str(tiny[key]))
        assert_same(model, *tiny["ref"])


def test_pretrained_tag_from_offline_hf_cache(hf_cache):
    import open_clip
    ref = open_clip.create_model("ViT-B-32").eval()
    ref.load_state_dict(randomize(ref.state_dict(), 3))
    entry = anyclip.weights.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")
    weights = save_state(ref, hf_cache.parent / "src" / "open_clip_model.safetensors")
    make_hub_repo(hf_cache, entry.repo_id, {"open_clip_model.safetensors": weights})
    model = anyclip.create_model("ViT-B-32", pretrained="laion2b_s34b_b79k")
    assert Path(model.pretrained_cfg["checkpoint"]).is_relative_to(hf_cache)
    assert model.preprocess_cfg.mean == tuple(entry.preprocess.mean)
    assert_same(model, *reference_outputs(ref, 224))


def test_pretrained_tag_bin_fallback_in_cache(hf_cache, tiny):
    # A repo that only holds open_clip_pytorch_model.bin is read through torch.load(weights_only=True).
    repo = "test-org/tiny-bin"
    config = {"model_cfg": TINY, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    make_hub_repo(hf_cache, repo, {"open_clip_pytorch_model.bin": tiny["bin"],
                                   "open_clip_config.json": json.dumps(config).encode()})
    model = anyclip.create_model(f"hf-hub:{repo}")
    assert model.preprocess_cfg.mean == (0.5, 0.5, 0.5)
    assert model.preprocess_cfg.size == 64
    assert_same(model, *tiny["ref"])
    assert anyclip.get_tokenizer(f"hf-hub:{repo}")(["a cat"]).shape == (1, 77)


def test_hf_hub_model_with_safetensors(hf_cache, tiny):
    repo = "test-org/tiny-clip"
    make_hub_repo(hf_cache, repo, {"open_clip_model.safetensors": tiny["st"],
                                   "open_clip_config.json": json.dumps({"model_cfg": TINY}).encode()})
    model, preprocess = anyclip.create_model_from_pretrained(f"hf-hub:{repo}")
    assert_same(model, *tiny["ref"])


def test_offline_without_cache_says_what_to_download(hf_cache):
    with pytest.raises(WeightsUnavailableError) as err:
        anyclip.create_model("ViT-B-32", pretrained="laion2b_s34b_b79k")
    message = str(err.value)
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message
    assert "hf download" in message and "HF_HUB_OFFLINE" in message


def test_unknown_model_and_tag_suggest_close_names():
    with pytest.raises(anyclip.ConfigError, match="ViT-B-32"):
        anyclip.create_model("ViT-B-23")
    with pytest.raises(ValueError, match="laion2b_s34b_b79k"):
        anyclip.create_model("ViT-B-32", pretrained="laion2b_s34b_b97k")


def test_wrong_architecture_names_keys_and_shapes(tiny):
    with pytest.raises(WeightMismatchError) as err:
        anyclip.create_model("ViT-S-32", pretrained=str(tiny["st"]))
    message = str(err.value)
    assert "shape mismatch for 'ln_final.weight': checkpoint (64,), model (384,)" in message
    assert "missing key 'transformer.resblocks.10.attn.in_proj_bias' (anyclip expects shape (1152,))" in message
    assert "240 missing key(s)" in message


def test_missing_unexpected_and_nonfinite_keys(tiny, tmp_path):
    from safetensors.numpy import save_file
    state = read_state_dict(tiny["st"])
    broken = dict(state)
    del broken["ln_final.bias"]
    broken["visual.extra.weight"] = np.zeros((2, 2), np.float32)
    broken["text_projection"] = broken["text_projection"].copy()
    broken["text_projection"][0, 0] = np.nan
    save_file(broken, str(tmp_path / "bad.safetensors"))
    model = anyclip.create_model(tiny["config"])
    before = export_state_dict(model)
    with pytest.raises(WeightMismatchError) as err:
        anyclip.load_checkpoint(model, tmp_path / "bad.safetensors")
    message = str(err.value)
    assert "missing key 'ln_final.bias'" in message
    assert "unexpected key 'visual.extra.weight' with shape (2, 2)" in message
    assert "non-finite values in 'text_projection'" in message
    after = export_state_dict(model)  # all or nothing: the model is untouched
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_every_checkpoint_key_and_variable_is_mapped(tiny):
    model = anyclip.create_model(tiny["config"], pretrained=str(tiny["st"]))
    exported = export_state_dict(model)
    reference = {k: v.numpy() for k, v in tiny["model"].state_dict().items()}
    assert set(exported) == set(reference)
    for key, value in reference.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_round_trip_back_to_open_clip(tiny, tmp_path):
    import open_clip
    model = anyclip.create_model(tiny["config"], pretrained=str(tiny["st"]))
    path = save_open_clip_checkpoint(model, tmp_path / "exported.safetensors")
    back = open_clip.model.CLIP(**TINY).eval()
    open_clip.load_checkpoint(back, str(path), strict=True)
    images, tokens, img_ref, txt_ref = tiny["ref"]
    with torch.no_grad():
        img = back.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2), normalize=True).numpy()
        txt = back.encode_text(torch.from_numpy(tokens).long(), normalize=True).numpy()
    np.testing.assert_array_equal(img, img_ref)
    np.testing.assert_array_equal(txt, txt_ref)
    # The folder layout is what open_clip's local-dir: schema reads.
    save_open_clip_checkpoint(model, tmp_path / "folder")
    again = open_clip.create_model(f"local-dir:{tmp_path / 'folder'}").eval()
    with torch.no_grad():
        txt2 = again.encode_text(torch.from_numpy(tokens).long(), normalize=True).numpy()
    np.testing.assert_array_equal(txt2, txt_ref)


@pytest.mark.parametrize("image_size", [96, 48, (64, 96)])
def test_position_embedding_resize_matches_open_clip(tiny, image_size):
    import open_clip
    cfg = json.loads(json.dumps(TINY))
    cfg["vision_cfg"]["image_size"] = image_size
    ref = open_clip.model.CLIP(**cfg).eval()
    open_clip.load_checkpoint(ref, str(tiny["st"]), strict=True)  # open_clip resizes at load time
    model = anyclip.create_model(tiny["config"], pretrained=str(tiny["st"]), force_image_size=image_size)
    hw = (image_size, image_size) if isinstance(image_size, int) else image_size
    images = np.random.default_rng(0).standard_normal((2, *hw, 3)).astype(np.float32)
    with torch.no_grad():
        want = ref.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2), normalize=True).numpy()
    got = anyclip_numpy(model.encode_image(images, normalize=True))
    assert np.abs(got - want).max() <= 1e-5


def test_text_context_resize_matches_open_clip(tiny):
    import open_clip
    cfg = json.loads(json.dumps(TINY))
    cfg["text_cfg"]["context_length"] = 32
    ref = open_clip.model.CLIP(**cfg).eval()
    open_clip.load_checkpoint(ref, str(tiny["st"]), strict=True)
    model = anyclip.create_model(tiny["config"], pretrained=str(tiny["st"]), force_context_length=32)
    tokens = open_clip.get_tokenizer("ViT-B-32")(TEXTS, context_length=32)
    with torch.no_grad():
        want = ref.encode_text(tokens, normalize=True).numpy()
    got = anyclip_numpy(model.encode_text(tokens.numpy(), normalize=True))
    assert np.abs(got - want).max() <= 1e-5


def test_a_positional_embedding_of_another_size_is_an_error_unless_asked(tiny, tmp_path):
    """Strict loading: a checkpoint made for 64 px images / 77 tokens does not silently fit a 96 px / 32-token
    model; resize_pos_embed=True (or force_image_size / force_context_length) interpolates as open_clip does."""
    from anyclip.weights import load_checkpoint
    for section, key, value, name, shapes in (
            ("vision_cfg", "image_size", 96, "visual.positional_embedding", "checkpoint (17, 64), model (37, 64)"),
            ("text_cfg", "context_length", 32, "positional_embedding", "checkpoint (77, 64), model (32, 64)")):
        cfg = json.loads(json.dumps(TINY))
        cfg[section][key] = value
        (tmp_path / "other.json").write_text(json.dumps(cfg))
        with pytest.raises(WeightMismatchError) as info:
            anyclip.create_model(str(tmp_path / "other.json"), pretrained=str(tiny["st"]))
        message = str(info.value)
        assert f"shape mismatch for {name!r}: {shapes}" in message and "resize_pos_embed=True" in message
        asked = anyclip.create_model(str(tmp_path / "other.json"), pretrained=str(tiny["st"]), resize_pos_embed=True)
        forced = anyclip.create_model(tiny["config"], pretrained=str(tiny["st"]), **{f"force_{key}": value})
        for a, b in zip(asked.weights, forced.weights):
            np.testing.assert_array_equal(anyclip_numpy(a.value), anyclip_numpy(b.value), err_msg=a.path)
        # the open_clip drop-in load_checkpoint resizes, as open_clip's does; the strict path refuses
        from anyclip.weights.checkpoint import read_state_dict
        from anyclip.weights.mapping import load_state_dict
        model = anyclip.create_model(str(tmp_path / "other.json"))
        load_checkpoint(model, str(tiny["st"]))
        with pytest.raises(WeightMismatchError, match=name):
            load_state_dict(model, read_state_dict(str(tiny["st"])), resize_pos_embed=False)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/anyclip-pwned",))


def test_untrusted_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.bin"
    with open(path, "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    torch.save({"state_dict": {"x": _Evil()}}, tmp_path / "evil2.pt")
    for p in (path, tmp_path / "evil2.pt"):
        with pytest.raises(CheckpointError, match="safe PyTorch checkpoint"):
            read_state_dict(p)
    assert not os.path.exists("/tmp/anyclip-pwned")


@pytest.mark.parametrize("content,suffix,match", [
    (b"", ".safetensors", "empty"),
    (b"not a safetensors file at all", ".safetensors", "safetensors"),
    (b"\x00" * 64, ".bin", "safe PyTorch checkpoint"),
    (b"{}", ".onnx", "unknown checkpoint format"),
])
def test_corrupt_checkpoint_files(tmp_path, content, suffix, match):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        read_state_dict(path)


@pytest.mark.parametrize("entry,problem", [
    ({"shape": [2], "data_offsets": [0, 8]}, "has no dtype"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [8]}, "data_offsets"),
    ({"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}, "shape"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [False, 8]}, "data_offsets"),
    ({"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}, "shape"),
    ({"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}, "dtype 'Q4'"),
    ([1, 2], "not a table"),
])
def test_malformed_safetensors_header_names_the_entry(tmp_path, entry, problem):
    """A header entry safetensors' own writer would never produce is rejected naming the key and what is wrong."""
    header = json.dumps({"visual.proj": entry}).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    with pytest.raises(CheckpointError, match=rf"header entry 'visual.proj' .*{problem}"):
        read_state_dict(path)


def test_truncated_safetensors(tiny, tmp_path):
    data = Path(tiny["st"]).read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        read_state_dict(path)


def test_bf16_safetensors_read_without_torch_dtype(tiny, tmp_path):
    from safetensors.torch import save_file
    state = {k: v.to(torch.bfloat16) for k, v in tiny["model"].state_dict().items()}
    save_file(state, str(tmp_path / "bf16.safetensors"))
    loaded = read_state_dict(tmp_path / "bf16.safetensors")
    for key, value in state.items():
        np.testing.assert_array_equal(loaded[key], value.float().numpy(), err_msg=key)


def test_model_flags_resize_pos_embed(tiny, tmp_path):
    """classify / embed / search load through the model flags: --resize-pos-embed lets another image size load."""
    import argparse

    from anyclip.model_flags import add_model_arguments, load_model_from_args
    cfg = json.loads(json.dumps(TINY))
    cfg["vision_cfg"]["image_size"] = 96
    (tmp_path / "other.json").write_text(json.dumps(cfg))
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    flags = ["--model", str(tmp_path / "other.json"), "--checkpoint", str(tiny["st"])]
    with pytest.raises(WeightMismatchError, match="visual.positional_embedding"):
        load_model_from_args(parser.parse_args(flags))
    model, _, _ = load_model_from_args(parser.parse_args([*flags, "--resize-pos-embed"]))
    assert tuple(model.visual.positional_embedding.shape) == (37, 64)


def _aligned_copy(array: np.ndarray) -> np.ndarray:
    """A copy starting on a 64-byte boundary: memory JAX on a CPU would keep rather than copy."""
    buffer = np.empty(array.size + 16, array.dtype)
    start = (-buffer.ctypes.data % 64) // array.itemsize
    out = buffer[start:start + array.size].reshape(array.shape)
    out[...] = array
    return out


def test_loaded_weights_never_share_the_callers_arrays_unless_handed_over(tiny):
    from anyclip.weights import load_state_dict
    model = anyclip.create_model(tiny["config"])
    state = {key: _aligned_copy(value) for key, value in read_state_dict(tiny["st"]).items()}
    load_state_dict(model, state)
    for value in state.values():  # the caller changes its arrays after the load: the model keeps its weights
        value[...] = 7
    assert_same(model, *tiny["ref"])
    handed = {key: _aligned_copy(value) for key, value in read_state_dict(tiny["st"]).items()}
    other = anyclip.create_model(tiny["config"])
    load_state_dict(other, handed, copy=False)
    assert handed == {}  # emptied: each array's memory goes once it is loaded
    assert_same(other, *tiny["ref"])


def test_reading_a_safetensors_file_holds_it_in_memory_once(tmp_path):
    # A mapped file's pages count in the process' memory: read through one mapping, the peak held the file twice.
    import subprocess
    import sys

    from safetensors.numpy import load_file, save_file
    rng = np.random.default_rng(0)
    state = {f"block{i}.weight": rng.standard_normal((1024, 2048), dtype=np.float32) for i in range(24)}
    state["scalar"] = np.array(3.5, np.float32)
    path = tmp_path / "big.safetensors"
    save_file(state, str(path))
    size_mb = path.stat().st_size / 2**20
    code = ("import resource, sys\nfrom anyclip.weights.checkpoint import read_state_dict\n"
            "start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\nstate = read_state_dict(sys.argv[1])\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(anyclip.__file__).parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    grown_mb = float(subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True,
                                    capture_output=True, text=True).stdout.split()[-1])
    assert grown_mb < 1.3 * size_mb, f"reading a {size_mb:.0f} MB file raised the peak by {grown_mb:.0f} MB"
    ours, theirs = read_state_dict(path), load_file(str(path))
    assert set(ours) == set(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in theirs)
