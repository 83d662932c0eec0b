"""Training data: CSV and WebDataset pairs, seeded resumable batches, skip-and-count of bad samples."""

import numpy as np
import pytest

import anyclip
from anyclip.data import DatasetError, ShapesConfig, ShapesDataset, write_csv, write_webdataset
from anyclip.train.data import ImageTextSet, TrainBatches, open_train_data
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
        open_train_data("x", "tfrecord")
