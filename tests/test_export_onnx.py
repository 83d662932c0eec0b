"""``anyclip export --format onnx``: the shipped model's encoders in onnxruntime against the Keras model (JAX,
this process) on photos and captions, the tokenizer.json ids against anyclip's tokenizer, the README example
run without anyclip, int8 files (cosine and shapes zero-shot accuracy), and the failures that leave nothing."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from reference import BPE_TEXTS

import anyclip
from anyclip.cli import main
from anyclip.export.verify import CAPTIONS, sample_photos

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "images" / "cat.jpg"


@pytest.fixture(scope="module")
def shipped():
    return anyclip.create_model("anyclip-shapes", "v1"), anyclip.get_tokenizer("anyclip-shapes")


@pytest.fixture(scope="module")
def torch_job(tmp_path_factory):
    """The torch worker below, started first so that it runs while the CLI export does."""
    from backend_runner import start_in_backend
    root = tmp_path_factory.mktemp("torch-exports")
    (root / "failed").mkdir()
    params = {"int8": str(root / "int8"), "failed": str(root / "failed" / "out")}
    job = start_in_backend("torch", "test_export_onnx:torch_exports_worker", {}, params)
    yield {"job": job, "int8": root / "int8"}
    job.kill()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, torch_job):
    """The shipped model exported by the CLI from this (JAX) process: the command re-runs itself on torch."""
    out = tmp_path_factory.mktemp("export") / "shapes-onnx"
    assert main(["export", "anyclip-shapes", "--pretrained", "v1", "--out", str(out)]) == 0
    return out


def _keras(model, images, tokens):
    return (keras.ops.convert_to_numpy(model.encode_image(images, normalize=True)),
            keras.ops.convert_to_numpy(model.encode_text(tokens, normalize=True)))


def _photos(model):
    preprocess = anyclip.transforms.image_transform(model.preprocess_cfg, output="numpy")
    return np.stack([preprocess(photo) for photo in sample_photos()])


def test_tokenizer_json_gives_anyclips_ids():
    from tokenizers import Tokenizer

    from anyclip.export.tokenizer_files import clip_bpe_tokenizer
    from anyclip.tokenizers import CLIPTokenizer
    ours = CLIPTokenizer(output="numpy")
    texts = [*BPE_TEXTS, "A photo of a DOG.", "two  cats\non a sofa", "I'm 42, don't!", "naïve résumé Ⅻ ½", "  "]
    for length in (77, 8):
        tokenizer = Tokenizer.from_str(clip_bpe_tokenizer(ours, length).to_str())
        ids = np.array([e.ids for e in tokenizer.encode_batch(texts)])
        np.testing.assert_array_equal(ids, ours(texts, context_length=length))


def test_onnx_files_match_the_keras_model(exported, shipped):
    from anyclip.export import OnnxCLIP
    model, tokenizer = shipped
    assert sorted(p.name for p in exported.iterdir()) == ["image_encoder.onnx", "manifest.json",
                                                           "text_encoder.onnx", "tokenizer.json"]
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["image_encoder"] == {"file": "image_encoder.onnx", "input": "pixel_values",
                                         "output": "image_embeds", "layout": "NCHW", "shape": ["batch", 3, 64, 64],
                                         "dtype": "float32"}
    assert manifest["text_encoder"]["shape"] == ["batch", 32] and manifest["embedding_width"] == 128
    assert manifest["preprocess"]["mean"] == list(model.preprocess_cfg.mean)
    assert manifest["logit_scale"] == pytest.approx(float(np.exp(keras.ops.convert_to_numpy(model.logit_scale))))
    assert manifest["model"] == "anyclip-shapes" and manifest["pretrained"] == "v1"
    assert manifest["verification"]["image"]["max_abs_diff"] <= 1e-4
    onnx_model = OnnxCLIP(exported)
    images, tokens = _photos(model), tokenizer(list(CAPTIONS) + ["a red square"] * 4)  # 9 rows: a new batch size
    image, text = _keras(model, images, tokens)
    assert np.abs(onnx_model.encode_image(images) - image).max() <= 1e-4
    assert np.abs(onnx_model.encode_text(tokens) - text).max() <= 1e-4


def test_openvino_conversion_of_the_onnx_files_matches_the_keras_model(exported, shipped, tmp_path):
    """What ``--format openvino`` runs after its ONNX trace: ``onnx_to_openvino``, then OpenVINO's CPU runtime
    (the whole command: ``tests/test_export_openvino.py``, slow)."""
    from test_export_openvino import keras_and_inputs, run_in_openvino

    from anyclip.export.openvino_export import RUNTIME_CONFIG, onnx_to_openvino
    paths = onnx_to_openvino({t: exported / f"{t}_encoder.onnx" for t in ("image", "text")}, tmp_path)
    run = run_in_openvino(paths, RUNTIME_CONFIG)
    expected, inputs = keras_and_inputs(*shipped)
    for tower in ("image", "text"):
        assert np.abs(run(tower, inputs[tower]) - expected[tower]).max() <= 1e-4, tower


def test_readme_example_runs_without_anyclip(exported, shipped):
    readme = (ROOT / "README.md").read_text()
    script = re.search(r"<!-- onnx-example -->\n```python\n(.*?)```", readme, re.S).group(1)
    blocker = ("import sys\n"
               "class NoAnyclip:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] == 'anyclip': raise ImportError('anyclip imported')\n"
               "sys.meta_path.insert(0, NoAnyclip())\n")
    labels = ["a cat", "a dog", "a red square"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", blocker + script, str(exported), str(IMAGE), *labels],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = [line.split(" ", 1) for line in proc.stdout.strip().splitlines()]
    assert [label for _, label in printed] == labels
    model, tokenizer = shipped
    preprocess = anyclip.transforms.image_transform(model.preprocess_cfg, output="numpy")
    image = preprocess(anyclip.transforms.load_image(IMAGE))[None]
    logits = keras.ops.convert_to_numpy(model.get_logits(image, tokenizer(labels))[0])[0]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose([float(p) for p, _ in printed], expected, atol=2e-4)


TINY = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def torch_exports_worker(arrays, params):
    """(torch subprocess) the shipped model as int8 files with a batch of 8 through the Python API; then a tiny
    model's export whose verification is made to fail: its error and what is left beside its output folder."""
    from anyclip.export import ExportVerificationError, deploy, export_model, verify
    export_model("anyclip-shapes", "v1", params["int8"], quantize="int8", batch=8)

    def mismatch(what, *args, **kwargs):
        raise ExportVerificationError(f"{what}: max |difference| 0.5 > 0.0001 on unit vectors")
    verify.compare = mismatch
    model = anyclip.create_model("anyclip-shapes", load_weights=False, **TINY)
    try:
        deploy.export(model, anyclip.get_tokenizer("anyclip-shapes"), params["failed"])
    except ExportVerificationError as error:
        return {"message": np.array(str(error)), "left": np.array(sorted(os.listdir(Path(params["failed"]).parent)))}
    return {"message": np.array("no error"), "left": np.array([])}


