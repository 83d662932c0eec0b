"""The anyclip command line, run in process on a small random model and the shipped photos."""

import json
from pathlib import Path

import numpy as np
import pytest

from anyclip.cli import main

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted(str(p) for p in (ROOT / "examples" / "images").glob("*.jpg"))
TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import open_clip
    from reference import randomize
    from safetensors.torch import save_file
    folder = tmp_path_factory.mktemp("cli")
    (folder / "tiny.json").write_text(json.dumps(TINY))
    ref = open_clip.model.CLIP(**TINY)
    save_file(randomize(ref.state_dict(), 0), str(folder / "w.safetensors"))
    return ["--model", str(folder / "tiny.json"), "--checkpoint", str(folder / "w.safetensors")]


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, "README must open with exactly two set-up commands"
    assert commands[1] in ci
    assert "anyclip classify examples/shapes/" in commands[0]
    assert len(PHOTOS) >= 3 and (ROOT / "examples" / "shapes" / "labels.txt").is_file()


def test_models_lists_architectures_and_tags(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "ViT-B-32\t" in out and "laion2b_s34b_b79k" in out and "anyclip-shapes\tv1" in out
    assert "RN50\topenai, yfcc15m, cc12m" in out and "coca_ViT-B-32\t" in out and "nllb-clip-base\t" in out
    shipped = sorted(p.stem for p in (ROOT / "src" / "anyclip" / "models" / "configs").glob("*.json"))
    assert sorted(line.split("\t")[0] for line in out.strip().splitlines()) == shipped


def test_classify_prints_a_table_and_json(tiny_model, capsys):
    assert main(["classify", *PHOTOS, "--labels", "cat", "astronaut", "coffee", *tiny_model]) == 0
    out = capsys.readouterr().out
    assert "top1" in out and "cat.jpg" in out
    assert main(["classify", *PHOTOS, "--labels", "cat", "dog", "--json", *tiny_model]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [Path(r["image"]).name for r in data["results"]] == [Path(p).name for p in PHOTOS]
    assert data["activation"] == "softmax"
    for r in data["results"]:
        assert pytest.approx(sum(p["prob"] for p in r["predictions"]), abs=1e-5) == 1.0


def test_classify_with_sigmoid_matches_open_clip_siglip_probabilities(tmp_path, capsys):
    """A SigLIP-style model (logit bias): auto picks sigmoid(scale * cos + bias), equal to open_clip's."""
    import open_clip
    import torch
    from reference import randomize
    from safetensors.torch import save_file
    cfg = {**TINY, "init_logit_bias": -10.0}
    (tmp_path / "siglip.json").write_text(json.dumps(cfg))
    ref = open_clip.model.CLIP(**cfg).eval()
    state = randomize(ref.state_dict(), 3)
    state["logit_bias"] = torch.tensor([-2.0])  # probabilities away from 0 and 1
    ref.load_state_dict(state)
    save_file(state, str(tmp_path / "w.safetensors"))
    args = ["--model", str(tmp_path / "siglip.json"), "--checkpoint", str(tmp_path / "w.safetensors")]
    labels = ["cat", "dog", "coffee"]
    assert main(["classify", PHOTOS[0], "--labels", *labels, "--json", *args]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["activation"] == "sigmoid"
    ours = {p["label"]: p["prob"] for p in data["results"][0]["predictions"]}
    from PIL import Image
    pixels = open_clip.image_transform(32, is_train=False)(Image.open(PHOTOS[0]))  # CLIP's defaults, as TINY's
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        image = ref.encode_image(pixels[None], normalize=True)
        text = ref.encode_text(tokenizer([f"a photo of a {c}." for c in labels]), normalize=True)
        expected = torch.sigmoid(image @ text.T * ref.logit_scale.exp() + ref.logit_bias)[0].numpy()
    for label, value in zip(labels, expected):
        assert abs(ours[label] - value) <= 1e-5, label
    assert main(["classify", PHOTOS[0], "--labels", *labels, "--activation", "softmax", "--json", *args]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["activation"] == "softmax"
    assert pytest.approx(sum(p["prob"] for p in data["results"][0]["predictions"]), abs=1e-5) == 1.0


def test_classify_table_shows_long_labels_whole_up_to_a_cap(tiny_model, capsys):
    medium, huge = "a yellow triangle on a gradient background", "x" * 60
    assert main(["classify", PHOTOS[0], "--labels", medium[:30], huge, "--top-k", "2", *tiny_model]) == 0
    header, row = capsys.readouterr().out.splitlines()[-2:]
    assert medium[:30] in row and huge not in row and "x" * 39 + "…" in row
    second = header.index("top2")  # columns fit the longest label shown (40 characters) and "100.0%"
    assert second == header.index("top1") + 40 + 7 + 2
    assert row[second - 2:second] == "  " and row[second - 3] == "%" and row[second] in "ax"


def test_classify_skips_unreadable_files_and_keeps_the_rest(tiny_model, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert main(["classify", PHOTOS[0], str(bad), str(empty), "--labels", "a", "b", "--json", *tiny_model]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["results"]) == 1
    assert set(data["errors"]) == {str(bad), str(empty)}


def test_classify_offline_without_weights_says_what_to_download(hf_cache, capsys):
    assert main(["classify", PHOTOS[0], "--labels", "cat", "--model", "ViT-B-32", "--pretrained",
                 "laion2b_s34b_b79k"]) == 1  # an input (the weights) is missing: exit 1
    err = capsys.readouterr().err
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in err and "hf download" in err
    assert len(err.strip().splitlines()) == 1 and "--checkpoint FILE" in err


def test_embed_images_to_parquet_and_texts_to_npy(tiny_model, tmp_path, capsys):
    import pyarrow.parquet as pq
    bad = tmp_path / "notes.txt.jpg"
    bad.write_text("hello")
    out = tmp_path / "img.parquet"
    assert main(["embed", "--images", *PHOTOS, str(bad), "-o", str(out), *tiny_model]) == 0
    table = pq.read_table(out)
    assert table.num_rows == len(PHOTOS)
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    errors = [json.loads(line) for line in (tmp_path / "img.errors.jsonl").read_text().splitlines()]
    assert [e["path"] for e in errors] == [str(bad)]
    out = tmp_path / "txt.npy"
    assert main(["embed", "--texts", "a cat", "", "x" * 10000, "日本語 🐈", "-o", str(out), *tiny_model]) == 0
    arr = np.load(out)
    assert arr.shape == (4, 16) and np.isfinite(arr).all()
    ids = json.loads((tmp_path / "txt.ids.json").read_text())["ids"]
    assert ids[1] == "" and ids[3] == "日本語 🐈"


def test_embed_needs_exactly_one_input_kind(tiny_model, tmp_path):
    assert main(["embed", "-o", str(tmp_path / "x.npy"), *tiny_model]) == 2


def test_data_shapes_writes_csv_and_refuses_bad_settings(tmp_path, capsys):
    import csv
    assert main(["data", "shapes", str(tmp_path / "shapes"), "-n", "6", "--format", "csv", "--split", "test"]) == 0
    with open(tmp_path / "shapes" / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 6 and all(Path(r["filepath"]).is_file() and r["title"] for r in rows)
    assert main(["data", "shapes", str(tmp_path / "bad"), "--image-size", "4"]) == 2
    assert "--image-size" in capsys.readouterr().err


def test_classify_warns_when_sigmoid_is_forced_on_a_softmax_model(tiny_model, capsys):
    assert main(["classify", PHOTOS[0], "--labels", "cat", "dog", "--activation", "sigmoid", *tiny_model]) == 0
    captured = capsys.readouterr()
    assert "has no logit bias" in captured.err and "sigmoid probabilities" in captured.out
