"""Evaluation: metrics on hand-set features, agreement with open_clip's own eval code, linear probe, CLI.

Expected numbers come from how the inputs are built (hand-set scores), from independent code
(open_clip_train's ``accuracy``/``run``/``get_clip_metrics``, scikit-learn), never from anyclip itself.
"""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_run import run_cli
from PIL import Image

import anyclip
from anyclip.cli import main
from anyclip.data.labelled import read_image_folder
from anyclip.data.retrieval import read_retrieval_json
from anyclip.eval import (
    EvalResult,
    classification_metrics,
    confusion_matrix,
    fit_linear_probe,
    linear_probe,
    mean_per_class_recall,
    retrieval_metrics,
    target_ranks,
    topk_accuracy,
    write_results_json,
    zero_shot_classification,
    zero_shot_retrieval,
)
from anyclip.eval.linear_probe import C_GRID

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLASSES = ["boat", "car", "cat", "dog", "house", "tree"]
TEMPLATES = ["a photo of a {}.", "a blurry picture of the {}."]


# ----------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random open_clip model saved as safetensors, its anyclip twin, and a 6-class ImageFolder."""
    import open_clip
    from reference import randomize
    from safetensors.torch import save_file
    folder = tmp_path_factory.mktemp("eval")
    (folder / "tiny.json").write_text(json.dumps(TINY))
    ref = open_clip.model.CLIP(**TINY).eval()
    ref.load_state_dict(randomize(ref.state_dict(), 0))
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(folder / "w.safetensors"))
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        base = rng.integers(0, 256, (3, 3, 3))
        for i in range(4):
            grid = np.clip(base + rng.integers(-60, 60, (3, 3, 3)), 0, 255).astype(np.uint8)
            size = (40 + 9 * i, 30 + 5 * c)
            image = Image.fromarray(grid).resize(size, Image.Resampling.BILINEAR)
            (folder / "images" / name).mkdir(parents=True, exist_ok=True)
            image.save(folder / "images" / name / f"{i}.jpg", quality=90)
    model = anyclip.create_model(str(folder / "tiny.json"), pretrained=str(folder / "w.safetensors"))
    tokenizer = anyclip.get_tokenizer(str(folder / "tiny.json"))
    return SimpleNamespace(folder=folder, images=folder / "images", ref=ref, model=model, tokenizer=tokenizer,
                           cli=["--model", str(folder / "tiny.json"), "--checkpoint", str(folder / "w.safetensors")])


def image_paths(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jpg"))


# ----------------------------------------------------------------------------------------- metrics
def test_ranks_break_ties_by_lower_index():
    scores = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.9, 0.5, 0.5], [0.1, 0.3, 0.2]])
    assert target_ranks(scores, [0, 1, 2, 2, 0]).tolist() == [1, 2, 3, 3, 3]
    # an all-tied model is not rewarded: only the first class counts as its top-1
    assert topk_accuracy(np.zeros((4, 4)), [0, 1, 2, 3], ks=(1, 2)) == {1: 0.25, 2: 0.5}


def test_topk_is_clipped_to_the_number_of_classes():
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    assert topk_accuracy(scores, [2, 2], ks=(1, 2, 5)) == {1: 0.5, 2: 0.5, 5: 1.0}


