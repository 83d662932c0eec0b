"""anyclip.compat.clip against OpenAI-style reference code run on open_clip with the same random weights.

The checkpoints are OpenAI-layout state dicts (``torch.save(model.state_dict())`` of open_clip CLIPs built with
QuickGELU and OpenAI-inferable shapes; float32 values that float16 holds exactly, as in OpenAI's releases, since
OpenAI's ``build_model`` rounds weights to float16 on load); the reference loads them with open_clip's
``load_openai_model`` (OpenAI's ``build_model`` semantics) and runs the OpenAI README's zero-shot and linear-probe
code.
"""

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

import anyclip.compat.clip as clip

TOL = 1e-5
TEXTS = ["a diagram", "a dog", "a cat"]
ARCHS = {
    "vit-tiny": dict(embed_dim=64, vision_cfg=dict(layers=2, width=128, patch_size=16, image_size=64),
                     text_cfg=dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=2)),
    "rn-tiny": dict(embed_dim=64, vision_cfg=dict(layers=(1, 2, 1, 1), width=16, patch_size=None, image_size=64),
                    text_cfg=dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=2)),
}


def _reference_preprocess(n_px):
    """OpenAI's clip._transform (facts from openai/CLIP clip/clip.py)."""
    return Compose([Resize(n_px, interpolation=InterpolationMode.BICUBIC), CenterCrop(n_px),
                    lambda im: im.convert("RGB"), ToTensor(),
                    Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])


def _images(n=5, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(96, 80), (50, 120), (64, 64), (300, 200), (33, 47)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:n]]


@pytest.fixture(scope="module", params=list(ARCHS))
def checkpoint(request, tmp_path_factory):
    name = request.param
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**ARCHS[name], quick_gelu=True)
    with torch.no_grad():  # break the symmetric init so every weight matters, and sharpen the logits
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
            # OpenAI's build_model loads weights into float16 layers (its checkpoints are float16), so the
            # reference rounds them: keep float32 values that float16 holds exactly, as OpenAI's files do.
            p.copy_(p.half().float())
        model.logit_scale.fill_(np.log(100.0) - 0.3)
    path = tmp_path_factory.mktemp("openai") / f"{name}.pt"
    torch.save(model.state_dict(), path)
    del model
    reference = open_clip.load_openai_model(str(path), device="cpu", precision="fp32").eval()
    yield path, reference
    path.unlink()


def test_available_models_are_openai_names():
    assert clip.available_models() == ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16",
                                       "ViT-L/14", "ViT-L/14@336px"]
    import anyclip
    pairs = set(anyclip.list_pretrained())
    for name in clip.available_models():
        assert clip.anyclip_name(name) in pairs, name


def test_unknown_model_and_bad_device():
    with pytest.raises(RuntimeError, match=r"Model nope not found; available models = \['RN50'"):
        clip.load("nope")
    with pytest.raises(ValueError, match="device"):
        clip.load("ViT-B/32", device="quantum")


def test_readme_zero_shot(checkpoint):
    """The README's first example with only the import changed (torch in, torch out)."""
    path, reference = checkpoint
    device = "cpu"
    with pytest.warns(UserWarning, match="jit=True is ignored"):
        clip.load(str(path), device=device, jit=True)
    model, preprocess = clip.load(str(path), device=device)
    n_px = int(np.atleast_1d(reference.visual.image_size)[0])
    assert model.visual.input_resolution == n_px and model.context_length == 77
    image_pil = _images(1)[0]
    image = preprocess(image_pil).unsqueeze(0).to(device)
    text = clip.tokenize(TEXTS).to(device)
    with torch.no_grad():
        image_features = model.encode_image(image)
        text_features = model.encode_text(text)
        logits_per_image, logits_per_text = model(image, text)
        probs = logits_per_image.softmax(dim=-1).cpu().numpy()

    ref_image = _reference_preprocess(n_px)(image_pil).unsqueeze(0)
    ref_text = open_clip.tokenize(TEXTS)
    with torch.no_grad():
        ref_if, ref_tf = reference.encode_image(ref_image), reference.encode_text(ref_text)
        a, b = ref_if / ref_if.norm(dim=1, keepdim=True), ref_tf / ref_tf.norm(dim=1, keepdim=True)
        ref_logits = reference.logit_scale.exp() * a @ b.t()  # OpenAI's CLIP.forward
        ref_probs = ref_logits.softmax(dim=-1).numpy()
    assert np.abs(image.numpy() - ref_image.numpy()).max() <= TOL
    np.testing.assert_array_equal(text.numpy(), ref_text.numpy())
    assert probs.max() - probs.min() > 0.1  # not uniform: the comparison means something
    assert np.abs(probs - ref_probs).max() <= TOL
    assert np.abs(logits_per_text.numpy() - ref_logits.t().numpy()).max() <= 1e-3  # logits are ~100x cosines
    for ours, ref in ((image_features, ref_if), (text_features, ref_tf)):
        assert isinstance(ours, torch.Tensor)
        assert np.abs(ours.numpy() - ref.numpy()).max() <= TOL * max(1.0, float(ref.abs().max()))


