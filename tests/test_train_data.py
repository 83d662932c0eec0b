"""Training data: CSV, WebDataset and TFRecord pairs, seeded resumable batches, skip-and-count of bad samples."""

import base64
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import anyclip
from anyclip.data import DatasetError, ShapesConfig, ShapesDataset, write_csv, write_webdataset
from anyclip.train.data import ImageTextSet, ShardMember, TrainBatches, open_train_data
from anyclip.transforms import train_transform

N = 24


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    ds = ShapesDataset(ShapesConfig(image_size=32, seed=3), "train", N)
    write_csv(ds, root / "csv", progress=False)
    write_webdataset(ds, root / "wds", shard_size=10, progress=False)
    return root, [ds.describe(i)[0] for i in range(N)]


def batches(data, batch_size=5, workers=2, seed=0):
    return TrainBatches(data, train_transform(size=32), anyclip.get_tokenizer("ViT-B-32"), batch_size, seed=seed,
                        workers=workers)


def test_csv_and_webdataset_hold_the_same_pairs(shapes):
    root, captions = shapes
    csv_set = open_train_data(str(root / "csv" / "train.csv"))
    wds_set = open_train_data(str(root / "wds" / "{00000..00002}.tar"))
    assert list(csv_set.captions) == captions
    assert sorted(wds_set.captions) == sorted(captions) and len(wds_set) == N
    a = next(batches(csv_set, workers=0).epoch(0))
    b = next(batches(wds_set, workers=0).epoch(0))
    assert a.images.shape == (5, 32, 32, 3) and a.texts.shape == (5, 77) and a.texts.dtype == np.int32
    # the same sample (by caption) gets the same pixels from either source when its index is the same
    assert list(wds_set.captions) == captions  # shards keep the write order, so indices agree
    np.testing.assert_array_equal(a.images, b.images)


def test_shard_members_feed_the_eval_loader_and_retrieval_sets(shapes):
    from anyclip.data.loader import iter_image_batches
    from anyclip.data.retrieval import RetrievalSet
    from anyclip.transforms import image_transform
    root, captions = shapes
    csv_set = open_train_data(str(root / "csv" / "train.csv"))
    wds_set = open_train_data(str(root / "wds" / "{00000..00002}.tar"))
    missing = ShardMember(str(root / "no-such-shard.tar"), "x.jpg", 0, 10)
    preprocess = image_transform(size=32)
    got = list(iter_image_batches([*wds_set.images[:4], missing], preprocess, batch_size=8, workers=2, progress=False))
    want = list(iter_image_batches(list(csv_set.images[:4]), preprocess, batch_size=8, workers=0, progress=False))
    np.testing.assert_array_equal(got[0].pixels, want[0].pixels)
    [skip] = got[0].skipped
    assert skip.index == 4 and skip.name.endswith("no-such-shard.tar:x.jpg") and skip.reason.startswith("cannot read")
    val = RetrievalSet.from_pairs(wds_set.images[:3], wds_set.captions[:3], name="shards")
    assert val.images == wds_set.images[:3] and val.texts == captions[:3] and len(val.fingerprint()) == 64


def test_batches_are_seeded_independent_of_workers_and_resume_exactly(shapes):
    root, _ = shapes
    data = open_train_data(str(root / "csv" / "train.csv"))
    full = list(batches(data, workers=0).epoch(0))
    assert len(full) == N // 5
    seen = np.concatenate([b.indices for b in full])
    assert len(set(seen.tolist())) == len(seen)  # no sample twice in an epoch
    threaded = list(batches(data, workers=3).epoch(0))
    for x, y in zip(full, threaded):
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.texts, y.texts)
    resumed = list(batches(data, workers=2).epoch(0, start=full[1].position))
    assert len(resumed) == len(full) - 2
    for x, y in zip(full[2:], resumed):
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.images, y.images)
    other_epoch = next(batches(data).epoch(1))
    assert not np.array_equal(other_epoch.indices, full[0].indices)


