"""Dataset readers (ImageFolder, CSV, WebDataset, retrieval JSON/CSV) and the parallel image loader.

Expected values come from how each fixture is built; every bad-input case checks that the message
names the offending entry.
"""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anyclip.data.common import DatasetError, detect_dataset_type
from anyclip.data.labelled import LabelledImages, read_classnames, read_image_folder, read_labelled_csv, read_webdataset
from anyclip.data.loader import iter_image_batches
from anyclip.data.retrieval import RetrievalSet, read_retrieval_csv, read_retrieval_json
from anyclip.eval.zero_shot import read_templates
from anyclip.transforms import image_transform


def jpeg(path: Path, value: int, size=(20, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 7)).save(path, format="JPEG")
    return path


def jpeg_bytes(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), (value, value, value)).save(buf, format="JPEG")
    return buf.getvalue()


def write_shard(path: Path, samples) -> Path:
    """``samples``: ``(key, {ext: bytes})`` written in order as WebDataset members."""
    with tarfile.open(path, "w") as tar:
        for key, parts in samples:
            for ext, data in parts.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


# ----------------------------------------------------------------------------------------- ImageFolder
def test_image_folder_sorted_classes_recursive_and_non_images_ignored(tmp_path):
    jpeg(tmp_path / "golden_retriever" / "b.jpg", 1)
    jpeg(tmp_path / "golden_retriever" / "sub" / "a.jpg", 2)
    jpeg(tmp_path / "ant" / "x.JPG", 3)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    data = read_image_folder(tmp_path)
    assert data.classnames == ("ant", "golden retriever")
    assert [(Path(p).relative_to(tmp_path).as_posix(), y) for p, y in data.items] == [
        ("ant/x.JPG", 0), ("golden_retriever/b.jpg", 1), ("golden_retriever/sub/a.jpg", 1)]


def test_image_folder_maps_folders_by_name_onto_classnames_and_leaves_others_empty(tmp_path):
    jpeg(tmp_path / "dog" / "1.jpg", 1)
    jpeg(tmp_path / "sea_lion" / "1.jpg", 2)
    data = read_image_folder(tmp_path, ["cat", "dog", "sea lion", "zebra"])
    assert sorted(y for _, y in data.items) == [1, 2]
    assert data.num_classes == 4


def test_image_folder_maps_wnid_folders_in_sorted_order(tmp_path):
    jpeg(tmp_path / "n02" / "1.jpg", 1)
    jpeg(tmp_path / "n01" / "1.jpg", 2)
    data = read_image_folder(tmp_path, ["tench", "goldfish"])
    assert [(Path(p).parent.name, y) for p, y in data.items] == [("n01", 0), ("n02", 1)]
    with pytest.raises(DatasetError, match=r"2 class folders but 3 classnames.*n01"):
        read_image_folder(tmp_path, ["a", "b", "c"])


