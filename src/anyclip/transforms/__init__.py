"""Image preprocessing: the exact host path (PIL) and the batched in-graph path (keras.ops).

Host path -- equal to open_clip's eval transform, any PIL mode, one image at a time::

    from anyclip.transforms import PreprocessConfig, image_transform, load_image
    preprocess = image_transform(PreprocessConfig(size=224))
    pixels = preprocess(load_image("cat.jpg"))          # float32 [224, 224, 3] (torch backend: torch [3, 224, 224])

In-graph path -- a batch of same-sized uint8 RGB images, on any Keras backend (jit, tf.data)::

    from anyclip.transforms import preprocess_images
    batch = preprocess_images(uint8_images, PreprocessConfig(size=224))   # [B, 224, 224, 3]
"""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "..models.preprocess": ("IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD",
                            "OPENAI_DATASET_MEAN", "OPENAI_DATASET_STD", "PreprocessConfig"),
    ".augment": ("AugmentConfig", "TrainTransform", "train_transform"),
    ".graph": ("ImagePreprocessor", "preprocess_images"),
    ".limits": ("DEFAULT_MAX_PIXELS",),
    ".depth": ("to_8bit",),
    ".host": ("ImageLoadError", "Preprocess", "image_transform", "load_image", "numpy_output"),
})
