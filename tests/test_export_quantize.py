"""Keras-level quantization of the shipped (trained) model: int8 weights and activations, int4 weights only.
Cosine similarity to the float model and zero-shot accuracy on the shapes benchmark within 1 point (JAX)."""

import keras
import numpy as np
import pytest

import anyclip
from anyclip.eval.shapes import shapes_zero_shot
from anyclip.export import ExportVerificationError, quantize


@pytest.fixture(scope="module")
def float_accuracy():
    model = anyclip.create_model("anyclip-shapes", "v1")
    return shapes_zero_shot(model, anyclip.get_tokenizer("anyclip-shapes"), num_samples=300, tasks=("shape", "colour"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_keras_quantization_keeps_direction_and_accuracy(mode, float_accuracy):
    model, tokenizer = anyclip.create_model("anyclip-shapes", "v1"), anyclip.get_tokenizer("anyclip-shapes")
    report = quantize(model, mode, tokenizer=tokenizer)
    assert report["layers"] == 33  # 32 Linear layers and the token embedding
    assert report["image"]["min_cosine"] >= 0.99 and report["text"]["min_cosine"] >= 0.99
    quantized = shapes_zero_shot(model, tokenizer, num_samples=300, tasks=("shape", "colour"))
    for task in float_accuracy:
        assert abs(quantized[task]["acc1"] - float_accuracy[task]["acc1"]) <= 0.01 + 1e-9, (task, quantized, float_accuracy)


@pytest.mark.slow
def test_a_quantization_that_moves_the_embeddings_is_refused():
    model = anyclip.create_model("anyclip-shapes", "v1")
    with pytest.raises(ExportVerificationError, match="cosine similarity"):
        quantize(model, "int4", min_cosine=0.99999)  # int4 moves them by about 0.004
    image = keras.ops.convert_to_numpy(model.encode_image(np.zeros((1, 64, 64, 3), np.float32)))
    assert np.isfinite(image).all()
