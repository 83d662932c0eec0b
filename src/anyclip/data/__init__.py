"""Datasets and loaders: labelled image sets, retrieval sets, shard readers and synthetic data."""

from .shapes import (ShapesConfig, ShapesDataset, ZeroShotTask, make_shapes, write_csv, write_webdataset,
                     zero_shot_tasks)

__all__ = ["ShapesConfig", "ShapesDataset", "ZeroShotTask", "make_shapes", "write_csv", "write_webdataset",
           "zero_shot_tasks"]