def test_image_folder_class_folder_without_images_is_named(tmp_path):
    jpeg(tmp_path / "cat" / "1.jpg", 1)
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"class folder .*dog has no images"):
        read_image_folder(tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        read_image_folder(tmp_path / "nope")


# ----------------------------------------------------------------------------------------- CSV
def test_csv_labels_by_name_by_id_and_relative_paths(tmp_path):
    for i in range(3):
        jpeg(tmp_path / "img" / f"{i}.jpg", i)
    (tmp_path / "val.csv").write_text("filepath,label\nimg/0.jpg,dog\nimg/1.jpg,cat\nimg/2.jpg,0\n")
    data = read_labelled_csv(tmp_path / "val.csv", ["cat", "dog"])
    assert [y for _, y in data.items] == [1, 0, 0]
    assert data.items[0][0] == str(tmp_path / "img" / "0.jpg")
    # no classnames: text labels become sorted classes
    (tmp_path / "names.tsv").write_text("path\tclass\nimg/0.jpg\tzebra\nimg/1.jpg\tant\n")
    data = read_labelled_csv(tmp_path / "names.tsv")
    assert data.classnames == ("ant", "zebra") and [y for _, y in data.items] == [1, 0]
    # integer labels without classnames stay ids
    (tmp_path / "ids.csv").write_text("image;target\nimg/0.jpg;4\nimg/1.jpg;2\n")
    data = read_labelled_csv(tmp_path / "ids.csv", separator=";")
    assert data.classnames is None and [y for _, y in data.items] == [4, 2] and data.num_classes == 5


def test_csv_label_not_in_classnames_names_line_and_label(tmp_path):
    jpeg(tmp_path / "a.jpg", 1)
    (tmp_path / "val.csv").write_text("filepath,label\na.jpg,cat\na.jpg,zebra\n")
    with pytest.raises(DatasetError, match=r"val.csv line 3: label 'zebra' is not one of the 2 classnames"):
        read_labelled_csv(tmp_path / "val.csv", ["cat", "dog"])
    (tmp_path / "ids.csv").write_text("filepath,label\na.jpg,7\n")
    with pytest.raises(DatasetError, match=r"line 2: label '7'"):
        read_labelled_csv(tmp_path / "ids.csv", ["cat", "dog"])


def test_csv_missing_image_column_and_bad_rows_are_named(tmp_path):
    jpeg(tmp_path / "a.jpg", 1)
    (tmp_path / "val.csv").write_text("filepath,label\na.jpg,cat\nmissing.jpg,cat\n")
    with pytest.raises(DatasetError, match=r"1 image file\(s\) not found \(line 3: .*missing.jpg"):
        read_labelled_csv(tmp_path / "val.csv")
    (tmp_path / "cols.csv").write_text("foo,bar\na.jpg,cat\n")
    with pytest.raises(DatasetError, match=r"which column holds the image path.*'foo', 'bar'"):
        read_labelled_csv(tmp_path / "cols.csv")
    with pytest.raises(DatasetError, match=r"no column 'pic'"):
        read_labelled_csv(tmp_path / "cols.csv", img_key="pic", label_key="bar")
    (tmp_path / "ragged.csv").write_text("filepath,label\na.jpg,cat,extra\n")
    with pytest.raises(DatasetError, match=r"ragged.csv line 2: 3 fields"):
        read_labelled_csv(tmp_path / "ragged.csv")


# ----------------------------------------------------------------------------------------- WebDataset
def test_webdataset_brace_pattern_order_labels_and_classnames_file(tmp_path):
    write_shard(tmp_path / "s-000.tar", [("a", {"jpg": jpeg_bytes(1), "cls": b"1"}),
                                         ("b", {"png": jpeg_bytes(2), "cls": b"0\n", "txt": b"x"})])
    write_shard(tmp_path / "s-001.tar", [("dir/c", {"cls": b"2", "webp": jpeg_bytes(3)})])
    (tmp_path / "classnames.txt").write_text("cat\ndog\nfish\n")
    data = read_webdataset(str(tmp_path / "s-{000..001}.tar"))
    assert data.classnames == ("cat", "dog", "fish") and data.num_items is None
    samples = list(data.samples())
    assert [(s.name[len(str(tmp_path)) + 1:], s.label) for s in samples] == [
        ("s-000.tar:a", 1), ("s-000.tar:b", 0), ("s-001.tar:dir/c", 2)]
    assert samples[0].source[1] == jpeg_bytes(1)
    assert [s.label for s in read_webdataset(tmp_path, ["x", "y", "z"]).samples()] == [1, 0, 2]
    assert data.fingerprint() == read_webdataset(str(tmp_path / "s-{000..001}.tar")).fingerprint()


def test_webdataset_bad_samples_name_shard_and_key(tmp_path):
    write_shard(tmp_path / "bad.tar", [("ok", {"jpg": jpeg_bytes(1), "cls": b"0"}),
                                       ("k7", {"jpg": jpeg_bytes(1), "cls": b"5"})])
    with pytest.raises(DatasetError, match=r"bad.tar:k7: class id 5 is not among the 2 classnames"):
        list(read_webdataset(tmp_path / "bad.tar", ["a", "b"]).samples())
    write_shard(tmp_path / "nocls.tar", [("k1", {"jpg": jpeg_bytes(1)})])
    with pytest.raises(DatasetError, match=r"nocls.tar:k1: sample has no .cls"):
        list(read_webdataset(tmp_path / "nocls.tar").samples())
    write_shard(tmp_path / "noimg.tar", [("k2", {"cls": b"1", "txt": b"hi"})])
    with pytest.raises(DatasetError, match=r"noimg.tar:k2: sample has no image"):
        list(read_webdataset(tmp_path / "noimg.tar").samples())
    with pytest.raises(DatasetError, match=r"shard\(s\) not found.*s-002.tar"):
        read_webdataset(str(tmp_path / "s-{001..002}.tar"))
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar file at all" * 40)
    with pytest.raises(DatasetError, match=r"junk.tar: cannot read the tar shard"):
        list(read_webdataset(tmp_path / "junk.tar").samples())


# ----------------------------------------------------------------------------------------- retrieval
def test_retrieval_json_list_coco_karpathy_and_csv(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        jpeg(tmp_path / "im" / name, 5)
    (tmp_path / "list.json").write_text(json.dumps([
        {"image": "im/a.jpg", "caption": ["a one", "a two"]}, {"filepath": "im/b.jpg", "caption": "b one"},
        {"image": "im/a.jpg", "captions": ["a three"]}]))
    data = read_retrieval_json(tmp_path / "list.json")
    assert data.images == (str(tmp_path / "im/a.jpg"), str(tmp_path / "im/b.jpg"))
    assert data.texts == ["a one", "a two", "a three", "b one"]
    assert data.text_to_image.tolist() == [0, 0, 0, 1]
    coco = {"images": [{"id": 9, "file_name": "b.jpg"}, {"id": 3, "file_name": "a.jpg"}],
            "annotations": [{"image_id": 3, "caption": "A"}, {"image_id": 9, "caption": "B"},
                            {"image_id": 3, "caption": "A2"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    data = read_retrieval_json(tmp_path / "coco.json", root=tmp_path / "im")
    assert [Path(p).name for p in data.images] == ["b.jpg", "a.jpg"] and data.captions == (("B",), ("A", "A2"))
    karpathy = {"images": [{"filepath": "im", "filename": "a.jpg", "split": "test", "sentences": [{"raw": "x"}]},
                           {"filepath": "im", "filename": "b.jpg", "split": "train", "sentences": [{"raw": "y"}]}]}
    (tmp_path / "k.json").write_text(json.dumps(karpathy))
    assert read_retrieval_json(tmp_path / "k.json").texts == ["x"]
    assert read_retrieval_json(tmp_path / "k.json", split="train").texts == ["y"]
    (tmp_path / "r.csv").write_text("image,caption\nim/b.jpg,first b\nim/a.jpg,first a\nim/b.jpg,second b\n")
    data = read_retrieval_csv(tmp_path / "r.csv")
    assert data.captions == (("first b", "second b"), ("first a",))


def test_retrieval_missing_images_and_bad_entries_are_named(tmp_path):
    jpeg(tmp_path / "a.jpg", 5)
    (tmp_path / "r.json").write_text(json.dumps([{"image": "a.jpg", "caption": "x"},
                                                 {"image": "gone.jpg", "caption": "y"}]))
    with pytest.raises(DatasetError, match=r"1 image file\(s\) not found \(entry 1: .*gone.jpg"):
        read_retrieval_json(tmp_path / "r.json")
    (tmp_path / "r.csv").write_text("filepath,title\na.jpg,x\nlost.png,y\n")
    with pytest.raises(DatasetError, match=r"line 3: .*lost.png"):
        read_retrieval_csv(tmp_path / "r.csv")
    (tmp_path / "e.json").write_text(json.dumps([{"image": "a.jpg", "caption": []}]))
    with pytest.raises(DatasetError, match=r"entry 0 \(a.jpg\): no captions"):
        read_retrieval_json(tmp_path / "e.json")
    (tmp_path / "n.json").write_text(json.dumps([{"image": "a.jpg", "caption": ["ok", 3]}]))
    with pytest.raises(DatasetError, match=r"entry 0 \(a.jpg\): caption 1 is int"):
        read_retrieval_json(tmp_path / "n.json")
    (tmp_path / "c.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                                 "annotations": [{"image_id": 2, "caption": "z"}]}))
    with pytest.raises(DatasetError, match=r"annotations\[0\]: image_id 2 is not in"):
        read_retrieval_json(tmp_path / "c.json")


# ----------------------------------------------------------------------------------------- small helpers
def test_classnames_templates_and_type_detection(tmp_path):
    (tmp_path / "names.txt").write_text("cat\n\ndog\ncat\n")
    with pytest.raises(DatasetError, match=r"names.txt line 4: class name 'cat' repeats line 1"):
        read_classnames(tmp_path / "names.txt")
    assert len(read_classnames("imagenet")) == 1000
    (tmp_path / "t.txt").write_text("a photo of a {c}.\nitap of a {}.\nno slot here\n")
    with pytest.raises(DatasetError, match=r"t.txt line 3: template 'no slot here'"):
        read_templates(tmp_path / "t.txt")
    assert read_templates(["a {c}", "b {}"]) == ("a {}", "b {}")
    assert len(read_templates(None, read_classnames("imagenet"))) == 80
    assert read_templates(None, ["x"]) == ("a photo of a {}.",)
    jpeg(tmp_path / "f" / "c" / "1.jpg", 1)
    (tmp_path / "lab.csv").write_text("filepath,label\n")
    (tmp_path / "cap.tsv").write_text("filepath\ttitle\n")
    (tmp_path / "both.csv").write_text("filepath,label,caption\n")
    assert detect_dataset_type(tmp_path / "f") == "imagefolder"
    assert detect_dataset_type(tmp_path / "lab.csv") == "csv"
    assert detect_dataset_type(tmp_path / "cap.tsv") == "retrieval-csv"
    assert detect_dataset_type(tmp_path / "both.csv", "zeroshot_retrieval") == "retrieval-csv"
    assert detect_dataset_type("x/{0..3}.tar") == "webdataset"
    with pytest.raises(DatasetError, match="cannot tell"):
        detect_dataset_type(tmp_path / "both.csv")


def test_from_items_and_from_pairs_check_their_input():
    with pytest.raises(DatasetError, match=r"item 1 \(b.jpg\): label 2"):
        LabelledImages.from_items(["a.jpg", "b.jpg"], [0, 2], ["x", "y"])
    with pytest.raises(DatasetError, match=r"entry 1 \(b.jpg\): caption 0 is empty"):
        RetrievalSet.from_pairs(["a.jpg", "b.jpg"], ["ok", [" "]])


# ----------------------------------------------------------------------------------------- loader
def test_loader_keeps_order_skips_unreadable_and_reports_them(tmp_path):
    paths = [jpeg(tmp_path / f"{i}.jpg", 20 * i, size=(10 + i, 12)) for i in range(7)]
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    sources = [str(p) for p in paths[:3]] + [str(tmp_path / "bad.jpg")] + [str(p) for p in paths[3:]]
    sources.append(("shard:key", jpeg_bytes(99)))
    sources.append(("shard:broken", b"nope"))
    preprocess = image_transform(size=8)
    in_memory = Image.open(io.BytesIO(jpeg_bytes(99)))
    expected = np.stack([preprocess(Image.open(p)) for p in paths] + [preprocess(in_memory)])
    for workers in (0, 3):
        batches = list(iter_image_batches(sources, preprocess, batch_size=4, workers=workers, progress=False))
        assert [len(b.pixels) + len(b.skipped) for b in batches] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate([b.pixels for b in batches]), expected)
        assert np.concatenate([b.indices for b in batches]).tolist() == [0, 1, 2, 4, 5, 6, 7, 8]
        skipped = [s for b in batches for s in b.skipped]
        assert [(s.index, s.name) for s in skipped] == [(3, str(tmp_path / "bad.jpg")), (9, "shard:broken")]
        assert "cannot decode" in skipped[0].reason and "not an image" in skipped[1].reason
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_image_batches(sources, preprocess, batch_size=0))
