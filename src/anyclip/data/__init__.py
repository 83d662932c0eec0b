"""Datasets and loaders: labelled image sets, retrieval sets, shard readers and synthetic data.

Example:
    >>> from anyclip.data import read_image_folder
    >>> dataset = read_image_folder("imagenet/val")  # doctest: +SKIP
    >>> dataset.classnames[:2], len(dataset)  # doctest: +SKIP
"""

from .common import DATASET_TYPES, IMAGE_EXTENSIONS, DatasetError, detect_dataset_type
from .labelled import (
                       LabelledImages,
                       Sample,
                       expand_shards,
                       read_classnames,
                       read_image_folder,
                       read_labelled_csv,
                       read_webdataset,
)
from .loader import ImageBatch, SkippedImage, iter_image_batches
from .retrieval import RetrievalSet, read_retrieval_csv, read_retrieval_json
from .shapes import ShapesConfig, ShapesDataset, ZeroShotTask, zero_shot_tasks
from .shapes_io import make_shapes, write_csv, write_webdataset

__all__ = ["DATASET_TYPES", "DatasetError", "IMAGE_EXTENSIONS", "ImageBatch", "LabelledImages", "RetrievalSet",
           "Sample", "ShapesConfig", "ShapesDataset", "SkippedImage", "ZeroShotTask", "detect_dataset_type",
           "expand_shards", "iter_image_batches", "make_shapes", "read_classnames", "read_image_folder",
           "read_labelled_csv", "read_retrieval_csv", "read_retrieval_json", "read_webdataset", "write_csv",
           "write_webdataset", "zero_shot_tasks"]
