"""The torch backend as a drop-in for open_clip, and the one layout rule (``anyclip.models.layout``) everywhere.

The torch checks run in a torch-backend subprocess on a tiny CLIP holding the same random weights as an open_clip
model (``model_pairs.model_pair``): OpenCLIP's README quick-usage code runs unchanged on both and gives the same
numbers; open_clip's ``forward`` tuple / ``output_dict`` keys, NCHW = NHWC input, ``eval`` / ``train`` /
``to`` / ``no_grad`` / ``autocast``, and preprocess / tokenizer types against open_clip's own; a CPU device scope
that copies nothing.
"""

import copy

import numpy as np
import pytest
from backend_runner import start_in_backend
from PIL import Image
from towers import TEXT, VISION

from anyclip.models.layout import channels_last_axis, to_channels_last

# a tiny CLIP whose vocabulary takes the real BPE ids
CFG = {"embed_dim": 16, "vision_cfg": dict(VISION), "text_cfg": {**TEXT, "vocab_size": 49408}}
TEXTS = ["a diagram", "a dog", "a cat"]
COCA = {"embed_dim": 32, "custom_text": True,
        "vision_cfg": {**VISION, "attentional_pool": True, "attn_pooler_heads": 2, "attn_pooler_queries": 5,
                       "output_tokens": True},
        "text_cfg": {**TEXT, "embed_cls": True, "output_tokens": True},
        "multimodal_cfg": {"context_length": 16, "width": 32, "heads": 2, "layers": 1}}
TOL = 1e-5


@pytest.fixture(scope="module")
def torch_job():
    job = start_in_backend("torch", "test_torch_face:torch_worker", {}, {"cfg": CFG, "coca": COCA})
    yield job
    job.kill()


def _image(seed=0, size=(47, 40)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def torch_worker(arrays, params):
    """Runs under KERAS_BACKEND=torch; asserts, and returns open_clip's and anyclip's README outputs."""
    import open_clip
    import torch
    from model_pairs import model_pair

    import anyclip
    from anyclip.transforms import image_transform, train_transform

    cfg = params["cfg"]
    reference, model = model_pair(copy.deepcopy(cfg))
    size = cfg["vision_cfg"]["image_size"]
    oc_preprocess = open_clip.image_transform(size, is_train=False)
    oc_tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])
    preprocess = image_transform(size=size)
    tokenizer = anyclip.get_tokenizer("ViT-B-32", context_length=cfg["text_cfg"]["context_length"])

    # preprocess and tokenizer: open_clip's types, layouts and values
    pixels, oc_pixels = preprocess(_image()), oc_preprocess(_image())
    assert isinstance(pixels, torch.Tensor) and pixels.dtype == torch.float32 and pixels.shape == (3, size, size)
    torch.testing.assert_close(pixels, oc_pixels, atol=1e-6, rtol=0)
    assert preprocess.batch([_image(), _image(1)]).shape == (2, 3, size, size)
    assert preprocess(_image(), ).shape == image_transform(size=size, output="torch")(_image()).shape
    assert image_transform(size=size, output="numpy")(_image()).shape == (size, size, 3)
    assert train_transform(size=size, seed=0)(_image()).shape == (3, size, size)
    ids = tokenizer(TEXTS)
    assert isinstance(ids, torch.Tensor) and ids.dtype == torch.int64
    assert torch.equal(ids, oc_tokenizer(TEXTS))
    assert torch.equal(anyclip.tokenize(TEXTS, context_length=16), open_clip.tokenize(TEXTS, context_length=16))

    def readme(model, preprocess, tokenizer, autocast):
        """OpenCLIP's README quick usage, verbatim but for the CPU autocast and the image."""
        image = preprocess(_image()).unsqueeze(0)
        text = tokenizer(TEXTS)
        with torch.no_grad(), torch.autocast("cpu", enabled=autocast):
            image_features = model.encode_image(image)
            text_features = model.encode_text(text)
            image_features /= image_features.norm(dim=-1, keepdim=True)
            text_features /= text_features.norm(dim=-1, keepdim=True)
            text_probs = (100.0 * image_features @ text_features.T).softmax(dim=-1)
        return image_features, text_probs

    model.eval()
    out = {}
    for autocast in (False, True):
        ours, theirs = readme(model, preprocess, tokenizer, autocast), readme(reference, oc_preprocess,
                                                                               oc_tokenizer, autocast)
        for name, a, b in zip(("features", "probs"), ours, theirs):
            assert isinstance(a, torch.Tensor) and not a.requires_grad
            out[f"{name}_{int(autocast)}"] = a.float().numpy()
            out[f"open_clip_{name}_{int(autocast)}"] = b.float().numpy()

    # open_clip's forward: tuple, then output_dict keys; NCHW == NHWC; eval / train / to
    image = preprocess.batch([_image(), _image(1)])
    text = tokenizer(TEXTS)
    with torch.no_grad():
        got, want = model(image, text), reference(image, text)
        assert len(got) == len(want) == 3
        for a, b in zip(got, want):
            assert isinstance(a, torch.Tensor) and a.device == model.logit_scale.value.device
            torch.testing.assert_close(a, b, atol=TOL, rtol=TOL)
        reference.output_dict = model.output_dict = True
        got, want = model(image=image, text=text), reference(image=image, text=text)
        assert sorted(got) == sorted(want), (sorted(got), sorted(want))
        for key in want:
            torch.testing.assert_close(got[key], want[key], atol=TOL, rtol=TOL)
        only_text, oc_only_text = model(text=text), reference(text=text)
        assert only_text["image_features"] is None and sorted(only_text) == sorted(oc_only_text)
        nhwc = model.encode_image(image.permute(0, 2, 3, 1).numpy())
        torch.testing.assert_close(model.encode_image(image), nhwc, atol=0, rtol=0)
    assert model.train() is model and model.training
    assert model.train(False) is model and not model.training
    assert model.to("cpu") is model
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(image), reference.encode_image(image), atol=TOL, rtol=TOL)
    try:
        model.encode_image(torch.zeros(1, 3, 5, 3))
    except ValueError as e:
        assert "(1, 3, 5, 3)" in str(e), e
    else:
        raise AssertionError("an ambiguous image shape did not raise")
    _check_coca(params["coca"], image)
    _check_cpu_scope_copies_nothing(model)
    _check_attention_copies_nothing()
    return out