def test_unreadable_images_and_empty_captions_are_skipped_and_counted(shapes, tmp_path):
    root, _ = shapes
    data = open_train_data(str(root / "csv" / "train.csv"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    images = list(data.images)
    captions = list(data.captions)
    images[3], captions[7] = str(broken), "  "
    bad = ImageTextSet("bad", tuple(images), tuple(captions))
    loader = batches(bad, workers=2)
    out = list(loader.epoch(0))
    reasons = {i: r for b in out for i, r in b.skipped}
    used = np.concatenate([b.indices for b in out])
    assert 3 not in used and 7 not in used
    assert loader.skipped_total == 2 and reasons[7] == "empty caption" and 3 in reasons
    assert all(len(b.indices) == 5 for b in out)  # batches are refilled from the next samples


def test_bad_training_data_is_named(shapes, tmp_path):
    root, _ = shapes
    not_tar = tmp_path / "00000.tar"
    not_tar.write_text("this is not a tar file")
    with pytest.raises(DatasetError, match="00000.tar: not a readable tar shard"):
        open_train_data(str(not_tar))
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("path_to_image\tlabel\nx.jpg\tcat\n")
    with pytest.raises(DatasetError, match="cannot tell which column holds the image paths"):
        open_train_data(str(bad_csv))
    data = open_train_data(str(root / "csv" / "train.csv"))
    with pytest.raises(ValueError, match="batch_size must be in"):
        batches(data, batch_size=N + 1)
    with pytest.raises(ValueError, match="unknown dataset type"):
        open_train_data("x", "parquet")


# --- TFRecords, written by TensorFlow's own writer in a child process (TF next to torch's triton crashes) ---

_TF_WRITER = """
import base64, json, sys
import tensorflow as tf

def feature(kind, values):
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[base64.b64decode(v) for v in values]))
    if kind == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))

for path, records in json.load(sys.stdin).items():
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            if isinstance(record, str):  # raw record bytes, not an Example
                writer.write(base64.b64decode(record))
            else:
                features = {key: feature(*value) for key, value in record.items()}
                writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
"""


def _b64(data) -> str:
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def example(image: bytes | None, caption: str | None, /, **extra) -> dict:
    """An Example in open_clip_jax's keys (``jpg`` / ``caption``), plus img2dataset-like extra features."""
    record = {"key": ["bytes", [_b64("000000001")]], "width": ["int64", [32]], "score": ["float", [0.5]], **extra}
    if image is not None:
        record["jpg"] = ["bytes", [_b64(image)]]
    if caption is not None:
        record["caption"] = ["bytes", [_b64(caption)]]
    return record


def write_tfrecords(files: dict) -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", _TF_WRITER], input=json.dumps({str(k): v for k, v in files.items()}),
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def tfrecords(shapes):
    """The shapes CSV's pairs as 3 TFRecord files (8 records each), and a file of problem records."""
    root, captions = shapes
    csv_set = open_train_data(str(root / "csv" / "train.csv"))
    images = [Path(p).read_bytes() for p in csv_set.images]
    folder = root / "tfrecords"
    folder.mkdir()
    files = {folder / f"{k:05d}.tfrecord": [example(images[i], captions[i]) for i in range(8 * k, 8 * k + 8)]
             for k in range(3)}
    problems = root / "problems" / "00000.tfrecord"
    problems.parent.mkdir()
    files[problems] = [
        example(images[0], captions[0]),
        _b64(b"not an Example"),                                   # framing fine, protobuf not
        example(images[1], None),                                   # no caption feature
        example(images[2], None, caption=["int64", [7]]),           # caption of the wrong kind
        example(images[3], None, caption=["bytes", [_b64("a"), _b64("b")]]),  # two captions
        example(images[4], "   "),                                  # empty caption: skipped when loaded
        example(b"\xff\xd8 not really a jpeg", "a broken picture"),  # undecodable: skipped when loaded
        example(images[5], captions[5], txt=["bytes", [_b64("img2dataset caption")]]),
    ]
    write_tfrecords(files)
    return folder, problems, csv_set


def test_tfrecords_written_by_tensorflow_read_back_without_it(tfrecords):
    folder, _, csv_set = tfrecords
    data = open_train_data(str(folder / "{00000..00002}.tfrecord"), "tfrecord")
    assert data.captions == csv_set.captions and len(data) == N
    assert isinstance(data.images[9], ShardMember) and data.images[9].name == "record 1"
    assert data.images[9].read()[1] == Path(csv_set.images[9]).read_bytes()  # the exact JPEG bytes
    # "auto" recognises open_clip_jax's folder, globs and brace patterns; keys are open_clip_jax's by default
    for spec in (str(folder), str(folder) + "/", str(folder / "*.tfrecord"), str(folder / "0000{0,1,2}.tfrecord")):
        assert open_train_data(spec).captions == csv_set.captions
    # and TensorFlow is not needed: the same read in a child where importing it fails
    child = ("import sys; sys.modules['tensorflow'] = None; from anyclip.train.data import open_train_data; "
             f"print(len(open_train_data({str(folder)!r}, 'tfrecord')))")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         env={**os.environ, "KERAS_BACKEND": "jax"})
    assert out.returncode == 0 and out.stdout.split()[-1] == str(N), out.stderr[-2000:]
    a = list(batches(csv_set, workers=0).epoch(0))
    b = list(batches(data, workers=2).epoch(0))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.texts, y.texts)
    resumed = list(batches(data, workers=2).epoch(0, start=b[1].position))
    assert [r.indices.tolist() for r in resumed] == [x.indices.tolist() for x in b[2:]]
    for x, y in zip(b[2:], resumed):
        np.testing.assert_array_equal(x.images, y.images)


