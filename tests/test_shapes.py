"""Synthetic shapes dataset: determinism, held-out splits, captions, drawn colours, writers, config errors."""

import csv
import json
import pickle
import re
import tarfile
from collections import Counter

import numpy as np
import pytest

from anyclip.data.shapes import (
    COLOURS,
    DEFAULT_HELD_OUT,
    LABEL_KEYS,
    PLAIN_BACKGROUNDS,
    ShapesConfig,
    ShapesDataset,
    zero_shot_tasks,
)
from anyclip.data.shapes_io import make_shapes, write_csv, write_webdataset

NUMBERS = {1: ("a", "an", "one"), 2: ("two",), 3: ("three",)}


def _pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_same_seed_same_samples_in_any_order():
    a, b = ShapesDataset(ShapesConfig(seed=5), "train", 40), ShapesDataset(ShapesConfig(seed=5), "train", 40)
    forward = [a[i] for i in range(40)]
    for i in reversed(range(40)):
        image, caption, labels = b[i]
        assert caption == forward[i][1] and labels == forward[i][2]
        assert np.array_equal(_pixels(image), _pixels(forward[i][0]))
    assert b.describe(7) == (forward[7][1], forward[7][2])
    assert np.array_equal(_pixels(b[-1][0]), _pixels(forward[39][0]))


def test_seed_and_split_change_samples():
    base = ShapesDataset(ShapesConfig(seed=0), "train", 20)
    for other in (ShapesDataset(ShapesConfig(seed=1), "train", 20), ShapesDataset(ShapesConfig(seed=0), "test", 20)):
        same = sum(np.array_equal(_pixels(base[i][0]), _pixels(other[i][0])) for i in range(20))
        assert same == 0
        assert [base.describe(i)[0] for i in range(20)] != [other.describe(i)[0] for i in range(20)]


def test_index_errors():
    ds = ShapesDataset(size=3)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(TypeError):
        ds["0"]
    assert len(ds) == 3 and len(list(ds)) == 3


def test_held_out_combinations_only_in_held_out_split():
    cfg = ShapesConfig()
    assert cfg.held_out == DEFAULT_HELD_OUT
    held = set(cfg.held_out)
    train = ShapesDataset(cfg, "train", 2000)
    seen = {(lab["colour"], lab["shape"]) for lab in (train.describe(i)[1] for i in range(len(train)))}
    assert not seen & held
    assert {c for c, _ in seen} == set(cfg.colours) and {s for _, s in seen} == set(cfg.shapes)
    test = ShapesDataset(cfg, "test", 500)
    assert not {(lab["colour"], lab["shape"]) for lab in (test.describe(i)[1] for i in range(500))} & held
    heldout = ShapesDataset(cfg, "test_heldout", 300)
    combos = Counter((lab["colour"], lab["shape"]) for lab in (heldout.describe(i)[1] for i in range(300)))
    assert set(combos) == held


def test_captions_name_colour_and_shape_with_correct_grammar():
    ds = ShapesDataset(ShapesConfig(), "train", 1500)
    counts = Counter()
    for i in range(len(ds)):
        caption, labels = ds.describe(i)
        count, shape = labels["count"], labels["shape"]
        counts[count] += 1
        noun = shape if count == 1 else shape + ("es" if shape.endswith("s") else "s")
        words = caption.rstrip(".").split()
        assert labels["colour"] in words, caption
        assert noun in words, caption
        if count > 1:
            assert shape not in words, caption  # no singular noun with a plural count
        assert words[words.index(noun) - 1] in (labels["colour"], labels["size"], *NUMBERS[count]) or \
            "in" in words, caption
        assert any(w in NUMBERS[count] for w in words), caption
        assert not re.search(r"\ba [aeiou]|\ban [^aeiou ]", caption), caption
        assert "there is" not in caption or count == 1, caption
        assert "there are" not in caption or count > 1, caption
        if labels["position"] is not None and ("left" in words or "right" in words):
            assert any(side in labels["position"] for side in ("left", "right")), caption
    assert set(counts) == {1, 2, 3}


