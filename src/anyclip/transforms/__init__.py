"""Image preprocessing: the exact host path (PIL) and the batched in-graph path (keras.ops)."""

from .config import (IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, OPENAI_DATASET_MEAN,
                     OPENAI_DATASET_STD, PreprocessConfig)
from .graph import ImagePreprocessor, preprocess_images
from .host import ImageLoadError, Preprocess, image_transform, load_image

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD", "ImageLoadError",
           "ImagePreprocessor", "OPENAI_DATASET_MEAN", "OPENAI_DATASET_STD", "Preprocess", "PreprocessConfig",
           "image_transform", "load_image", "preprocess_images"]
