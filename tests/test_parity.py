"""Parity with open_clip 3.3.0 for every shipped config, on JAX (in process), torch and TF (workers).

Each case is a random open_clip model saved in open_clip's folder layout (see ``reference.py``), loaded
by anyclip through ``local-dir:``; normalised image and text embeddings must match to 1e-5.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import anyclip
from reference import build_reference_case

TOL = 1e-5
# ANYCLIP_PARITY_MODELS=ViT-B-32,ViT-S-16 narrows a local run; CI runs every shipped config.
_ONLY = [n for n in os.environ.get("ANYCLIP_PARITY_MODELS", "").split(",") if n]
NAMES = [n for n in anyclip.list_models() if not _ONLY or n in _ONLY]
TF_NAMES = [n for n in ["ViT-B-32", "ViT-M-16-alt", "ViT-L-14-CLIPA"] if n in NAMES]
WORKER = Path(__file__).with_name("backend_worker.py")


@pytest.fixture(scope="session")
def parity_cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    cases = {}
    for i, name in enumerate(NAMES):
        cases[name] = build_reference_case(name, root / name, seed=i)
    procs = {}
    for backend, names in (("torch", NAMES), ("tensorflow", TF_NAMES)):
        env = {**os.environ, "KERAS_BACKEND": backend}
        log = open(root / f"worker_{backend}.log", "w")
        procs[backend] = subprocess.Popen([sys.executable, str(WORKER)] + [cases[n]["folder"] for n in names],
                                          env=env, stdout=log, stderr=subprocess.STDOUT)
    yield cases, procs, root
    for proc in procs.values():
        proc.kill()


def _compare(folder: Path, out: dict):
    case = np.load(folder / "case.npz")
    image_err = np.abs(out["image"] - case["image_ref"]).max()
    text_err = np.abs(out["text"] - case["text_ref"]).max()
    assert image_err <= TOL, f"image embeddings differ from open_clip by {image_err:.2e}"
    assert text_err <= TOL, f"text embeddings differ from open_clip by {text_err:.2e}"
    np.testing.assert_allclose(out["logit_scale"], case["logit_scale"], rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_parity_jax(parity_cases, name):
    import keras
    cases, _, _ = parity_cases
    folder = Path(cases[name]["folder"])
    model = anyclip.create_model(f"local-dir:{folder}")
    case = np.load(folder / "case.npz")
    out = {"image": np.asarray(model.encode_image(case["images"], normalize=True)),
           "text": np.asarray(model.encode_text(case["tokens"], normalize=True)),
           "logit_scale": float(np.exp(keras.ops.convert_to_numpy(model.logit_scale)))}
    del model
    keras.backend.clear_session()
    _compare(folder, out)


def _wait_for_worker(parity_cases, backend, name, timeout=1800):
    cases, procs, root = parity_cases
    folder = Path(cases[name]["folder"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / f"out_{backend}.npz").exists():
            return folder, dict(np.load(folder / f"out_{backend}.npz"))
        if (folder / f"error_{backend}.txt").exists():
            pytest.fail((folder / f"error_{backend}.txt").read_text())
        if procs[backend].poll() is not None and not (folder / f"out_{backend}.npz").exists():
            pytest.fail(f"{backend} worker exited ({procs[backend].returncode}): "
                        + (root / f"worker_{backend}.log").read_text()[-3000:])
        time.sleep(0.5)
    pytest.fail(f"{backend} worker timed out on {name}")


@pytest.mark.parametrize("name", NAMES)
def test_parity_torch(parity_cases, name):
    _compare(*_wait_for_worker(parity_cases, "torch", name))


@pytest.mark.parametrize("name", TF_NAMES)
def test_parity_tensorflow(parity_cases, name):
    _compare(*_wait_for_worker(parity_cases, "tensorflow", name))