def test_drawn_object_has_labelled_colour_and_position():
    cfg = ShapesConfig(backgrounds=tuple(PLAIN_BACKGROUNDS), seed=2)
    ds = ShapesDataset(cfg, "train", 150)
    palette = np.array([COLOURS[c] for c in cfg.colours])
    for i in range(len(ds)):
        image, _, labels = ds[i]
        px = _pixels(image).reshape(-1, 3)
        corners = _pixels(image)[[0, 0, -1, -1], [0, -1, 0, -1]]
        background = np.median(corners, axis=0)
        fg = px[np.abs(px - background).sum(1) > 60]
        colour, _ = Counter(map(tuple, fg)).most_common(1)[0]
        assert np.abs(np.subtract(colour, labels["rgb"])).max() <= 1, (i, colour, labels)
        nearest = cfg.colours[int(np.argmin(((palette - colour) ** 2).sum(1)))]
        assert nearest == labels["colour"], (i, colour, labels)
        if labels["count"] == 1 and labels["position"] != "centre":
            ys, xs = np.nonzero(np.abs(_pixels(image) - background).sum(2) > 60)
            if "left" in labels["position"]:
                assert xs.mean() < 28
            if "right" in labels["position"]:
                assert xs.mean() > 36
            if "top" in labels["position"]:
                assert ys.mean() < 28
            if "bottom" in labels["position"]:
                assert ys.mean() > 36


def test_object_colour_survives_every_background():
    ds = ShapesDataset(ShapesConfig(seed=4), "train", 120)
    backgrounds = set()
    for i in range(len(ds)):
        image, _, labels = ds[i]
        backgrounds.add(labels["background"])
        exact = np.all(_pixels(image) == labels["rgb"], axis=2).sum()
        assert exact >= 20 * labels["count"], (i, labels, exact)
    assert {"gradient", "noise"} <= backgrounds


def test_write_csv(tmp_path):
    ds = ShapesDataset(ShapesConfig(seed=3), "val", 30)
    for _ in range(2):  # re-running overwrites in place
        path = write_csv(ds, tmp_path / "out", workers=2, progress=False)
    assert path == (tmp_path / "out" / "val.csv").absolute()
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert list(rows[0]) == ["filepath", "title", *LABEL_KEYS] and len(rows) == 30
    for i, row in enumerate(rows):
        caption, labels = ds.describe(i)
        assert row["title"] == caption and row["shape"] == labels["shape"] and row["count"] == str(labels["count"])
        assert row["position"] == (labels["position"] or "")
        from PIL import Image
        with Image.open(row["filepath"]) as im:
            assert im.size == (64, 64)
    assert not list((tmp_path / "out").rglob("*.tmp"))
    assert json.loads((tmp_path / "out" / "info.json").read_text())["size"] == 30


def test_config_round_trips_through_info_json(tmp_path):
    cfg = ShapesConfig(shapes=("circle", "square", "star"), colours=("red", "blue"), max_count=2,
                       held_out=[("red", "star")], seed=5)
    path = write_csv(ShapesDataset(cfg, "train", 4), tmp_path / "d", progress=False)
    for where in (path, path.parent, str(path)):
        assert ShapesConfig.near(where) == cfg
    assert ShapesConfig.near(tmp_path / "elsewhere.csv") is None
    with pytest.raises(ValueError, match="unknown shapes config keys \\['colors'\\]"):
        ShapesConfig.from_dict({"colors": ["red"]})
    (path.parent / "info.json").write_text('{"config": {"max_count": 9}}')
    with pytest.raises(ValueError, match="info.json: not a shapes info.json .*max_count"):
        ShapesConfig.near(path)


