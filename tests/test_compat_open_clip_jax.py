"""anyclip.compat.open_clip_jax: CLIPInference against open_clip on the same random weights, and the name tables.

open_clip_jax's facts (names, pretrained lists, ``softmax_temp`` semantics, the vit-eps-patch32 test config) are
from github.com/BobMcDear/open-clip-jax (README.md, open_clip_jax/clip/{factory,inference}.py, model_configs/).
"""

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

import anyclip
from anyclip.compat import open_clip_jax as ocj

TEXTS = ["A diagram", "A dog", "A cat"]
# open_clip_jax's model_configs/vit-eps-patch32.json in open_clip's terms (GELU, 224 px, width 64 / 4 heads).
EPS = dict(embed_dim=64, vision_cfg=dict(layers=2, width=64, head_width=16, patch_size=32, image_size=224),
           text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=2))


def _images(n=3, seed=1):
    rng = np.random.default_rng(seed)
    sizes = [(256, 240), (300, 180), (224, 224)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:n]]


@pytest.fixture(scope="module")
def eps(tmp_path_factory):
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**EPS).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("ocj") / "eps.pt"
    torch.save(model.state_dict(), path)
    yield path, model
    path.unlink()


def _reference(model, images, texts, temp):
    preprocess = open_clip.image_transform(224, is_train=False)
    with torch.no_grad():
        a = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        b = model.encode_text(open_clip.tokenize(texts), normalize=True)
        cos = a @ b.t()
    if not temp:
        return cos.numpy(), cos.t().numpy()
    return (temp * cos).softmax(-1).numpy(), (temp * cos.t()).softmax(-1).numpy()


@pytest.mark.parametrize("temp", [100.0, 30.0, None])
def test_clip_inference_matches_open_clip(eps, temp):
    path, model = eps
    clip = ocj.CLIPInference("vit-eps-patch32", softmax_temp=temp, pretrained=str(path))
    images = _images()
    per_image, per_text = clip(images, TEXTS)
    ref_image, ref_text = _reference(model, images, TEXTS, temp)
    assert per_image.shape == (3, 3) and per_text.shape == (3, 3)
    assert np.abs(per_image - ref_image).max() <= 1e-5
    assert np.abs(per_text - ref_text).max() <= 1e-5
    if temp:
        np.testing.assert_allclose(per_image.sum(-1), 1, atol=1e-6)
        assert per_image.max() - per_image.min() > 1e-3  # not uniform: the comparison means something


def test_readme_usage_single_image_and_text(eps):
    path, model = eps
    clip = ocj.CLIPInference("vit-eps-patch32", softmax_temp=100., pretrained=str(path))
    image = _images(1)[0].convert("RGB")
    probs, _ = clip(image, TEXTS)
    assert probs.shape == (1, 3)
    np.testing.assert_allclose(probs, _reference(model, [image], TEXTS, 100.0)[0], atol=1e-5)
    one, per_text = clip([image, image], "A cat")
    assert one.shape == (2, 1) and per_text.shape == (1, 2)
    np.testing.assert_allclose(one, 1.0, atol=1e-6)  # a softmax over one text
    arrays, _ = clip(np.asarray(image), TEXTS)  # uint8 [H, W, 3] arrays, as open_clip_jax takes
    np.testing.assert_array_equal(arrays, probs)


def test_random_weights_warn_and_dtypes():
    with pytest.warns(UserWarning, match="randomly-initialized"):
        clip = ocj.CLIPInference("vit-eps-patch32", pretrained=False, dtype=np.float32)
    assert clip.model.config.embed_dim == 64
    with pytest.raises(ValueError, match="dtype"):
        ocj.CLIPInference("vit-eps-patch32", pretrained=False, dtype="int8")


def test_name_tables_map_to_anyclip():
    models, pairs = set(anyclip.list_models()), set(anyclip.list_pretrained())
    for name in ocj.list_models():
        arch, _ = ocj.anyclip_name(name, False)
        assert name == "vit-eps-patch32" or arch in models, name
    for name, tag in ocj.list_pretrained():
        assert ocj.anyclip_name(name, tag) in pairs, (name, tag)
    assert ocj.anyclip_name("vit-base-patch32") == ("ViT-B-32", "datacomp_xl_s13b_b90k")  # True: its last tag
    assert ocj.anyclip_name("vit-huge-patch14", True) == ("ViT-H-14", "laion2b_s32b_b79k")
    assert ocj.anyclip_name("vit-large-patch14", "laion400m-e32") == ("ViT-L-14", "laion400m_e32")
    assert ocj.anyclip_name("vit-base-patch32", "openai") == ("ViT-B-32", "openai")  # anyclip's own tags pass
    with pytest.raises(ValueError, match="ConvNeXt"):
        ocj.CLIPInference("convnext-base", pretrained=False)
    with pytest.raises(ValueError, match="not recognized"):
        ocj.anyclip_name("vit-giant-patch99")
    with pytest.raises(ValueError, match="does not have pre-trained"):
        ocj.list_pretrained_by_model("vit-small-patch16")