def test_problem_records_are_skipped_and_counted(tfrecords, caplog):
    _, problems, _ = tfrecords
    with caplog.at_level(logging.WARNING, "anyclip.train"):
        data = open_train_data(str(problems))
    assert [m.name for m in data.images] == ["record 0", "record 5", "record 6", "record 7"]
    log = caplog.text
    assert f"{problems} record 1 left out: not a tf.train.Example" in log
    assert "record 2 left out: no 'caption' feature" in log
    assert "record 3 left out: feature 'caption' is of kind int64_list, not bytes_list" in log
    assert "record 4 left out: feature 'caption' holds 2 values, expected 1" in log
    assert "4 TFRecord record(s) could not be used" in log
    loader = batches(data, batch_size=2, workers=2)
    out = list(loader.epoch(0))
    reasons = dict(r for b in out for r in b.skipped)
    assert loader.skipped_total == 2 and reasons[1] == "empty caption" and 2 in reasons
    assert sorted(np.concatenate([b.indices for b in out]).tolist()) == [0, 3]
    # the feature keys can be changed (img2dataset writes its caption under "txt")
    txt = open_train_data(str(problems), "tfrecord", caption_key="txt")
    assert txt.captions == ("img2dataset caption",)


def test_corrupt_and_truncated_tfrecord_files(tfrecords, tmp_path, caplog):
    folder, _, csv_set = tfrecords
    for name in ("00000", "00001", "00002"):
        shutil.copy(folder / f"{name}.tfrecord", tmp_path / f"{name}.tfrecord")
    good = open_train_data(str(tmp_path))
    # a flipped byte in record 2's image: its data checksum fails, the records after it are still read
    member = good.images[2]
    with open(member.shard, "r+b") as f:
        f.seek(member.offset + member.size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x40]))
    # a bad length checksum at record 5 of the second file: the framing is lost for the rest of that file
    second = tmp_path / "00001.tfrecord"
    data, starts = second.read_bytes(), [0]
    while starts[-1] < len(data):  # record k starts with its uint64 length, then the length's checksum
        starts.append(starts[-1] + 12 + int.from_bytes(data[starts[-1]:starts[-1] + 8], "little") + 4)
    header = starts[5]
    second.write_bytes(data[:header + 8] + b"\x00" * 4 + data[header + 12:])
    # the third file cut in the middle of its last record
    third = tmp_path / "00002.tfrecord"
    third.write_bytes(third.read_bytes()[:-10])
    with caplog.at_level(logging.WARNING, "anyclip.train"):
        data = open_train_data(str(tmp_path / "*.tfrecord"))
    log = caplog.text
    assert f"{tmp_path / '00000.tfrecord'} record 2 left out: bad data checksum" in log
    assert f"{second} record 5 left out: a bad length checksum at byte {header}" in log
    assert f"{third} record 7 left out: truncated" in log
    assert "3 TFRecord record(s) could not be used" in log
    kept = [i for i in range(N) if i != 2 and not 13 <= i < 16 and i != 23]
    assert data.captions == tuple(csv_set.captions[i] for i in kept)
    loader = batches(data, workers=2)
    assert sum(len(b.indices) for b in loader.epoch(0)) == len(kept) // 5 * 5 and loader.skipped_total == 0