def test_write_webdataset_is_valid_and_independent_of_workers(tmp_path):
    ds = ShapesDataset(ShapesConfig(seed=1), "train", 25)
    one = write_webdataset(ds, tmp_path / "a", shard_size=10, workers=1, progress=False)
    two = write_webdataset(ds, tmp_path / "b", shard_size=10, workers=2, progress=False)
    write_webdataset(ds, tmp_path / "b", shard_size=10, workers=2, progress=False)  # re-run
    assert [p.name for p in one] == ["00000.tar", "00001.tar", "00002.tar"]
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]
    assert not list(tmp_path.rglob("*.tmp"))
    members = {}
    for path in one:
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                members.setdefault(key, {})[ext] = tar.extractfile(m).read()
    assert sorted(members) == [f"{i:09d}" for i in range(25)]
    tasks = zero_shot_tasks(ds.config)
    for i, (key, files) in enumerate(sorted(members.items())):
        assert set(files) == {"jpg", "txt", "json", "cls"}
        caption, labels = ds.describe(i)
        meta = json.loads(files["json"])
        assert files["txt"].decode() == caption == meta["caption"] and meta["key"] == key
        assert {k: meta[k] for k in LABEL_KEYS} == {k: labels[k] for k in LABEL_KEYS}
        assert int(files["cls"]) == tasks["shape"].target(labels)
    info = json.loads((tmp_path / "a" / "info.json").read_text())
    assert info["pattern"] == "{00000..00002}.tar" and info["size"] == 25


def test_make_shapes_png(tmp_path):
    paths = make_shapes(tmp_path, "test", 5, "wds", image_format="png", progress=False)
    with tarfile.open(paths[0]) as tar:
        assert sorted(m.name for m in tar.getmembers())[:4] == [f"000000000.{e}" for e in ("cls", "json", "png", "txt")]


def test_zero_shot_tasks():
    cfg = ShapesConfig()
    tasks = zero_shot_tasks(cfg)
    assert set(tasks) == {"shape", "colour", "combination"}
    assert tasks["shape"].classnames == cfg.shapes and tasks["colour"].classnames == cfg.colours
    assert tasks["combination"].split == "test_heldout" and len(tasks["combination"].classnames) == 64
    prompts = [t(c) for task in tasks.values() for c in task.classnames for t in task.templates]
    assert "a photo of an orange circle" in prompts and "a yellow hexagon" in prompts
    assert not any(re.search(r"\ba [aeiou]", p) for p in prompts)
    labels = ShapesDataset(cfg, "test_heldout", 1).describe(0)[1]
    combo = tasks["combination"]
    assert combo.classnames[combo.target(labels)] == f"{labels['colour']} {labels['shape']}"
    assert pickle.loads(pickle.dumps(tasks))["colour"].templates[0]("red") == "a red circle"


@pytest.mark.parametrize("kwargs, field", [
    (dict(image_size=8), "image_size"),
    (dict(image_size=64.0), "image_size"),
    (dict(max_count=5), "max_count"),
    (dict(seed=-1), "seed"),
    (dict(colours=("red", "magenta")), "magenta"),
    (dict(shapes=("circle", "blob")), "blob"),
    (dict(shapes="circle"), "shapes"),
    (dict(colours=("red", "red")), "colours"),
    (dict(sizes=("huge",)), "huge"),
    (dict(backgrounds=("plaid",)), "plaid"),
    (dict(held_out=[("red", "blob")]), "held_out"),
    (dict(held_out=[("mauve", "circle")]), "held_out"),
    (dict(held_out=["red"]), "held_out"),
    (dict(colours=("red",), shapes=("circle",), held_out=[("red", "circle")]), "no training example"),
    (dict(colours=("white", "red"), backgrounds=("light grey", "beige")), "backgrounds"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        ShapesConfig(**kwargs)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        ShapesDataset(split="bogus")
    with pytest.raises(ValueError, match="size"):
        ShapesDataset(size=-1)
    with pytest.raises(ValueError, match="test_heldout"):
        ShapesDataset(ShapesConfig(held_out=()), "test_heldout")
    with pytest.raises(ValueError, match="shard_size"):
        write_webdataset(ShapesDataset(size=2), tmp_path, shard_size=0)
    with pytest.raises(ValueError, match="image_format"):
        write_csv(ShapesDataset(size=2), tmp_path / "x", image_format="gif")
    with pytest.raises(ValueError, match="format"):
        make_shapes(tmp_path, n=2, format="zip")
    assert not (tmp_path / "x").exists()
