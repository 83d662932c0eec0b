"""fp32 means exact float32 products (also where GPUs would use TF32); tf32 is its own precision name.

On CPU the compiled HLO shows what a GPU would run: ``precision = [HIGHEST, HIGHEST]`` on every matmul and
convolution for fp32, ``DEFAULT`` for tf32, and the scope never leaks into the caller's JAX or torch settings.
"""

import re

import numpy as np
import pytest

import anyclip
from anyclip.matmul_precision import matmul_scope
from anyclip.runtime import compiled

MODEL = "anyclip-shapes"  # the bundled tiny ViT: a patch convolution, attention and MLP matmuls


@pytest.fixture(scope="module")
def models():
    return {p: anyclip.create_model(MODEL, load_weights=False, precision=p) for p in ("fp32", "tf32", "bf16")}


def _precisions(hlo: str) -> set[str]:
    """The precision named on each dot_general / convolution of a StableHLO module ("none" where unset)."""
    found = set()
    for line in hlo.splitlines():
        if "stablehlo.dot_general" in line or "stablehlo.convolution" in line:
            named = re.findall(r"precision\s*=?\s*\[([A-Z, ]+)\]|precision (DEFAULT|HIGH|HIGHEST)>", line)
            found |= {w.strip() for match in named for part in match for w in part.split(",") if w.strip()} or {"none"}
    return found


def _image_hlo(model):
    images = np.zeros((2, 64, 64, 3), np.float32)
    return compiled(model.visual, True, model.precision).lower(images).as_text()


def _text_hlo(model):
    tokens = np.ones((2, 32), np.int32)
    return compiled(model.text, True, model.precision).lower(tokens).as_text()


def test_fp32_runs_every_product_at_highest_precision(models):
    assert models["fp32"].precision == "fp32"
    for hlo in (_image_hlo(models["fp32"]), _text_hlo(models["fp32"])):
        assert "stablehlo.convolution" in hlo or "stablehlo.dot_general" in hlo
        assert _precisions(hlo) == {"HIGHEST"}


def test_tf32_is_its_own_precision_with_default_products(models):
    assert models["tf32"].precision == "tf32"
    assert models["tf32"].visual.compute_dtype == "float32"
    assert _precisions(_image_hlo(models["tf32"])) == {"DEFAULT"}
    assert _precisions(_text_hlo(models["tf32"])) == {"DEFAULT"}


def test_bf16_leaves_the_backend_default(models):
    assert "HIGHEST" not in _precisions(_image_hlo(models["bf16"]))


def test_encoding_does_not_leak_the_precision_to_the_caller(models):
    import jax
    before = jax.config.jax_default_matmul_precision
    images = np.random.default_rng(0).random((2, 64, 64, 3), np.float32)
    out = {p: np.asarray(models[p].encode_image(images, normalize=True)) for p in ("fp32", "tf32")}
    assert jax.config.jax_default_matmul_precision == before
    np.testing.assert_allclose(out["fp32"], out["tf32"], atol=1e-6)  # same weights; a CPU has no TF32


def test_fp32_inside_a_users_jit_is_highest_too(models):
    import jax
    model = models["fp32"]
    jaxpr = str(jax.make_jaxpr(lambda x: model.encode_image(x))(np.zeros((1, 64, 64, 3), np.float32)))
    assert "Precision.HIGHEST" in jaxpr and "precision=None" not in jaxpr


@pytest.mark.parametrize("precision, allowed", [("fp32", False), ("tf32", True)])
def test_torch_tf32_switches_are_set_inside_and_restored(precision, allowed):
    import torch
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32, cudnn.allow_tf32 = not allowed, not allowed
    try:
        with matmul_scope(precision, "torch"):
            assert (matmul.allow_tf32, cudnn.allow_tf32) == (allowed, allowed)
        assert (matmul.allow_tf32, cudnn.allow_tf32) == (not allowed, not allowed)
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def test_unknown_and_low_precisions_change_nothing():
    import jax
    with matmul_scope("bf16", "jax"):
        assert jax.config.jax_default_matmul_precision is None
    with matmul_scope("fp32", "numpy"):
        pass


def test_cli_offers_tf32():
    from anyclip.model_flags import PRECISIONS
    assert "tf32" in PRECISIONS
