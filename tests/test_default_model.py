"""anyclip's shipped default model (``anyclip-shapes`` / ``v1``): packaged, offline, and good at its job.

Expected labels come from the shapes generator (what was drawn), never from the model.
"""

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest

import anyclip
import anyclip.weights
from anyclip.cli import main
from anyclip.data.shapes import DEFAULT_HELD_OUT, ShapesConfig, zero_shot_tasks
from anyclip.eval.shapes import shapes_zero_shot

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "shapes").glob("*.png"))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty Hugging Face cache: only what ships in the package can load."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


@pytest.fixture(scope="module")
def shipped():
    return anyclip.create_model("anyclip-shapes", "v1"), anyclip.get_tokenizer("anyclip-shapes")


def test_packaged_weights_are_small_safetensors_matching_the_registry():
    entry = anyclip.weights.get_pretrained_cfg("anyclip-shapes", "v1")
    path = Path(str(entry.packaged_path))
    assert path.suffix == ".safetensors" and path.stat().st_size < 20 * 2**20
    import hashlib
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
    record = json.loads(resources.files("anyclip.weights").joinpath("builtin", "anyclip-shapes-v1.json").read_text())
    assert record["file"] == entry.file
    assert any(c.startswith("anyclip train ") and "--model anyclip-shapes" in c and "--seed" in c
               for c in record["commands"])


def test_damaged_packaged_weights_are_refused_with_the_file_named(tmp_path):
    from anyclip.factory import _packaged_weights
    entry = anyclip.weights.get_pretrained_cfg("anyclip-shapes", "v1")
    with pytest.raises(ValueError, match=r"anyclip-shapes-v1\.safetensors has sha256 .* damaged"):
        _packaged_weights(dataclasses.replace(entry, sha256="0" * 64))
    with pytest.raises(FileNotFoundError, match="missing; reinstall"):
        _packaged_weights(dataclasses.replace(entry, file="builtin/nothing-here.safetensors"))


def test_classify_defaults_to_the_shipped_model_and_works_offline(offline, capsys):
    pairs = [(c, s) for c in ShapesConfig().colours for s in ShapesConfig().shapes]
    labels = [f"{c} {s}" for c, s in pairs]
    assert len(EXAMPLES) >= 5
    assert main(["classify", *map(str, EXAMPLES), "--labels", *labels, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert len(rows) == len(EXAMPLES)
    top1 = 0
    for row in rows:
        drawn = Path(row["image"]).stem.replace("-", " ")  # files are named after what they show
        ranked = [p["label"] for p in row["predictions"]]  # the top 3 of 64 colour-shape pairs
        assert drawn in ranked and ranked[0].split()[0] == drawn.split()[0], row
        top1 += ranked[0] == drawn
    assert top1 >= len(rows) - 1, rows  # (the shape task scores about 96%: see bench/bench_shapes.py)
    assert any(tuple(Path(r["image"]).stem.split("-")) in DEFAULT_HELD_OUT for r in rows), \
        "one example should show a colour-shape pair held out of training"


def test_shipped_model_recognises_shape_and_colour_on_new_images(shipped):
    model, tokenizer = shipped
    results = shapes_zero_shot(model, tokenizer, num_samples=300)
    assert results["shape"]["acc1"] >= 0.9, results  # chance: 1/8; about 0.96 on 2000 images
    assert results["colour"]["acc1"] >= 0.95, results
    chance = 1 / len(zero_shot_tasks()["combination"].classnames)
    assert results["combination"]["acc1"] > 5 * chance, results


def test_shapes_zero_shot_checks_its_arguments(shipped):
    model, tokenizer = shipped
    with pytest.raises(ValueError, match="unknown shapes task 'size'"):
        shapes_zero_shot(model, tokenizer, tasks=("size",))
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        shapes_zero_shot(model, tokenizer, num_samples=0)

