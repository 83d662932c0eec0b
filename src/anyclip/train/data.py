"""Training data: image-caption pairs from CSV, WebDataset or TFRecord shards, in resumable, seeded batches.

:class:`ImageTextSet` lists the pairs (a WebDataset or TFRecord shard is indexed once, so its images are
read by offset, in any order). :class:`TrainBatches` yields fixed-size batches of one epoch: a permutation seeded
from ``(seed, epoch)``, images decoded and augmented in worker threads with a generator seeded from
``(seed, epoch, sample)`` -- so the result depends on neither worker count nor timing -- and captions
tokenised. A sample that cannot be used (unreadable image, empty caption) is skipped, counted and
logged; the batch is filled from the next samples. Each batch reports the position in the epoch's
order after it, which is all a checkpoint needs to resume the epoch without repeating a sample.

:func:`open_run_data` is where a training run reads its data -- the training pairs and every evaluation
set -- once, before the model is made, from the ``data`` and ``eval`` sections of its
:class:`~anyclip.train.config.TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tarfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..data.common import (
    CAPTION_COLUMNS,
    IMAGE_COLUMNS,
    DatasetError,
    is_image_file,
    pick_column,
    read_csv,
    resolve_path,
)
from ..data.labelled import expand_shards
from ..data.loader import load_and_preprocess, ordered_map, source_name
from ..data.tfrecord import (
    CAPTION_KEY,
    IMAGE_KEY,
    TFRECORD_SUFFIXES,
    read_image_text_records,
)
from ..transforms.host import numpy_output

log = logging.getLogger("anyclip.train")


@dataclasses.dataclass(frozen=True)
class ShardMember:
    """An image stored in a shard (tar or TFRecord file): read ``size`` bytes at ``offset``.

    Example:
        >>> ShardMember("train/00000.tfrecord", "record 3", offset=4150, size=1790).read()  # doctest: +SKIP
        ('train/00000.tfrecord:record 3', b'\\xff\\xd8...')
    """

    shard: str
    name: str
    offset: int
    size: int

    @property
    def label(self) -> str:
        """``shard:name``, how messages name this image."""
        return f"{self.shard}:{self.name}"

    def read(self) -> tuple[str, bytes]:
        with open(self.shard, "rb") as f:
            f.seek(self.offset)
            return self.label, f.read(self.size)


@dataclasses.dataclass(frozen=True)
class ImageTextSet:
    """Image-caption pairs: ``images`` (paths or :class:`ShardMember`) and ``captions``, same length.

    Example:
        >>> data = ImageTextSet.from_csv("train.csv")  # doctest: +SKIP
        >>> len(data), data.captions[0]  # doctest: +SKIP
        (20000, 'two small blue squares')
    """

    name: str
    images: tuple
    captions: tuple[str, ...]

    def __post_init__(self):
        if len(self.images) != len(self.captions):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.captions)} captions")
        if not self.images:
            raise DatasetError(f"{self.name}: no image-caption pairs")

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_csv(cls, path: str | os.PathLike, img_key: str | None = None, caption_key: str | None = None,
                 separator: str = "auto", root: str | os.PathLike | None = None) -> "ImageTextSet":
        """open_clip's CSV dataset: ``--csv-img-key`` (default: ``filepath``, ``image``, ...),
        ``--csv-caption-key`` (default: ``title``, ``caption``, ...), ``--csv-separator`` (auto: tab as open_clip, or comma).
        Relative image paths are resolved against ``root`` (default: the CSV's folder)."""
        path = Path(path)
        header, rows = read_csv(path, separator)
        img = pick_column(path, header, img_key, IMAGE_COLUMNS, "image paths", "--csv-img-key")
        cap = pick_column(path, header, caption_key, CAPTION_COLUMNS, "captions", "--csv-caption-key")
        base = Path(root) if root is not None else path.parent
        images, captions = [], []
        for _, cells in rows:
            images.append(str(resolve_path(cells[img], base)))
            captions.append(cells[cap])
        return cls(str(path), tuple(images), tuple(captions))

    @classmethod
    def from_webdataset(cls, spec: str | os.PathLike, caption_ext: str = "txt") -> "ImageTextSet":
        """img2dataset-style shards (``{000..009}.tar``, ``::``-joined, or a folder): image + ``.txt`` per key.

        A key with no image or no caption is skipped and counted in the log; a file that is not a tar
        is an error naming it.
        """
        images, captions, incomplete = [], [], 0
        for shard in expand_shards(spec):
            try:
                with tarfile.open(shard, "r:") as tar:
                    members = [m for m in tar.getmembers() if m.isfile()]
                    grouped: dict[str, dict[str, tarfile.TarInfo]] = {}
                    for m in members:
                        stem, _, ext = os.path.basename(m.name).partition(".")
                        key = os.path.join(os.path.dirname(m.name), stem)
                        grouped.setdefault(key, {})[ext.lower()] = m
                    for key, parts in grouped.items():
                        image = next((m for e, m in parts.items() if is_image_file("x." + e)), None)
                        if image is None or caption_ext not in parts:
                            incomplete += 1
                            continue
                        text = tar.extractfile(parts[caption_ext]).read().decode("utf-8", "replace")
                        images.append(ShardMember(shard, image.name, image.offset_data, image.size))
                        captions.append(text.strip())
            except (tarfile.TarError, OSError, EOFError) as e:
                raise DatasetError(f"{shard}: not a readable tar shard ({type(e).__name__}: {e})") from None
        if incomplete:
            log.warning("%s: %d sample(s) without an image or a .%s caption were left out", spec, incomplete,
                        caption_ext)
        return cls(os.fspath(spec), tuple(images), tuple(captions))

    @classmethod
    def from_tfrecord(cls, spec: str | os.PathLike, image_key: str = IMAGE_KEY,
                      caption_key: str = CAPTION_KEY) -> "ImageTextSet":
        """open_clip_jax's TFRecords (a folder of ``*.tfrecord`` files, a glob, brace patterns or ``::``-joined
        files): ``tf.train.Example`` records with the image bytes under ``image_key`` and the caption under
        ``caption_key``. Read without TensorFlow.

        A record with a bad checksum, that is not an Example, or that lacks either key, is skipped and
        counted in the log; a truncated file keeps the records before the cut; a file that is not a
        TFRecord is an error naming it.

        Example:
            >>> data = ImageTextSet.from_tfrecord("train/", caption_key="txt")  # img2dataset's key  # doctest: +SKIP
        """
        images, captions, bad = [], [], 0
        for path in expand_shards(spec, TFRECORD_SUFFIXES):
            for record in read_image_text_records(path, image_key, caption_key):
                if record.problem is not None:
                    bad += 1
                    log.warning("%s record %d left out: %s", path, record.index, record.problem)
                    continue
                images.append(ShardMember(path, f"record {record.index}", record.offset, record.size))
                captions.append(record.caption)
        if bad:
            log.warning("%s: %d TFRecord record(s) could not be used and were left out", spec, bad)
        return cls(os.fspath(spec), tuple(images), tuple(captions))


@dataclasses.dataclass
class TrainBatch:
    """``images [B, H, W, 3]``, ``texts [B, context]`` int32, ``indices [B]`` (positions in the dataset),
    ``position`` (samples of this epoch's order consumed so far) and the samples ``skipped`` on the way."""

    images: np.ndarray
    texts: np.ndarray
    indices: np.ndarray
    position: int
    skipped: list[tuple[int, str]]


class TrainBatches:
    """One epoch of full batches, in a seeded order, resumable at any batch boundary.

    ``transform(image, rng=...)`` is a :class:`~anyclip.transforms.TrainTransform` (or any callable with
    that signature); ``tokenizer(list_of_str)`` returns ``[n, context]`` ids. The last incomplete batch
    of an epoch is dropped (as open_clip does).

    Example:
        >>> batches = TrainBatches(data, transform, tokenizer, batch_size=256, seed=0, workers=4)  # doctest: +SKIP
        >>> for batch in batches.epoch(0, start=0):  # doctest: +SKIP
        ...     metrics = step(batch.images, batch.texts)
    """

    def __init__(self, data: ImageTextSet, transform: Callable, tokenizer: Callable, batch_size: int,
                 seed: int = 0, workers: int = 4):
        if batch_size < 1 or batch_size > len(data):
            raise ValueError(f"batch_size must be in [1, {len(data)}] (the dataset size), got {batch_size}")
        self.data, self.transform, self.tokenizer = data, numpy_output(transform), tokenizer
        self.batch_size, self.seed, self.workers = batch_size, seed, workers
        self.skipped_total = 0

    def __len__(self) -> int:
        """Batches per epoch, counting every sample as usable."""
        return len(self.data) // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's sample order (a permutation seeded from ``(seed, epoch)``)."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.data))

    def _load(self, item):
        epoch, index = item
        if not self.data.captions[index].strip():
            return None, "empty caption"
        rng = np.random.default_rng([self.seed, epoch, int(index)])
        return load_and_preprocess(self.data.images[index], lambda image: self.transform(image, rng=rng), None)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[TrainBatch]:
        """Batches of ``epoch`` from position ``start`` of its order (a checkpoint's ``position``)."""
        order = self.order(epoch)
        if not 0 <= start <= len(order):
            raise ValueError(f"start must be in [0, {len(order)}], got {start}")
        items = ((epoch, int(i)) for i in order[start:])
        window = max(2 * self.batch_size, 2 * self.workers)
        pixels, indices, skipped, position = [], [], [], start
        for (_, index), (array, reason) in ordered_map(items, self._load, self.workers, window):
            position += 1
            if array is None:
                skipped.append((index, reason))
                self.skipped_total += 1
                log.warning("skipped sample %d (%s): %s", index, source_name(self.data.images[index]), reason)
                continue
            pixels.append(array)
            indices.append(index)
            if len(pixels) == self.batch_size:
                texts = np.asarray(self.tokenizer([self.data.captions[i] for i in indices]), dtype=np.int32)
                yield TrainBatch(np.stack(pixels), texts, np.asarray(indices), position, skipped)
                pixels, indices, skipped = [], [], []


def open_train_data(spec: str, dataset_type: str = "auto", img_key: str | None = None,
                    caption_key: str | None = None, **csv_options) -> ImageTextSet:
    """``--train-data`` + ``--dataset-type`` (``csv``, ``webdataset``, ``tfrecord``, ``auto``) -> :class:`ImageTextSet`.

    ``img_key`` / ``caption_key`` name the CSV columns, or the TFRecord features (default ``jpg`` /
    ``caption``, open_clip_jax's). ``auto`` picks CSV for ``.csv`` / ``.tsv``, TFRecord for ``.tfrecord``
    / ``.tfrec`` / ``.tfrecords`` paths and patterns and folders holding such files, else WebDataset.

    Example:
        >>> open_train_data("data/shapes/train/{00000..00019}.tar")  # doctest: +SKIP
        >>> open_train_data("gcs_copy/train_tfrecords/", "tfrecord")  # doctest: +SKIP
    """
    if dataset_type == "auto":
        dataset_type = _detect_type(os.fspath(spec))
    if dataset_type == "csv":
        return ImageTextSet.from_csv(spec, img_key, caption_key, **csv_options)
    if dataset_type == "webdataset":
        return ImageTextSet.from_webdataset(spec)
    if dataset_type == "tfrecord":
        return ImageTextSet.from_tfrecord(spec, img_key or IMAGE_KEY, caption_key or CAPTION_KEY)
    raise ValueError(f"unknown dataset type {dataset_type!r}; choose from auto, csv, webdataset, tfrecord")


def _detect_type(spec: str) -> str:
    name = spec.lower().rstrip("/")
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith(TFRECORD_SUFFIXES) or (
            os.path.isdir(spec) and any(p.name.lower().endswith(TFRECORD_SUFFIXES) for p in Path(spec).iterdir())):
        return "tfrecord"
    return "webdataset"


@dataclasses.dataclass(frozen=True)
class EvalSets:
    """The evaluation data of a run: ``zeroshot`` ``(prefix, LabelledImages, classnames, templates)`` tuples,
    ``val`` (a :class:`~anyclip.data.RetrievalSet` or None) and ``shapes`` (the
    :class:`~anyclip.data.ShapesConfig` the shapes tasks are drawn with, or None).

    Example:
        >>> EvalSets().active
        False
    """

    zeroshot: tuple = ()
    val: object = None
    shapes: object = None

    @property
    def active(self) -> bool:
        """Whether there is anything to evaluate."""
        return bool(self.zeroshot or self.val is not None or self.shapes is not None)


@dataclasses.dataclass(frozen=True)
class RunData:
    """What a training run reads: the training pairs and its evaluation sets.

    Example:
        >>> data = open_run_data(config.data, config.eval)  # doctest: +SKIP
        >>> len(data.train), data.evals.active  # doctest: +SKIP
        (30000, True)
    """

    train: ImageTextSet
    evals: EvalSets = dataclasses.field(default_factory=EvalSets)


def open_run_data(data, evals) -> RunData:
    """Read the training pairs (``data``, a :class:`~anyclip.train.config.DataConfig`) and the evaluation sets
    (``evals``, an :class:`~anyclip.train.config.EvalConfig`): ``--val-data`` is read in the training data's
    format, the shapes tasks use the ShapesConfig recorded beside ``--train-data``. Problems (a missing file,
    no caption column, ...) are raised here, before training starts.

    Example:
        >>> config = TrainConfig.from_flags(train_data="shapes/train.csv", zeroshot_shapes=500)  # doctest: +SKIP
        >>> open_run_data(config.data, config.eval).evals.shapes  # doctest: +SKIP
        ShapesConfig(image_size=64, ...)
    """
    def pairs(spec):
        return open_train_data(spec, data.dataset_type, img_key=data.csv_img_key, caption_key=data.csv_caption_key,
                               separator=data.csv_separator)

    train = pairs(data.train_data)
    zeroshot = []
    if evals.zeroshot_data:
        zeroshot.append(("zeroshot",) + _labelled(evals.zeroshot_data, evals.zeroshot_classnames,
                                                   evals.zeroshot_templates))
    if evals.imagenet_val:
        zeroshot.append(("imagenet-val",) + _labelled(evals.imagenet_val, "imagenet", "imagenet"))
    val = _retrieval_set(pairs(evals.val_data), f"--val-data {evals.val_data}") if evals.val_data else None
    shapes = _shapes_config_near(data.train_data) if evals.zeroshot_shapes else None
    return RunData(train, EvalSets(tuple(zeroshot), val, shapes))


def _retrieval_set(pairs: ImageTextSet, name: str):
    """Image-caption pairs as a retrieval set; empty captions are left out, as training skips them."""
    from ..data.retrieval import RetrievalSet
    keep = [i for i, caption in enumerate(pairs.captions) if caption.strip()]
    if not keep:
        raise ValueError(f"{name}: every caption is empty")
    return RetrievalSet.from_pairs([pairs.images[i] for i in keep], [pairs.captions[i] for i in keep], name=name)


def _labelled(path, classnames, templates):
    from ..data.common import detect_dataset_type
    from ..data.labelled import (
        read_classnames,
        read_image_folder,
        read_labelled_csv,
        read_webdataset,
    )
    from ..eval.zero_shot import read_templates
    from ..zero_shot import IMAGENET_CLASSNAMES
    if classnames == "imagenet":
        names = tuple(IMAGENET_CLASSNAMES)
    else:
        names = read_classnames(classnames) if classnames else None
    kind = detect_dataset_type(path, "classification")
    reader = {"imagefolder": read_image_folder, "csv": read_labelled_csv, "webdataset": read_webdataset}.get(kind)
    if reader is None:
        raise ValueError(f"--zeroshot-data {path}: a {kind} dataset has no class labels")
    data = reader(path, names)
    names = names or data.classnames
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    return data, names, read_templates(templates, names, folder)


def _shapes_config_near(train_data: str | None):
    """The ShapesConfig recorded beside the training data, else the default one."""
    from ..data.shapes import ShapesConfig
    return (ShapesConfig.near(train_data) if train_data else None) or ShapesConfig()


__all__ = ["EvalSets", "ImageTextSet", "RunData", "ShardMember", "TrainBatch", "TrainBatches", "open_run_data",
           "open_train_data"]