# open_clip_jax's README second example with only the import changed (plus numpy and softmax, which it uses
# without importing, and a local checkpoint / image in place of the download and CLIP.png).
README_PARTS = """\
import sys
from typing import Dict
import numpy as np
from keras import ops as nn                      # the README's nn.softmax (flax.linen), undefined there
from PIL import Image
from anyclip.compat.open_clip_jax import create_image_transforms, create_model_with_params, tokenize

weights, image_path, out = sys.argv[1:4]
model, vars = create_model_with_params(
    'vit-eps-patch32',
    pretrained=weights,
    )
image_transforms = create_image_transforms(
    train=False,
    input_format='image',
    do_batch_transforms=False,
    )

image = image_transforms(Image.open(image_path).convert('RGB'))._numpy()
image = np.expand_dims(image, axis=0)
text = tokenize(['A diagram', 'A dog', 'A cat'])._numpy()

def calculate_similarity(vars: Dict, image, text):
    # CLIP returns L2-normalized image and text features.
    image_proj, text_proj = model.apply(vars, image, text)
    return nn.softmax(100 * image_proj @ text_proj.T)

try:
    import jax
    probs = jax.jit(calculate_similarity)(vars, image, text)
except ImportError:
    probs = calculate_similarity(vars, image, text)
print(probs)
np.save(out, nn.convert_to_numpy(probs))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_readme_parts_example_matches_open_clip(eps, backend, tmp_path):
    import os
    import subprocess
    import sys
    path, model = eps
    image = _images(1)[0]
    image.save(tmp_path / "clip.png")
    (tmp_path / "example.py").write_text(README_PARTS if backend == "jax" else README_PARTS.replace(
        "    import jax\n", "    raise ImportError\n"))
    run = subprocess.run([sys.executable, str(tmp_path / "example.py"), str(path), str(tmp_path / "clip.png"),
                          str(tmp_path / "probs.npy")], env={**os.environ, "KERAS_BACKEND": backend},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy"), _reference(model, [image], TEXTS, 100.0)[0],
                               atol=1e-5)


def test_parts_equal_open_clip_transform_and_tokenizer():
    image = _images(2)[1]
    item, batch = ocj.create_image_transforms(train=False, input_format="image")
    ref = open_clip.image_transform(224, is_train=False)(image).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(batch(item(image)).numpy(), ref, atol=1e-5)
    whole = ocj.create_image_transforms(train=False, input_format="bytes", do_batch_transforms=False)
    import io
    png = io.BytesIO()
    image.save(png, format="PNG")
    np.testing.assert_allclose(whole(png.getvalue())._numpy(), ref, atol=1e-5)
    tokens = ocj.tokenize(TEXTS)
    np.testing.assert_array_equal(tokens.numpy(), open_clip.tokenize(TEXTS).numpy())
    assert ocj.tokenize("A cat", context_len=10).shape == (10,)
    with pytest.raises(ValueError, match="not recognized"):
        ocj.create_image_transforms(train=False, input_format="url")
    with pytest.raises(NotImplementedError, match="train_transform"):
        ocj.create_image_transforms(train=True)


def test_temperature_and_vars(eps):
    path, _ = eps
    model, vars = ocj.create_model_with_params("vit-eps-patch32", pretrained=str(path), temp_init=np.log(2.0))
    image, text = np.zeros((1, 224, 224, 3), "float32"), ocj.tokenize(["a"])
    image_proj, text_proj = (np.asarray(anyclip_numpy(x)) for x in model.apply(vars, image, text))
    np.testing.assert_allclose(np.linalg.norm(image_proj, axis=-1), 2.0, rtol=1e-5)  # exp(temp) * unit vector
    np.testing.assert_allclose(np.linalg.norm(text_proj, axis=-1), 1.0, rtol=1e-5)
    with pytest.raises(KeyError, match="create_model_with_params"):
        model.apply({"params": {}}, image, text)


def anyclip_numpy(x):
    import keras
    return keras.ops.convert_to_numpy(x)


def test_nothing_is_downloaded_unless_asked(monkeypatch):
    from anyclip.weights import hub

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")
    monkeypatch.setattr(hub, "hf_download", no_download)
    monkeypatch.setattr(hub, "hf_config", no_download)
    with pytest.warns(UserWarning, match="randomly-initialized.*nothing is downloaded"):
        clip = ocj.CLIPInference("vit-eps-patch32")
    probs, _ = clip(_images(1)[0], TEXTS)
    assert probs.numpy().shape == (1, 3)
    with pytest.warns(UserWarning, match="randomly-initialized"):
        ocj.create_model_with_params("vit-eps-patch32")


def test_unreachable_hub_fails_fast_with_the_offline_hint(tmp_path):
    """No network: the endpoint is a closed local port; the probe must give up at once, with no retries."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "cache"))
    script = ("import time\nfrom anyclip.weights.hub import hf_download\nstart = time.monotonic()\n"
              "try:\n    hf_download('laion/CLIP-ViT-B-32-laion2B-s34B-b79K')\n"
              "except Exception as e:\n    print(type(e).__name__, time.monotonic() - start, e)\n")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    name, elapsed, message = run.stdout.split(" ", 2)
    assert name == "WeightsUnavailableError" and "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message
    assert "HF_HUB_OFFLINE=1" in message and "Retrying" not in run.stderr
    assert float(elapsed) < 5, elapsed
