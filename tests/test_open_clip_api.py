"""open_clip's top-level functions in anyclip behave as open_clip's (values from open_clip 3.3.0 itself)."""

import argparse

import numpy as np
import pytest

import anyclip

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")


def test_tokenize_and_decode_equal_open_clip():
    texts = ["a photo of a cat", "Hello, World! ünïcode", ""]
    ours, theirs = anyclip.tokenize(texts, context_length=20), open_clip.tokenize(texts, context_length=20).numpy()
    assert ours.dtype == np.int64
    np.testing.assert_array_equal(ours, theirs)
    assert anyclip.decode(ours[1]) == open_clip.decode(torch.from_numpy(theirs[1]))
    np.testing.assert_array_equal(anyclip.SimpleTokenizer()(texts), open_clip.SimpleTokenizer()(texts).numpy())


def test_registry_functions_equal_open_clip():
    assert anyclip.OPENAI_DATASET_MEAN == open_clip.OPENAI_DATASET_MEAN
    assert anyclip.OPENAI_DATASET_STD == open_clip.OPENAI_DATASET_STD
    for name in ("ViT-B-32", "RN50", "coca_ViT-B-32", "ViT-B-16-SigLIP"):
        assert anyclip.get_model_config(name) == open_clip.get_model_config(name), name
    assert anyclip.get_model_config("no-such-model") is None is open_clip.get_model_config("no-such-model")
    for model, tag in (("ViT-B-32", "openai"), ("RN50", "yfcc15m"), ("ViT-B-32", "laion2b_s34b_b79k"),
                       ("ViT-B-32", "no-such-tag")):
        assert anyclip.get_pretrained_cfg(model, tag) == open_clip.get_pretrained_cfg(model, tag)
        assert anyclip.get_pretrained_url(model, tag) == open_clip.get_pretrained_url(model, tag)
        assert anyclip.is_pretrained_cfg(model, tag) == open_clip.is_pretrained_cfg(model, tag)
    assert sorted(anyclip.list_openai_models()) == sorted(open_clip.list_openai_models())  # registry order differs
    for precision in ("fp32", "bf16", "fp16", "pure_bf16", "pure_fp16", "amp", "amp_bf16"):
        for ours, theirs in ((anyclip.get_cast_dtype, open_clip.get_cast_dtype),
                             (anyclip.get_input_dtype, open_clip.get_input_dtype)):
            expected = theirs(precision)
            assert ours(precision) == (None if expected is None else str(expected).replace("torch.", ""))


def test_add_model_config(tmp_path):
    config = anyclip.get_model_config("anyclip-shapes")
    (tmp_path / "my-shapes.json").write_text(__import__("json").dumps(config))
    anyclip.add_model_config(tmp_path)
    assert "my-shapes" in anyclip.list_models() and anyclip.get_model_config("my-shapes") == config


def test_create_model_open_clip_arguments():
    model = anyclip.create_model("anyclip-shapes", "v1", device="cpu", precision="fp32", output_dict=True, jit=True)
    assert model.output_dict is True
    assert anyclip.get_model_preprocess_cfg(model)["size"] == model.image_size[0]
    assert anyclip.get_model_tokenize_cfg(model)["context_length"] == model.context_length
    assert anyclip.trace_model(model, batch_size=2) is model
    with pytest.raises(ValueError, match="weights_only=False"):
        anyclip.create_model("anyclip-shapes", weights_only=False)
    with pytest.raises(ValueError, match="device="):
        anyclip.create_model("anyclip-shapes", device="quantum")
    with pytest.raises(ValueError, match="precision"):
        anyclip.create_model("anyclip-shapes", precision="fp7")
    with pytest.raises(NotImplementedError, match="precision="):
        anyclip.convert_weights_to_fp16(model)
    assert isinstance(anyclip.create_model("anyclip-shapes", force_custom_text=True), anyclip.CustomTextCLIP)
    _, train, val = anyclip.create_model_and_transforms(
        "anyclip-shapes", aug_cfg=anyclip.AugmentationCfg(scale=(0.5, 1.0)), image_mean=(0.5, 0.5, 0.5))
    assert train.augment.scale == (0.5, 1.0) and val.cfg.mean == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="re_prob"):
        anyclip.create_model_and_transforms("anyclip-shapes", aug_cfg={"re_prob": 0.25})


def test_load_checkpoint_non_strict(tmp_path):
    from safetensors.numpy import save_file
    model = anyclip.create_model("anyclip-shapes", "v1")
    state = dict(anyclip.export_state_dict(model))
    state.pop("logit_scale")
    state["extra.weight"] = np.zeros(3, np.float32)
    save_file(state, str(tmp_path / "ckpt.safetensors"))
    missing, unexpected = anyclip.load_checkpoint(model, str(tmp_path / "ckpt.safetensors"), strict=False)
    assert (missing, unexpected) == (["logit_scale"], ["extra.weight"])
    with pytest.raises(anyclip.WeightMismatchError):
        anyclip.load_checkpoint(model, str(tmp_path / "ckpt.safetensors"))
    with pytest.raises(ValueError, match="weights_only=False"):
        anyclip.load_checkpoint(model, str(tmp_path / "ckpt.safetensors"), weights_only=False)


def test_loss_objects_equal_open_clip():
    rng = np.random.default_rng(0)
    image, text = (rng.standard_normal((6, 8)).astype("float32") for _ in range(2))
    image, text = image / np.linalg.norm(image, axis=1, keepdims=True), text / np.linalg.norm(text, axis=1, keepdims=True)
    expected = open_clip.ClipLoss()(torch.from_numpy(image), torch.from_numpy(text), torch.tensor(10.0)).item()
    ours = float(anyclip.ClipLoss()(image, text, np.float32(10.0)))
    assert ours == pytest.approx(expected, rel=1e-5)
    t_image, t_text = image[:, ::-1].copy(), text[:, ::-1].copy()
    expected = open_clip.DistillClipLoss()(*(torch.from_numpy(x) for x in (image, text)), torch.tensor(10.0),
                                           *(torch.from_numpy(x) for x in (t_image, t_text)), torch.tensor(5.0))
    ours = anyclip.DistillClipLoss()(image, text, np.float32(10.0), t_image, t_text, np.float32(5.0))
    np.testing.assert_allclose([float(x) for x in ours], [x.item() for x in expected], rtol=1e-5)
    args = argparse.Namespace(distill=False, model="coca_ViT-B-32", siglip=False, local_loss=False,
                              gather_with_grad=False, rank=0, world_size=1, horovod=False,
                              coca_caption_loss_weight=2.0, coca_contrastive_loss_weight=1.0)
    assert type(anyclip.create_loss(args)).__name__ == type(open_clip.create_loss(args)).__name__ == "CoCaLoss"
    with pytest.raises(ValueError, match="use_horovod"):
        anyclip.ClipLoss(use_horovod=True)
