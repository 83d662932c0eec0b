"""``anyclip export --format openvino``: the shipped model's encoders as OpenVINO IR, run by OpenVINO's CPU runtime
(``openvino.Core().compile_model``, float32 as the manifest says) against the Keras model on JAX in this process.

The default tier converts the ONNX files of ``tests/test_export_onnx.py`` (the same conversion the command
runs; a second torch trace costs more than that tier's budget); the whole command is here, ``-m slow``."""

import json

import keras
import numpy as np
import pytest

import anyclip
from anyclip.cli import main
from anyclip.export.verify import CAPTIONS, sample_photos


def keras_and_inputs(model, tokenizer):
    """The model's unit vectors (JAX) for photos and captions, 9 rows (a batch size not traced), and the inputs."""
    preprocess = anyclip.transforms.image_transform(model.preprocess_cfg, output="numpy")
    photos = [preprocess(photo) for photo in sample_photos()]
    images = np.stack((photos * 2)[:9])
    tokens = np.asarray(tokenizer((list(CAPTIONS) * 2)[:9]))
    expected = {"image": keras.ops.convert_to_numpy(model.encode_image(images, normalize=True)),
                "text": keras.ops.convert_to_numpy(model.encode_text(tokens, normalize=True))}
    return expected, {"image": images.transpose(0, 3, 1, 2).copy(), "text": tokens.astype(np.int64)}


def run_in_openvino(paths: dict, config: dict):
    """``run(tower, inputs)``: the encoders at ``paths`` compiled by OpenVINO's CPU plugin with ``config``."""
    import openvino
    core = openvino.Core()
    encoders = {tower: core.compile_model(str(path), "CPU", config) for tower, path in paths.items()}
    return lambda tower, x: np.asarray(encoders[tower](x)[0])


@pytest.mark.slow
def test_openvino_export_runs_in_the_openvino_runtime(tmp_path):
    out = tmp_path / "shapes-openvino"
    assert main(["export", "anyclip-shapes", "--pretrained", "v1", "--format", "openvino", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["image_encoder.bin", "image_encoder.xml", "manifest.json",
                                                      "text_encoder.bin", "text_encoder.xml", "tokenizer.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    manifest = json.loads((out / "manifest.json").read_text())
    run = run_in_openvino({t: out / manifest[f"{t}_encoder"]["file"] for t in ("image", "text")},
                          manifest["runtime_config"])
    assert manifest["format"] == "openvino" and manifest["runtime_config"] == {"INFERENCE_PRECISION_HINT": "f32"}
    assert manifest["image_encoder"]["shape"] == ["batch", 3, 64, 64]
    expected, inputs = keras_and_inputs(anyclip.create_model("anyclip-shapes", "v1"),
                                        anyclip.get_tokenizer("anyclip-shapes"))
    for tower in ("image", "text"):
        assert manifest["verification"][tower]["max_abs_diff"] <= 1e-4
        assert np.abs(run(tower, inputs[tower]) - expected[tower]).max() <= 1e-4, tower