def test_files_that_are_not_tfrecords_are_named(tmp_path):
    text = tmp_path / "notes.tfrecord"
    text.write_text("this is not a TFRecord file, just some text")
    with pytest.raises(DatasetError, match="notes.tfrecord: not a TFRecord file"):
        open_train_data(str(text))
    tiny = tmp_path / "tiny.tfrec"
    tiny.write_bytes(b"\x01\x02")
    with pytest.raises(DatasetError, match="tiny.tfrec: not a TFRecord file"):
        open_train_data(str(tiny))
    zipped = tmp_path / "zipped.tfrecords"
    zipped.write_bytes(gzip.compress(b"\x00" * 64))
    with pytest.raises(DatasetError, match="zipped.tfrecords: not a TFRecord file .it is gzip-compressed"):
        open_train_data(str(zipped))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no .tfrecord / .tfrec / .tfrecords shards in this folder"):
        open_train_data(str(empty), "tfrecord")
    (empty / "0.tfrecord").write_bytes(b"")  # a valid TFRecord file with no records
    with pytest.raises(DatasetError, match="no image-caption pairs"):
        open_train_data(str(empty))
    with pytest.raises(DatasetError, match="shard.s. not found"):
        open_train_data(str(tmp_path / "missing-*.tfrecord"))


def test_empty_caption_is_checked_before_the_image_is_read(shapes, caplog):
    root, _ = shapes
    data = open_train_data(str(root / "csv" / "train.csv"))
    missing = ShardMember(str(root / "no-such-shard.tar"), "x.jpg", 0, 10)
    images, captions = list(data.images), list(data.captions)
    images[0], captions[0] = missing, ""  # were the image read first, the reason would be "cannot read"
    images[1] = missing
    loader = batches(ImageTextSet("mixed", tuple(images), tuple(captions)), workers=0)
    with caplog.at_level(logging.WARNING, "anyclip.train"):
        list(loader.epoch(0))
    assert "skipped sample 0 (" in caplog.text and "x.jpg): empty caption" in caplog.text
    assert "skipped sample 1 (" in caplog.text and "x.jpg): cannot read" in caplog.text
    assert loader.skipped_total == 2


def test_train_flags_take_tfrecord_and_open_clip_jax_key_names():
    import argparse

    from anyclip.train.loop import add_train_arguments
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(["--train-data", "d/", "--dataset-type", "tfrecord", "--image-key", "png",
                              "--text-key", "txt"])
    assert (args.dataset_type, args.csv_img_key, args.csv_caption_key) == ("tfrecord", "png", "txt")
