"""anyclip.compat.tfclip: tfclip's README examples with only the import changed, against open_clip.

The README examples (tfclip 2.0.0's README.md) run unchanged on the TensorFlow backend in a subprocess, except
for two things no test may do: downloading the example image (``get_file``) and reading it with OpenCV; a local
PNG read as an RGB array takes their place. The weights are a random open_clip ViT-B-32 laid out in an offline
Hugging Face cache under the ``laion2b_s34b_b79k`` repository. The printed probabilities must equal open_clip's on
the same weights and image.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from reference import randomize
from test_weights import make_hub_repo, save_state

from anyclip.compat import tfclip

TEXTS = ["a diagram", "a dog", "a cat", "an elephant"]
TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}

LOAD_IMAGE = "import numpy as np\nfrom PIL import Image\nimage = np.asarray(Image.open(IMAGE_PATH).convert('RGB'))\n"
README_DEFAULT = """\
from anyclip.compat.tfclip import create_model_and_transforms

model, image_prep, text_prep = create_model_and_transforms('ViT-B-32',
                                                           pretrained='laion2b_s34b_b79k')

{load_image}
images = image_prep(image)[None]
texts = text_prep(['a diagram', 'a dog', 'a cat', 'an elephant'])

text_probs = model([images, texts], training=False).numpy()
print('Label probs:',
      text_probs)  # [[2.3066370e-06 3.2963203e-07 1.9622885e-08 9.9999738e-01]]
# open_clip: [[2.4752687e-06 3.3843190e-07 2.0362965e-08 9.9999714e-01]]
"""
README_FEATURES = """\
from keras import models, ops
from anyclip.compat.tfclip import create_model_and_transforms

model, image_prep, text_prep = create_model_and_transforms('ViT-B-32',
                                                           pretrained='laion2b_s34b_b79k')

{load_image}
images = image_prep(image)[None]
texts = text_prep(['a diagram', 'a dog', 'a cat', 'an elephant'])

image_model = models.Model(model.inputs[0],
                           model.get_layer('vision/head/out').output)
image_features = image_model(images, training=False)
image_features /= ops.norm(image_features, axis=-1, keepdims=True)

text_model = models.Model(model.inputs[1],
                          model.get_layer('text/head/out').output)
text_features = text_model(texts, training=False)
text_features /= ops.norm(text_features, axis=-1, keepdims=True)

text_probs = ops.matmul(image_features * 100., ops.moveaxis(text_features, -1, -2))
text_probs = ops.softmax(text_probs).numpy()
print('Label probs:',
      text_probs)  # [[2.3066459e-06 3.2963297e-07 1.9622959e-08 9.9999738e-01]]
