"""ONNX and torch.export artifacts of one tiny random model per tower family (``towers.TINY``): each exported on
torch (where the export itself checks the artifact in its runtime against the Keras model), then run here in
onnxruntime and in ``torch.export.load`` against the same weights in a Keras model on JAX. The family × format
table in README lists these; all run with ``-m slow``."""

import copy

import keras
import numpy as np
import pytest
from backend_runner import start_in_backend
from towers import tiny_config

import anyclip
from anyclip.models import CLIPConfig
from anyclip.models.preprocess import PreprocessConfig

# README's family -> the towers.TINY entry that stands for it
FAMILIES = {"ViT": "vit", "ModifiedResNet": "modified_resnet", "ConvNeXt": "timm_convnext",
            "MobileCLIP (FastViT, re-parameterised)": "timm_fastvit", "SigLIP2 (timm ViT, map pool)": "timm_vit",
            "EVA / PE (timm)": "timm_eva", "Swin (timm)": "timm_swin", "HF text tower (RoBERTa)": "roberta"}
# not exported: "HF text tower (mT5)" -- onnxruntime refuses the graph (see README's family x format table)


def _model(cfg):
    model = anyclip.CLIP(CLIPConfig.from_dict(copy.deepcopy(cfg)), seed=3)
    if cfg["vision_cfg"].get("timm_model_name", "").startswith("fastvit"):
        from anyclip.weights.reparameterize import reparameterize
        model = reparameterize(model)
    model.preprocess_cfg = PreprocessConfig(size=model.image_size)
    return model


def export_worker(arrays, params):
    """(torch subprocess) export the family's tiny model to ONNX and torch.export; return its open_clip state dict."""
    from anyclip.export import export
    from anyclip.weights import export_state_dict
    model = _model(params["cfg"])
    export(model, None, params["out"])
    export(model, None, params["out_torch"], format="torch")
    return export_state_dict(model)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES.values()))
def test_family_exports_to_onnx_and_torch_and_runs_in_their_runtimes(family, tmp_path):
    import torch

    from anyclip.export import OnnxCLIP
    from anyclip.weights import load_state_dict
    cfg = tiny_config(family, tmp_path)
    state = start_in_backend("torch", "test_export_families:export_worker", {},
                             {"cfg": cfg, "out": str(tmp_path / "onnx"),
                              "out_torch": str(tmp_path / "torch")}).result(timeout=900)
    model = _model(cfg)
    load_state_dict(model, dict(state))
    onnx_model = OnnxCLIP(tmp_path / "onnx")
    assert onnx_model.manifest["verification"]["image"]["max_abs_diff"] <= 1e-4
    h, w = model.image_size
    rng = np.random.default_rng(1)
    images = rng.standard_normal((3, h, w, 3)).astype(np.float32)
    vocab = int(getattr(model.text, "vocab_size", None) or model.config.text_cfg.vocab_size)
    tokens = rng.integers(1, vocab, (3, model.context_length))
    image = keras.ops.convert_to_numpy(model.encode_image(images, normalize=True))
    text = keras.ops.convert_to_numpy(model.encode_text(tokens.astype(np.int32), normalize=True))
    assert np.abs(onnx_model.encode_image(images) - image).max() <= 1e-4
    assert np.abs(onnx_model.encode_text(tokens) - text).max() <= 1e-4
    programs = {t: torch.export.load(str(tmp_path / "torch" / f"{t}_encoder.pt2")).module() for t in ("image", "text")}
    with torch.no_grad():
        torch_image = programs["image"](torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
        torch_text = programs["text"](torch.from_numpy(tokens)).numpy()
    assert np.abs(torch_image - image).max() <= 1e-4 and np.abs(torch_text - text).max() <= 1e-4