def test_readme_linear_probe_features(checkpoint):
    """The README's linear-probe get_features loop (DataLoader over preprocess) gives open_clip's features."""
    from torch.utils.data import DataLoader
    path, reference = checkpoint
    model, preprocess = clip.load(str(path), device="cpu")
    images = _images()
    dataset = [(preprocess(im), i) for i, im in enumerate(images)]
    all_features, all_labels = [], []
    with torch.no_grad():
        for batch, labels in DataLoader(dataset, batch_size=2):
            all_features.append(model.encode_image(batch.to("cpu")))
            all_labels.append(labels)
    features = torch.cat(all_features).cpu().numpy()
    ref_pre = _reference_preprocess(model.visual.input_resolution)
    with torch.no_grad():
        ref = reference.encode_image(torch.stack([ref_pre(im) for im in images])).numpy()
    assert features.shape == ref.shape and torch.cat(all_labels).tolist() == list(range(len(images)))
    assert np.abs(features - ref).max() <= TOL * max(1.0, np.abs(ref).max())


def test_numpy_mode_channels_first(checkpoint):
    path, reference = checkpoint
    model, preprocess = clip.load(str(path), array_type="numpy")
    images = np.stack([preprocess(im) for im in _images(3)])
    text = clip.tokenize(TEXTS, array_type="numpy")
    assert isinstance(text, np.ndarray) and text.dtype == np.int32 and images.shape[1] == 3
    per_image, per_text = model(images, text)
    channels_last, _ = model(images.transpose(0, 2, 3, 1), text)
    scale = np.exp(model.logit_scale)
    with torch.no_grad():
        a = reference.encode_image(torch.from_numpy(images))
        b = reference.encode_text(torch.from_numpy(text))
        a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
        ref = (reference.logit_scale.exp() * a @ b.t()).numpy()
    assert isinstance(per_image, np.ndarray) and per_image.shape == (3, 3)
    np.testing.assert_allclose(per_image, ref, atol=1e-3)
    np.testing.assert_array_equal(per_text, per_image.T)
    np.testing.assert_array_equal(channels_last, per_image)
    assert isinstance(scale, (np.ndarray, np.floating))
    assert abs(float(scale) - float(reference.logit_scale.detach().exp())) <= 1e-4


CORPUS = [
    "a diagram", "A Photo of a CAT!", "  lots   of\twhitespace\n here ", "héllo wörld café",
    "emoji 🐱🐶 and &amp; html",
    "", "numbers 1234567 and symbols #$%^&*()", "日本語のテキスト", "don't won't can't", "x" * 300,
    " ".join(["word"] * 75), " ".join(["word"] * 76), " ".join(["word"] * 200),
]


def _openai_tokenize(texts, context_length=77, truncate=False):
    """OpenAI's tokenize algorithm (openai/CLIP clip/clip.py) on open_clip's BPE."""
    tok = open_clip.tokenizer._tokenizer
    sot, eot = tok.sot_token_id, tok.eot_token_id
    result = np.zeros((len(texts), context_length), np.int64)
    for i, text in enumerate(texts):
        tokens = [sot] + tok.encode(text) + [eot]
        if len(tokens) > context_length:
            if not truncate:
                raise RuntimeError(f"Input {text} is too long for context length {context_length}")
            tokens = tokens[:context_length]
            tokens[-1] = eot
        result[i, :len(tokens)] = tokens
    return result


@pytest.mark.parametrize("context_length", [77, 16])
def test_tokenize_matches_openai(context_length):
    fits = [t for t in CORPUS if len(open_clip.tokenizer._tokenizer.encode(t)) + 2 <= context_length]
    too_long = [t for t in CORPUS if t not in fits]
    assert fits and too_long
    ours = clip.tokenize(fits, context_length=context_length)
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.int64  # LongTensor, as OpenAI's
    np.testing.assert_array_equal(ours.numpy(), _openai_tokenize(fits, context_length))
    np.testing.assert_array_equal(ours.numpy(), open_clip.tokenize(fits, context_length=context_length).numpy())
    truncated = clip.tokenize(CORPUS, context_length=context_length, truncate=True).numpy()
    np.testing.assert_array_equal(truncated, _openai_tokenize(CORPUS, context_length, truncate=True))
    np.testing.assert_array_equal(truncated, open_clip.tokenize(CORPUS, context_length=context_length).numpy())
    for text in too_long:
        with pytest.raises(RuntimeError, match=f"is too long for context length {context_length}$"):
            clip.tokenize(["ok", text], context_length=context_length)
    assert (truncated[:, -1][[CORPUS.index(t) for t in too_long]] == open_clip.tokenizer._tokenizer.eot_token_id).all()
    assert clip.tokenize("a dog").shape == (1, 77)
