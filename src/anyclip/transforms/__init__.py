"""Image preprocessing: the exact host path (PIL) and the batched in-graph path (keras.ops).

Host path -- equal to open_clip's eval transform, any PIL mode, one image at a time::

    from anyclip.transforms import PreprocessConfig, image_transform, load_image
    preprocess = image_transform(PreprocessConfig(size=224))
    pixels = preprocess(load_image("cat.jpg"))          # float32 [224, 224, 3]

In-graph path -- a batch of same-sized uint8 RGB images, on any Keras backend (jit, tf.data)::

    from anyclip.transforms import preprocess_images
    batch = preprocess_images(uint8_images, PreprocessConfig(size=224))   # [B, 224, 224, 3]
"""

from ..models.preprocess import (
                     IMAGENET_MEAN,
                     IMAGENET_STD,
                     INCEPTION_MEAN,
                     INCEPTION_STD,
                     OPENAI_DATASET_MEAN,
                     OPENAI_DATASET_STD,
                     PreprocessConfig,
)
from .augment import AugmentConfig, TrainTransform, train_transform
from .graph import ImagePreprocessor, preprocess_images
from .host import (
                     DEFAULT_MAX_PIXELS,
                     ImageLoadError,
                     Preprocess,
                     image_transform,
                     load_image,
)

__all__ = ["AugmentConfig", "DEFAULT_MAX_PIXELS", "IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD",
           "ImageLoadError", "ImagePreprocessor", "OPENAI_DATASET_MEAN", "OPENAI_DATASET_STD", "Preprocess",
           "PreprocessConfig", "TrainTransform", "image_transform", "load_image", "preprocess_images",
           "train_transform"]