def test_mean_per_class_recall_leaves_out_classes_without_samples():
    # class 0: 2 of 3 right; class 1: 1 of 1; class 2 has no samples but is predicted once (costing class 0)
    assert mean_per_class_recall([0, 0, 0, 1], [0, 0, 2, 1], num_classes=3) == pytest.approx((2 / 3 + 1) / 2)
    scores = np.array([[0.9, 0.0, 0.1], [0.8, 0.1, 0.1], [0.1, 0.0, 0.9], [0.0, 1.0, 0.0]])
    metrics = classification_metrics(scores, [0, 0, 0, 1])
    assert metrics == pytest.approx({"acc1": 0.75, "acc5": 1.0, "mean_per_class_recall": (2 / 3 + 1) / 2})
    assert confusion_matrix([0, 0, 0, 1], [0, 0, 2, 1], 3).tolist() == [[2, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_mean_per_class_recall_agrees_with_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score
    rng = np.random.default_rng(3)
    for _ in range(20):
        targets = rng.choice([0, 2, 3, 6], size=50)  # classes 1, 4, 5 have no samples
        preds = rng.integers(0, 7, size=50)
        with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
            expected = balanced_accuracy_score(targets, preds)
        assert mean_per_class_recall(targets, preds, 7) == pytest.approx(expected)


def test_retrieval_with_several_captions_per_image_hand_computed():
    images = np.eye(3, dtype=np.float32)
    texts = np.array([[0.1, 0.9, 0.0],   # image 0: its image scores 2nd          -> t2i rank 2
                      [0.8, 0.0, 0.6],   # image 0                                 -> 1
                      [0.0, 0.5, 0.5],   # image 1: tied with image 2, lower index -> 1
                      [0.5, 0.0, 0.5],   # image 2: tied with image 0, higher index -> 2
                      [0.6, 0.8, 0.0]],  # image 2: last                           -> 3
                     dtype=np.float32)
    # image->text: image 0's best caption (t1, 0.8) is first; image 1's only caption (0.5) is behind
    # t0 (0.9) and t4 (0.8); image 2's best caption t3 (0.5) is behind t1 (0.6) and the tied t2 (index 2 < 3)
    m = retrieval_metrics(images, texts, [0, 0, 1, 2, 2], ks=(1, 2, 5))
    assert m == pytest.approx({
        "image_retrieval_recall@1": 2 / 5, "image_retrieval_recall@2": 4 / 5, "image_retrieval_recall@5": 1.0,
        "image_retrieval_mean_rank": 9 / 5, "image_retrieval_median_rank": 2.0,
        "text_retrieval_recall@1": 1 / 3, "text_retrieval_recall@2": 1 / 3, "text_retrieval_recall@5": 1.0,
        "text_retrieval_mean_rank": 7 / 3, "text_retrieval_median_rank": 3.0})
    with pytest.raises(ValueError, match="image 1 has no caption"):
        retrieval_metrics(images, texts[:2], [0, 2])


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(np.array([[np.nan, 1.0]]), [0])
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\)"):
        target_ranks(np.zeros((1, 2)), [2])


# ----------------------------------------------------------------------------------------- agreement
def test_zero_shot_equals_open_clip_zero_shot_run(tiny, monkeypatch):
    import builtins

    import open_clip
    import open_clip_train.zero_shot as oc_zero_shot
    import torch
    import torchvision
    # open_clip_train's accuracy() calls float() on a 1-element array, which numpy 2 refuses; give its module a
    # float() that accepts one, so its own accuracy()/run() code runs unchanged otherwise.
    monkeypatch.setattr(oc_zero_shot, "float", lambda x=0.0: builtins.float(np.asarray(x).reshape(())),
                        raising=False)
    run = oc_zero_shot.run
    result = zero_shot_classification(tiny.model, tiny.tokenizer, read_image_folder(tiny.images),
                                      templates=TEMPLATES, batch_size=5, workers=2, progress=False)
    dataset = torchvision.datasets.ImageFolder(str(tiny.images), transform=open_clip.image_transform(32, False))
    loader = torch.utils.data.DataLoader(dataset, batch_size=7)
    with torch.no_grad():
        classifier = open_clip.build_zero_shot_classifier(
            tiny.ref, tokenizer=open_clip.get_tokenizer("ViT-B-32"), classnames=dataset.classes,
            templates=TEMPLATES, device="cpu")
        top1, top5 = run(tiny.ref, classifier, loader, SimpleNamespace(device="cpu", precision="fp32", batch_size=7))
        preds = torch.cat([(tiny.ref.encode_image(x, normalize=True) @ classifier).argmax(1) for x, _ in loader])
    assert result.metrics["acc1"] == pytest.approx(top1, abs=1e-12)
    assert result.metrics["acc5"] == pytest.approx(top5, abs=1e-12)
    np.testing.assert_array_equal(result.confusion, confusion_matrix(dataset.targets, preds.numpy(), 6))
    assert result.num_samples == 24 and result.classnames == tuple(CLASSES)


def test_retrieval_one_caption_per_image_equals_open_clip_get_clip_metrics(tiny, tmp_path):
    import open_clip
    import torch
    from open_clip_train.train import get_clip_metrics
    paths = image_paths(tiny.images)
    words = ["red", "green", "tiny", "huge", "striped", "shiny"]
    captions = [f"a {words[i % 6]} {CLASSES[i // 4]} seen from angle {i}" for i in range(len(paths))]
    (tmp_path / "val.json").write_text(json.dumps([{"image": str(p), "caption": c} for p, c in zip(paths, captions)]))
    result = zero_shot_retrieval(tiny.model, tiny.tokenizer, read_retrieval_json(tmp_path / "val.json"),
                                 batch_size=8, workers=2, progress=False)
    preprocess = open_clip.image_transform(32, False)
    with torch.no_grad():
        img = tiny.ref.encode_image(torch.stack([preprocess(Image.open(p)) for p in paths]), normalize=True)
        txt = tiny.ref.encode_text(open_clip.get_tokenizer("ViT-B-32")(captions), normalize=True)
        expected = get_clip_metrics(img, txt, tiny.ref.logit_scale.exp())
    for ours, theirs in (("text_retrieval", "image_to_text"), ("image_retrieval", "text_to_image")):
        for k in (1, 5, 10):
            assert result.metrics[f"{ours}_recall@{k}"] == pytest.approx(expected[f"{theirs}_R@{k}"], abs=1e-12)
        assert result.metrics[f"{ours}_mean_rank"] == pytest.approx(expected[f"{theirs}_mean_rank"], abs=1e-9)
        assert result.metrics[f"{ours}_median_rank"] == expected[f"{theirs}_median_rank"]


# ----------------------------------------------------------------------------------------- unreadable images
def test_unreadable_images_are_skipped_counted_and_written(tiny, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(tiny.images, root)
    (root / "cat" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "dog" / "zz_empty.png").write_bytes(b"")
    clean = zero_shot_classification(tiny.model, tiny.tokenizer, read_image_folder(tiny.images),
                                     templates=TEMPLATES, batch_size=5, workers=0, progress=False)
    result = zero_shot_classification(tiny.model, tiny.tokenizer, read_image_folder(root),
                                      templates=TEMPLATES, batch_size=5, workers=2, progress=False)
    assert result.metrics == clean.metrics and result.num_samples == 24
    assert [(Path(s.name).name, s.index) for s in result.skipped] == [("zz_broken.jpg", 12), ("zz_empty.png", 17)]
    assert "cannot decode" in result.skipped[0].reason and "empty" in result.skipped[1].reason
    out = write_results_json(tmp_path / "r.json", result, dataset=str(root), model="tiny", pretrained=None)
    record = json.loads(out.read_text())
    assert record["num_skipped"] == 2 and record["skipped"][0]["file"].endswith("zz_broken.jpg")


# ----------------------------------------------------------------------------------------- linear probe
def test_fit_linear_probe_on_separable_hand_set_features():
    rng = np.random.default_rng(0)
    centers = 3.0 * np.eye(4)[:3]
    def draw(n):
        y = np.repeat(np.arange(3), n)
        return centers[y] + 0.1 * rng.standard_normal((len(y), 4)), y
    (xtr, ytr), (xte, yte) = draw(10), draw(5)
    metrics, details, confusion = fit_linear_probe(xtr, ytr, xte, yte, seed=0)
    assert metrics == {"lp_acc1": 1.0, "lp_acc5": 1.0, "lp_mean_per_class_recall": 1.0}
    assert details["C"] in C_GRID and details["val_acc1"] == 1.0
    assert details["num_train"] + details["num_val"] == 30 and details["num_val"] == 6
    assert len(details["sweep"]) <= 7 + 4 * 2
    assert np.trace(confusion) == 15
    # one C given: no sweep, no hold-out
    metrics, details, _ = fit_linear_probe(xtr, ytr, xte, yte, c_values=[0.316])
    assert details["C"] == 0.316 and details["sweep"] == [] and details["num_train"] == 30
    # labels the classifier cannot tell apart: chance level, not perfect
    metrics, _, _ = fit_linear_probe(xtr, rng.permutation(ytr), xte, yte, c_values=[1.0])
    assert metrics["lp_acc1"] < 0.8


def colour_folder(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for name, rgb in (("blue", (20, 30, 220)), ("red", (220, 30, 20))):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(rgb) + rng.integers(-8, 8, (36, 36, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_linear_probe_caches_features_and_reuses_them(tiny, tmp_path, monkeypatch):
    train = colour_folder(tmp_path / "train", 8, 1)
    test = colour_folder(tmp_path / "test", 3, 2)
    cache = tmp_path / "cache"
    opts = dict(feature_cache=cache, batch_size=4, workers=2, progress=False)
    first = linear_probe(tiny.model, read_image_folder(train), read_image_folder(test), **opts)
    assert first.metrics == {"lp_acc1": 1.0, "lp_acc5": 1.0, "lp_mean_per_class_recall": 1.0}
    assert first.details["cached_splits"] == [] and len(list(cache.glob("*.features.npy"))) == 2

    calls = []
    original = tiny.model.encode_image
    monkeypatch.setattr(tiny.model, "encode_image", lambda *a, **k: calls.append(1) or original(*a, **k))
    second = linear_probe(tiny.model, read_image_folder(train), read_image_folder(test), **opts)
    assert calls == [] and second.details["cached_splits"] == ["train", "test"]
    assert second.metrics == first.metrics and second.details["C"] == first.details["C"]

    Image.new("RGB", (36, 36), (225, 25, 25)).save(train / "red" / "extra.png")  # the train split changed
    third = linear_probe(tiny.model, read_image_folder(train), read_image_folder(test), **opts)
    assert calls and third.details["cached_splits"] == ["test"] and third.details["num_train"] + \
        third.details["num_val"] == 17


# ----------------------------------------------------------------------------------------- CLI
def test_cli_eval_zero_shot_writes_clip_benchmark_json_and_png(tiny, tmp_path, capsys):
    (tmp_path / "t.txt").write_text("\n".join(TEMPLATES) + "\n")
    out, png = tmp_path / "out" / "results.json", tmp_path / "cm.png"
    assert main(["eval", "--dataset", str(tiny.images), "--templates", str(tmp_path / "t.txt"), "--output", str(out),
                 "--confusion-png", str(png), "--batch-size", "6", "--workers", "2", "--no-progress", *tiny.cli]) == 0
    record = json.loads(out.read_text())
    assert list(record)[:6] == ["dataset", "model", "pretrained", "task", "metrics", "language"]
    assert record["task"] == "zeroshot_classification" and record["language"] == "en"
    assert record["pretrained"] == tiny.cli[-1] and record["num_samples"] == 24
    direct = zero_shot_classification(tiny.model, tiny.tokenizer, read_image_folder(tiny.images),
                                      templates=TEMPLATES, progress=False)
    assert record["metrics"] == pytest.approx(direct.metrics)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 200
    assert "acc1" in capsys.readouterr().out


def test_cli_eval_retrieval_and_linear_probe(tiny, tmp_path):
    paths = image_paths(tiny.images)
    (tmp_path / "caps.csv").write_text("filepath,title\n" + "".join(
        f"{p},a picture number {i}\n{p},another caption {i}\n" for i, p in enumerate(paths)))
    out = tmp_path / "ret.json"
    assert main(["eval", "--dataset", str(tmp_path / "caps.csv"), "--output", str(out), "--no-progress",
                 "--recall-k", "1", "5", *tiny.cli]) == 0
    record = json.loads(out.read_text())
    assert record["task"] == "zeroshot_retrieval" and record["details"]["num_texts"] == 48
    assert set(record["metrics"]) == {f"{d}_retrieval_{m}" for d in ("image", "text")
                                      for m in ("recall@1", "recall@5", "mean_rank", "median_rank")}
    colour_folder(tmp_path / "lp" / "train", 6, 1)
    colour_folder(tmp_path / "lp" / "test", 2, 2)
    out = tmp_path / "lp.json"
    assert main(["eval", "--task", "linear_probe", "--dataset", str(tmp_path / "lp"), "--feature-cache",
                 str(tmp_path / "cache"), "--output", str(out), "--no-progress", *tiny.cli]) == 0
    record = json.loads(out.read_text())
    assert record["task"] == "linear_probe" and record["metrics"]["lp_acc1"] == 1.0
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2


def test_cli_eval_bad_input_names_the_entry(tiny, tmp_path, capsys):
    root = tmp_path / "set"
    shutil.copytree(tiny.images, root)
    (root / "empty_class").mkdir()
    assert main(["eval", "--dataset", str(root), "--no-progress", *tiny.cli]) == 1
    assert f"class folder {root / 'empty_class'} has no images" in capsys.readouterr().err
    (tmp_path / "r.json").write_text(json.dumps([{"image": "missing.jpg", "caption": ["x"]}]))
    assert main(["eval", "--dataset", str(tmp_path / "r.json"), "--no-progress", *tiny.cli]) == 1
    assert "entry 0: " in capsys.readouterr().err
    assert main(["eval", "--dataset", str(tiny.images), "--task", "zeroshot_retrieval", *tiny.cli]) == 1
    assert "imagefolder dataset has labels, not captions" in capsys.readouterr().err


def test_results_json_has_no_nan():
    result = EvalResult("zeroshot_classification", {"acc1": 0.5, "acc5": float("nan")}, 2)
    record = result.to_json_dict(dataset="d", model="m", pretrained=None)
    assert record["metrics"]["acc5"] is None


def test_cli_eval_gives_the_same_numbers_on_the_torch_backend(tiny, tmp_path):
    import os
    import subprocess
    import sys
    out = tmp_path / "torch.json"
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    code = "import sys; from anyclip.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "eval", "--dataset", str(tiny.images), "--templates",
                           "default", "--output", str(out), "--batch-size", "10", "--no-progress", *tiny.cli],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    direct = zero_shot_classification(tiny.model, tiny.tokenizer, read_image_folder(tiny.images),
                                      templates="default", progress=False)
    assert json.loads(out.read_text())["metrics"] == pytest.approx(direct.metrics, abs=1e-12)


def test_cli_eval_reads_what_data_shapes_writes_with_no_extra_flags(tiny, tmp_path, capsys):
    assert main(["data", "shapes", str(tmp_path / "shapes"), "-n", "8", "--format", "csv", "--split", "test",
                 "--image-size", "32"]) == 0
    csv_file = tmp_path / "shapes" / "test.csv"
    assert "\t" in csv_file.read_text().splitlines()[0]  # tab-separated, in a .csv file
    out = tmp_path / "shapes.json"
    assert main(["eval", "--dataset", str(csv_file), "--output", str(out), "--no-progress", *tiny.cli]) == 0
    record = json.loads(out.read_text())
    assert record["task"] == "zeroshot_retrieval" and record["details"]["num_texts"] == 8
    capsys.readouterr()
    folder_out = tmp_path / "folder.json"  # the folder it wrote reads as its one table, with a notice
    assert main(["eval", "--dataset", str(tmp_path / "shapes"), "--output", str(folder_out), "--no-progress",
                 *tiny.cli]) == 0
    assert f"reading {csv_file}" in capsys.readouterr().err
    assert json.loads(folder_out.read_text())["metrics"] == record["metrics"]


def test_cli_eval_keeps_an_existing_results_file_unless_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "results.json"
    out.write_text("earlier results")
    argv = ["eval", "--dataset", tiny.images, "--output", out, "--no-progress", "--templates", "default", *tiny.cli]
    code, err = run_cli(argv, capsys)
    assert code == 2 and str(out) in err and "--overwrite" in err and "--output" in err
    assert out.read_text() == "earlier results"
    assert main([str(a) for a in argv] + ["--overwrite"]) == 0
    assert json.loads(out.read_text())["task"] == "zeroshot_classification"


def test_cli_eval_refuses_single_class_sets_and_names_damaged_inputs(tiny, tmp_path, capsys):
    one = tmp_path / "one"
    shutil.copytree(tiny.images / "cat", one / "cat")
    code, err = run_cli(["eval", "--dataset", one, "--output", tmp_path / "r.json", "--no-progress", *tiny.cli], capsys)
    assert code == 1 and "1 class(es) (cat)" in err and "at least two" in err
    assert not (tmp_path / "r.json").exists()
    lp = tmp_path / "lp"
    shutil.copytree(tiny.images / "cat", lp / "train" / "cat")
    shutil.copytree(tiny.images, lp / "test")
    code, err = run_cli(["eval", "--task", "linear_probe", "--dataset", lp, "--output", tmp_path / "r.json",
                       "--no-progress", *tiny.cli], capsys)
    assert code == 1 and "training split has 1 class(es)" in err
    paths = image_paths(tiny.images)
    (tmp_path / "labels.csv").write_text("filepath,label\n" + f"{paths[0]},cat\n{tmp_path / 'gone.jpg'},dog\n"
                                         + f"{paths[1]},dog,extra\n")
    code, err = run_cli(["eval", "--dataset", tmp_path / "labels.csv", "--output", tmp_path / "r.json",
                       "--no-progress", *tiny.cli], capsys)
    assert code != 0 and str(tmp_path / "labels.csv") in err and "line" in err
    (tmp_path / "labels.csv").write_text("filepath,label\n" + f"{paths[0]},cat\n{tmp_path / 'gone.jpg'},dog\n")
    code, err = run_cli(["eval", "--dataset", tmp_path / "labels.csv", "--output", tmp_path / "r.json",
                       "--no-progress", *tiny.cli], capsys)
    assert code != 0 and "gone.jpg" in err and "not found" in err


def test_cli_eval_reports_each_unreadable_image_and_refuses_a_set_with_none_readable(tiny, tmp_path, capsys):
    root = tmp_path / "set"
    shutil.copytree(tiny.images, root)
    (root / "cat" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "dog" / "zz_empty.png").write_bytes(b"")
    code, err = run_cli(["eval", "--dataset", root, "--output", tmp_path / "r.json", "--no-progress", *tiny.cli], capsys)
    assert code == 0
    lines = [line for line in err.splitlines() if line.startswith("anyclip eval: skipped")]
    assert len(lines) == 2 and "zz_broken.jpg" in lines[0] and "zz_empty.png" in lines[1]
    bad = tmp_path / "bad"
    for name in ("cat", "dog"):
        (bad / name).mkdir(parents=True)
        (bad / name / "x.jpg").write_bytes(b"not a jpeg")
    code, err = run_cli(["eval", "--dataset", bad, "--output", tmp_path / "r2.json", "--no-progress", *tiny.cli],
                      capsys)
    assert code != 0 and "no image could be scored (2 unreadable" in err and not (tmp_path / "r2.json").exists()