# open_clip: [[2.4752687e-06 3.3843190e-07 2.0362965e-08 9.9999714e-01]]
"""


def _image(seed=0, size=(300, 200)):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size[1] // 10, size[0] // 10, 3), dtype=np.uint8)  # smooth-ish, not pure noise
    return Image.fromarray(base).resize(size, Image.BILINEAR)


def _reference_features(model, image, preprocess, texts):
    with torch.no_grad():
        img = model.encode_image(preprocess(image)[None], normalize=True)
        txt = model.encode_text(open_clip.get_tokenizer("ViT-B-32")(texts), normalize=True)
    return img, txt


def test_readme_examples_with_only_the_import_changed(tmp_path):
    ref = open_clip.create_model("ViT-B-32").eval()
    ref.load_state_dict(randomize(ref.state_dict(), 5))
    with torch.no_grad():
        ref.logit_scale.fill_(np.log(30.0))  # a spread of probabilities, not one-hot
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    repo = open_clip.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")["hf_hub"].strip("/")
    make_hub_repo(cache, repo, {"open_clip_model.safetensors": save_state(ref, tmp_path / "w.safetensors")})
    image_path = tmp_path / "elephant.png"
    _image().save(image_path)

    pcfg = open_clip.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")
    preprocess = open_clip.image_transform(224, is_train=False, mean=pcfg["mean"], std=pcfg["std"],
                                           interpolation=pcfg["interpolation"], resize_mode=pcfg["resize_mode"])
    img, txt = _reference_features(ref, Image.open(image_path).convert("RGB"), preprocess, TEXTS)
    expected = {"default": (30.0 * img @ txt.T).softmax(-1).numpy(), "features": (100.0 * img @ txt.T).softmax(-1).numpy()}

    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    for name, readme in (("default", README_DEFAULT), ("features", README_FEATURES)):
        script = f"IMAGE_PATH = {str(image_path)!r}\n" + readme.format(load_image=LOAD_IMAGE)
        script += f"\nnp.save({str(tmp_path / name)!r}, text_probs)\n"
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Label probs:" in run.stdout
        probs = np.load(tmp_path / f"{name}.npy")
        assert probs.shape == (1, 4)
        assert np.abs(probs - expected[name]).max() <= 1e-5, (name, probs, expected[name])
        assert expected[name].max() < 0.999  # the comparison is not between two one-hot rows


def _make_tiny(folder, siglip: bool):
    config = dict(TINY, init_logit_bias=-3.0) if siglip else TINY
    model = open_clip.model.CLIP(**config).eval()
    model.load_state_dict(randomize(model.state_dict(), 7))
    with torch.no_grad():
        model.logit_scale.fill_(np.log(20.0))
        if model.logit_bias is not None:
            model.logit_bias.fill_(-2.0)
    (folder / "tiny.json").write_text(json.dumps(config))
    return {"config": str(folder / "tiny.json"), "weights": str(save_state(model, folder / "w.safetensors")),
            "model": model, "folder": folder}


@pytest.fixture(scope="module", params=["clip", "siglip"])
def tiny(request, tmp_path_factory):
    return _make_tiny(tmp_path_factory.mktemp("tfclip"), request.param == "siglip")


def _reference_probs(model, images, texts):
    preprocess = open_clip.image_transform(64, is_train=False)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        txt = model.encode_text(open_clip.tokenize(texts), normalize=True)
        logits = model.logit_scale.exp() * img @ txt.T
        if model.logit_bias is not None:
            return torch.sigmoid(logits + model.logit_bias).numpy(), img.numpy(), txt.numpy()
        return logits.softmax(-1).numpy(), img.numpy(), txt.numpy()


def test_probabilities_and_cut_out_feature_models_equal_open_clip(tiny):
    model, image_prep, text_prep = tfclip.create_model_and_transforms(tiny["config"], weights_path=tiny["weights"])
    pil = [_image(1, (90, 70)), _image(2, (64, 64)), _image(3, (50, 120))]
    images = np.stack([image_prep(np.asarray(im)) for im in pil])
    assert images.dtype == np.uint8 and images.shape == (3, 64, 64, 3)
    assert np.array_equal(image_prep(np.stack([np.asarray(pil[1])] * 2)), images[[1, 1]])  # batched form
    texts = text_prep(TEXTS)
    probs = keras.ops.convert_to_numpy(model([images, texts], training=False))
    ref_probs, ref_img, ref_txt = _reference_probs(tiny["model"], pil, TEXTS)
    assert np.abs(probs - ref_probs).max() <= 1e-5
    if tiny["model"].logit_bias is None:
        assert np.allclose(probs.sum(-1), 1.0, atol=1e-6)
    for layer, inputs, ref in (("vision/head/out", images, ref_img), ("text_head_out", texts, ref_txt)):
        which = 0 if layer.startswith("vision") else 1
        cut = keras.Model(model.inputs[which], model.get_layer(layer).output)
        feats = keras.ops.convert_to_numpy(cut(inputs, training=False))
        feats = feats / np.linalg.norm(feats, axis=-1, keepdims=True)
        assert np.abs(feats - ref).max() <= 1e-5


def test_functional_model_saves_and_loads_as_keras_file(tiny, tmp_path):
    model, image_prep, text_prep = tfclip.create_model_and_transforms(tiny["config"], weights_path=tiny["weights"])
    images = image_prep(np.asarray(_image(4, (80, 80))))[None]
    texts = text_prep(TEXTS[:2])
    before = keras.ops.convert_to_numpy(model([images, texts]))
    path = tmp_path / "tfclip.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, tfclip.TFClipModel)
    assert np.array_equal(keras.ops.convert_to_numpy(loaded([images, texts])), before)
    assert loaded.get_layer("vision/head/out").name == "vision_head_out"


def test_bad_inputs_name_what_is_wrong(tiny):
    with pytest.raises(ValueError, match=r"Available weights for ViT-B-32 are: \[.*'openai'"):
        tfclip.create_model_and_transforms("ViT-B/32", pretrained="no_such_tag")
    with pytest.raises(ValueError, match="unknown model 'ViT-B-33'"):
        tfclip.create_model_and_transforms("ViT-B-33")
    _, image_prep, _ = tfclip.create_model_and_transforms(tiny["config"], weights_path=tiny["weights"])
    with pytest.raises(ValueError, match=r"got shape \(64, 64\)"):
        image_prep(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"values in \[-1.0, 1.0\]"):
        image_prep(np.linspace(-1, 1, 64 * 64 * 3).reshape(64, 64, 3))
    with pytest.raises(ValueError, match="no pixels"):
        image_prep(np.zeros((0, 5, 3), np.uint8))


def test_listing_functions_match_anyclip():
    import anyclip
    assert tfclip.list_models() == anyclip.list_models()
    assert tfclip.list_pretrained() == anyclip.list_pretrained()
    assert "openai" in tfclip.list_pretrained_tags_by_model("ViT-B-32")
    assert "ViT-B-32" in tfclip.list_pretrained_models_by_tag("laion2b_s34b_b79k")
    tokens = tfclip.get_tokenizer("ViT-B-32")(["a cat"])
    assert np.array_equal(np.asarray(tokens), open_clip.tokenize(["a cat"]).numpy())


def test_float_images_are_rounded_as_tfclip_does():
    prep = tfclip.ImagePrep(anyclip_preprocess())
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3)).astype(np.float32) + 0.3
    assert np.array_equal(prep(image), prep(np.round(image).astype(np.uint8)))


def anyclip_preprocess():
    from anyclip.models.preprocess import PreprocessConfig
    return PreprocessConfig(size=32)



# tfclip's README code on JAX and torch: its own TensorFlow calls (tf.norm, tf.matmul, tf.nn.softmax and .numpy())
# on anyclip's outputs, with only its imports changed (keras.src.utils.data_utils -> keras.utils).
HOST_OUTPUTS = """\
import json, sys
import numpy as np
from anyclip.compat.tfclip import create_model_and_transforms  # first: in this venv importing TensorFlow before
import tensorflow as tf                                         # torch (or Keras on torch) crashes in triton
from keras import models
from keras import utils as data_utils  # was: from keras.src.utils import data_utils (gone from Keras 3.15)

