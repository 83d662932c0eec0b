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
