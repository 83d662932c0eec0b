"""TensorFlow artifacts, made on the TensorFlow Keras backend: a SavedModel per encoder (Keras' ``ExportArchive``,
served by ``tf.saved_model.load``) and LiteRT flatbuffers converted from them (run by TensorFlow's LiteRT
interpreter, ``tf.lite.Interpreter``).

Example:
    >>> paths = export_saved_model(model, "out/")  # doctest: +SKIP
    >>> tf.saved_model.load(str(paths["image"])).serve(pixels)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .onnx import IMAGE_INPUT, TEXT_INPUT

SAVED_MODEL_DIRS = {"image": "image_encoder", "text": "text_encoder"}
LITERT_FILES = {"image": "image_encoder.tflite", "text": "text_encoder.tflite"}


def _signatures(model, batch, layout):
    import tensorflow as tf
    rows = None if batch == "dynamic" else int(batch)
    h, w = model.image_size
    image_shape = (rows, 3, h, w) if layout == "NCHW" else (rows, h, w, 3)

    def image_fn(pixel_values):
        x = tf.transpose(pixel_values, [0, 2, 3, 1]) if layout == "NCHW" else pixel_values
        y = tf.cast(model.visual(x, training=False), tf.float32)
        return y / tf.maximum(tf.norm(y, axis=-1, keepdims=True), 1e-12)

    def text_fn(input_ids):
        y = tf.cast(model.text(tf.cast(input_ids, tf.int32), training=False), tf.float32)
        return y / tf.maximum(tf.norm(y, axis=-1, keepdims=True), 1e-12)

    return {"image": (model.visual, image_fn, tf.TensorSpec(image_shape, tf.float32, name=IMAGE_INPUT)),
            "text": (model.text, text_fn, tf.TensorSpec((rows, model.context_length), tf.int64, name=TEXT_INPUT))}


def export_saved_model(model, folder: str | os.PathLike, batch: str | int = "dynamic", layout: str = "NCHW") -> dict:
    """Write ``image_encoder/`` and ``text_encoder/`` SavedModels (endpoint ``serve``) into ``folder``.

    Example:
        >>> export_saved_model(model, "out/")  # doctest: +SKIP
        {'image': PosixPath('out/image_encoder'), 'text': PosixPath('out/text_encoder')}
    """
    import keras
    folder = Path(folder)
    paths = {}
    for tower, (layer, fn, spec) in _signatures(model, batch, layout).items():
        archive = keras.export.ExportArchive()
        archive.track(layer)
        archive.add_endpoint("serve", fn, input_signature=[spec])
        paths[tower] = folder / SAVED_MODEL_DIRS[tower]
        archive.write_out(str(paths[tower]), verbose=False)
    return paths


def saved_model_runner(path: str | os.PathLike):
    """``inputs (numpy) -> outputs (numpy)`` through ``tf.saved_model.load(path).serve``."""
    import tensorflow as tf
    loaded = tf.saved_model.load(str(path))
    return lambda inputs: loaded.serve(tf.constant(inputs)).numpy()


def export_litert(model, folder: str | os.PathLike, batch: str | int = "dynamic", layout: str = "NCHW") -> dict:
    """Write ``image_encoder.tflite`` and ``text_encoder.tflite`` into ``folder`` (through temporary SavedModels).

    Example:
        >>> export_litert(model, "out/")  # doctest: +SKIP
    """
    import shutil
    import tempfile

    import tensorflow as tf
    folder = Path(folder)
    paths = {}
    with tempfile.TemporaryDirectory(prefix="anyclip-litert-") as tmp:
        for tower, saved in export_saved_model(model, tmp, batch, layout).items():
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            paths[tower] = folder / LITERT_FILES[tower]
            paths[tower].write_bytes(converter.convert())
            shutil.rmtree(saved, ignore_errors=True)
    return paths


def litert_runner(path: str | os.PathLike):
    """``inputs (numpy) -> outputs (numpy)`` through TensorFlow's LiteRT interpreter (resized to each batch)."""
    import tensorflow as tf
    interpreter = tf.lite.Interpreter(model_path=str(path))

    def run(inputs: np.ndarray) -> np.ndarray:
        detail = interpreter.get_input_details()[0]
        if tuple(detail["shape"]) != inputs.shape:
            interpreter.resize_tensor_input(detail["index"], inputs.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], inputs.astype(detail["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()
    return run