config, weights, image_path, out = sys.argv[1:5]
model, image_prep, text_prep = create_model_and_transforms(config, weights_path=weights)
image = np.load(image_path)
images = image_prep(image)[None]
texts = text_prep(['a diagram', 'a dog', 'a cat', 'an elephant'])

probs = model([images, texts], training=False)
text_probs = probs.numpy()
default_call = model([images, texts])
predicted = model.predict([np.concatenate([images] * 4), texts], batch_size=4, verbose=0).numpy()

image_model = models.Model(model.inputs[0], model.get_layer('vision/head/out').output)
image_features = image_model(images, training=False)
feature_type = type(image_features).__name__
image_features /= tf.norm(image_features, axis=-1, keepdims=True)
text_model = models.Model(model.inputs[1], model.get_layer('text/head/out').output)
text_features = text_model(texts, training=False)
text_features /= tf.norm(text_features, axis=-1, keepdims=True)
feature_probs = tf.nn.softmax(tf.matmul(image_features * 100., text_features, transpose_b=True)).numpy()

trained = model([images, texts], training=True)
np.savez(out, probs=text_probs, default=default_call.numpy(), predicted=predicted, features=feature_probs)
print(json.dumps({"types": [type(x).__name__ for x in (probs, default_call)] + [feature_type],
                  "grad": [bool(getattr(x, "requires_grad", False)) for x in (probs, trained)],
                  "get_file": callable(data_utils.get_file)}))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_inference_outputs_have_numpy_and_no_grad_on_jax_and_torch(backend, tmp_path):
    tiny = _make_tiny(tmp_path, siglip=False)
    pil = _image(5, (90, 70))
    np.save(tmp_path / "image.npy", np.asarray(pil))
    ref, img, txt = _reference_probs(tiny["model"], [pil], TEXTS)
    env = {**os.environ, "KERAS_BACKEND": backend}
    script = tmp_path / "readme.py"
    script.write_text(HOST_OUTPUTS)
    run = subprocess.run([sys.executable, str(script), tiny["config"], tiny["weights"], str(tmp_path / "image.npy"),
                          str(tmp_path / "out.npz")], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["types"] == ["HostArray"] * 3  # numpy arrays with .numpy(), even without training=False
    assert report["grad"] == [False, backend == "torch"]  # inference detached; training=True keeps autograd
    assert report["get_file"]
    out = np.load(tmp_path / "out.npz")
    for key in ("probs", "default", "predicted"):
        assert np.abs(out[key] - ref).max() <= 1e-5, key
    expected_features = torch.from_numpy(100.0 * img @ txt.T).softmax(-1).numpy()
    assert np.abs(out["features"] - expected_features).max() <= 1e-5
