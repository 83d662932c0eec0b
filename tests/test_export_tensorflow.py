"""TensorFlow formats of the shipped model, exported on the TensorFlow backend (a worker) and run there in their
runtimes (``tf.saved_model.load``, TensorFlow's LiteRT interpreter); the outputs are compared here with the
Keras model on JAX. Slow: TensorFlow's import and the LiteRT conversion take about a minute."""

import keras
import numpy as np
import pytest
from backend_runner import start_in_backend

import anyclip
from anyclip.export.verify import CAPTIONS, sample_photos


def tensorflow_worker(arrays, params):
    """(TensorFlow subprocess) export to saved_model and litert; run each artifact on the given inputs."""
    import json
    from pathlib import Path

    from anyclip.export import export_model
    from anyclip.export.tensorflow_export import litert_runner, saved_model_runner
    out = {}
    for format, runner in (("saved_model", saved_model_runner), ("litert", litert_runner)):
        folder = export_model("anyclip-shapes", "v1", Path(params["root"]) / format, format=format)
        manifest = json.loads((folder / "manifest.json").read_text())
        for tower, key in (("image", "images"), ("text", "tokens")):
            entry = manifest[f"{tower}_encoder"]
            out[f"{format}_{tower}"] = runner(folder / entry["file"])(arrays[key].astype(entry["dtype"]))
    return out


@pytest.mark.slow
def test_saved_model_and_litert_match_the_keras_model(tmp_path):
    model, tokenizer = anyclip.create_model("anyclip-shapes", "v1"), anyclip.get_tokenizer("anyclip-shapes")
    preprocess = anyclip.transforms.image_transform(model.preprocess_cfg, output="numpy")
    images = np.stack([preprocess(photo) for photo in sample_photos()])
    tokens = np.asarray(tokenizer(list(CAPTIONS)))
    outputs = start_in_backend("tensorflow", "test_export_tensorflow:tensorflow_worker",
                               {"images": images.transpose(0, 3, 1, 2).copy(), "tokens": tokens.astype(np.int64)},
                               {"root": str(tmp_path)}).result(timeout=900)
    image = keras.ops.convert_to_numpy(model.encode_image(images, normalize=True))
    text = keras.ops.convert_to_numpy(model.encode_text(tokens, normalize=True))
    for format in ("saved_model", "litert"):
        assert np.abs(outputs[f"{format}_image"] - image).max() <= 1e-4, format
        assert np.abs(outputs[f"{format}_text"] - text).max() <= 1e-4, format