def _check_cpu_scope_copies_nothing(model):
    """On the CPU every device scope anyclip opens is torch's "cpu": Keras ops take a CPU tensor as it is. (A
    "cpu:0" scope made Keras copy every op input "to" it: 420 copies in one ViTamin-S image encode.)"""
    import keras
    import torch

    from anyclip.models.placement import device_scope, model_device_scope
    tensor = torch.ones(3)
    for name, scope in [("model", model_device_scope(model)), ("'cpu'", device_scope("cpu")),
                        ("'cpu:0'", device_scope("cpu:0"))]:
        with scope:
            assert keras.ops.convert_to_tensor(tensor) is tensor, f"the {name} device scope copies CPU tensors"


def _check_attention_copies_nothing():
    """Attention reads q, k and v where the qkv projection left them and returns a tensor that reshapes for free.
    (Keras' torch form copies q, k and v head-major first: three copies per attention block.)"""
    import torch

    from anyclip.layers.attention import attention
    qkv = torch.randn(2, 9, 3, 4, 8)
    with torch.no_grad(), torch.profiler.profile() as profile:
        out = attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], causal=True)
    copies = [e.key for e in profile.key_averages() if e.key in ("aten::clone", "aten::copy_", "aten::contiguous")]
    assert not copies, f"attention copied its inputs: {copies}"
    assert out.shape == (2, 9, 4, 8) and out.is_contiguous()


def _check_coca(cfg, image):
    """CoCa's forward form: open_clip's dict keys, with image and text and with the image alone."""
    import open_clip
    import torch

    from anyclip.models import CoCa, CoCaConfig
    oc_cfg = {k: v for k, v in copy.deepcopy(cfg).items() if k != "custom_text"}
    reference, model = open_clip.CoCa(**oc_cfg).eval(), CoCa(CoCaConfig.from_dict(copy.deepcopy(cfg)), seed=0)
    text = torch.randint(1, 400, (2, cfg["text_cfg"]["context_length"]))
    with torch.no_grad():
        for args in [(image, text), (image,)]:
            got, want = model(*args), reference(*args)
            assert sorted(got) == sorted(want), (sorted(got), sorted(want))
            for key in want:
                assert got[key].shape == want[key].shape, (key, got[key].shape, want[key].shape)


def test_torch_readme_quick_usage_matches_open_clip(torch_job):
    out = torch_job.result(timeout=300)
    np.testing.assert_allclose(out["features_0"], out["open_clip_features_0"], atol=TOL)
    np.testing.assert_allclose(out["probs_0"], out["open_clip_probs_0"], atol=TOL)
    # under autocast both run in bfloat16 where they choose to: same answer, bf16 accuracy
    np.testing.assert_allclose(out["features_1"], out["open_clip_features_1"], atol=3e-2)
    assert np.isfinite(out["probs_1"]).all()
    assert (out["probs_1"].argmax(-1) == out["open_clip_probs_1"].argmax(-1)).all()


def test_layout_rule_decides_by_the_channel_axis():
    assert channels_last_axis((2, 32, 32, 3), (32, 32)) is True
    assert channels_last_axis((2, 3, 32, 32), (32, 32)) is False
    assert channels_last_axis((2, 3, 32, 3), (32, 3)) is False  # both axes hold 3: the image size decides
    assert channels_last_axis((2, 3, 32, 3), (3, 32)) is True
    for shape in [(1, 3, 5, 3), (1, 4, 5, 6), (3, 32, 32)]:
        with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
            channels_last_axis(shape, (32, 32))
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype("float32")
    np.testing.assert_array_equal(to_channels_last(x, (8, 8)), x.transpose(0, 2, 3, 1))


def test_jax_face_keeps_numpy_inputs_and_backend_outputs():
    """On JAX: numpy HWC / int32 from preprocess and tokenizer, jax arrays out, open_clip's forward form."""
    import jax

    import anyclip
    from anyclip.models import CLIPConfig
    from anyclip.transforms import image_transform

    pixels = image_transform(size=32)(_image())
    assert isinstance(pixels, np.ndarray) and pixels.shape == (32, 32, 3) and pixels.dtype == np.float32
    ids = anyclip.get_tokenizer("ViT-B-32", context_length=16)(TEXTS)
    assert isinstance(ids, np.ndarray) and ids.dtype == np.int32
    model = anyclip.CLIP(CLIPConfig.from_dict(copy.deepcopy(CFG)), seed=0)
    images = np.stack([pixels, image_transform(size=32)(_image(1))])
    image_features, text_features, scale = model(images.transpose(0, 3, 1, 2), ids)
    assert all(isinstance(x, jax.Array) for x in (image_features, text_features, scale))
    np.testing.assert_allclose(image_features, model.encode_image(images, normalize=True), atol=TOL)
    np.testing.assert_allclose(np.linalg.norm(text_features, axis=-1), 1.0, atol=TOL)
    assert set(model({"images": images, "texts": ids})) == {"image_features", "text_features", "logit_scale"}
    model.output_dict = True
    assert set(model(images, ids)) == {"image_features", "text_features", "logit_scale"}