@pytest.fixture(scope="module")
def torch_exports(torch_job):
    return {**torch_job["job"].result(timeout=600), "int8": torch_job["int8"]}


def test_failed_verification_leaves_no_folder(torch_exports):
    assert "max |difference| 0.5" in str(torch_exports["message"]) and len(torch_exports["left"]) == 0


def test_int8_files_keep_direction_and_shapes_accuracy(shipped, torch_exports):
    from anyclip.eval.shapes import shapes_zero_shot
    from anyclip.export import OnnxCLIP
    model, tokenizer = shipped
    int8 = OnnxCLIP(torch_exports["int8"])
    assert int8.manifest["quantization"] == "int8" and int8.manifest["image_encoder"]["shape"][0] == 8
    images, tokens = _photos(model), tokenizer(list(CAPTIONS))
    for ours, theirs in zip(_keras(model, images, tokens), (int8.encode_image(images), int8.encode_text(tokens))):
        assert (ours * theirs).sum(-1).min() >= 0.99
    fp32 = shapes_zero_shot(model, tokenizer, num_samples=200, tasks=("shape", "colour"))
    quantized = shapes_zero_shot(int8, tokenizer, num_samples=200, tasks=("shape", "colour"))
    for task in fp32:
        assert abs(quantized[task]["acc1"] - fp32[task]["acc1"]) <= 0.01, (task, fp32, quantized)


@pytest.mark.parametrize("argv,message", [
    (["--batch", "0"], "--batch: '0' is neither 'dynamic' nor a whole number of at least 1"),
    (["--batch", "many"], "--batch: 'many' is neither 'dynamic' nor a whole number of at least 1"),
    (["--out", "{exists}"], "already exists and is not an empty folder"),
])
def test_bad_export_arguments_say_what_is_wrong(argv, message, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    argv = [a.format(exists=tmp_path / "full") for a in argv]
    out = [] if "--out" in argv else ["--out", str(tmp_path / "new")]
    assert main(["export", "anyclip-shapes", "--pretrained", "v1", *out, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_int4_files_keep_direction_and_shapes_accuracy(shipped, exported, tmp_path):
    """onnxruntime's 4-bit weight-only quantizer on the CLI's float32 files (``--quantize int4`` runs the same
    ``quantize_onnx``): MatMulNBits / GatherBlockQuantized nodes, about a sixth of the size, cosine >= 0.99 to the
    Keras model and shapes zero-shot accuracy within 1 point."""
    import shutil

    import onnx

    from anyclip.eval.shapes import shapes_zero_shot
    from anyclip.export import OnnxCLIP, quantize_onnx
    folder = Path(shutil.copytree(exported, tmp_path / "int4"))
    model, tokenizer = shipped
    for name in ("image_encoder.onnx", "text_encoder.onnx"):
        size = (folder / name).stat().st_size
        quantize_onnx(folder / name, mode="int4")
        ops = {node.op_type for node in onnx.load(str(folder / name)).graph.node}
        assert "MatMulNBits" in ops and (folder / name).stat().st_size < size / 3, (name, ops)
    assert "GatherBlockQuantized" in {node.op_type for node in onnx.load(str(folder / "text_encoder.onnx")).graph.node}
    int4 = OnnxCLIP(folder)
    images, tokens = _photos(model), tokenizer(list(CAPTIONS))
    for ours, theirs in zip(_keras(model, images, tokens), (int4.encode_image(images), int4.encode_text(tokens))):
        assert (ours * theirs).sum(-1).min() >= 0.99
    fp32 = shapes_zero_shot(model, tokenizer, num_samples=200, tasks=("shape", "colour"))
    quantized = shapes_zero_shot(int4, tokenizer, num_samples=200, tasks=("shape", "colour"))
    for task in fp32:
        assert abs(quantized[task]["acc1"] - fp32[task]["acc1"]) <= 0.01, (task, fp32, quantized)
