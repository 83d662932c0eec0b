"""Parity with open_clip 3.3.0 for every shipped config, on JAX (in process), torch and TF (workers).

Each case is a random open_clip model saved in open_clip's folder layout (see ``reference.py``), loaded
by anyclip through ``local-dir:``; normalised image and text embeddings must match to 1e-5.

Full-width checkpoints of every shipped config would take ~50 GB, so cases are built in order as the tests
ask for them, handed to the backend workers, and each checkpoint is deleted as soon as every backend that
tests it has read it: at most ``AHEAD`` checkpoints are on disk at once. A case whose JAX test has not run
when room is needed (another test order, xdist) loses its checkpoint and is rebuilt (seeded, identical)
when that test comes.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import anyclip
from reference import build_reference_case, release_memory

TOL = 1e-5
AHEAD = 2  # checkpoints alive at once (the JAX test's case plus the one a worker is still reading)
# ANYCLIP_PARITY_MODELS=ViT-B-32,ViT-S-16 narrows a local run; CI runs every shipped config.
_ONLY = [n for n in os.environ.get("ANYCLIP_PARITY_MODELS", "").split(",") if n]
NAMES = [n for n in anyclip.list_models() if not _ONLY or n in _ONLY]
TF_NAMES = [n for n in ["ViT-B-32", "ViT-M-16-alt", "ViT-L-14-CLIPA"] if n in NAMES]
WORKER = Path(__file__).with_name("backend_worker.py")
CHECKPOINT = "open_clip_model.safetensors"


class ParityPipeline:
    """Builds reference cases lazily and in order, feeds workers, and evicts consumed checkpoints."""

    def __init__(self, root: Path, wanted: dict):
        self.root = root
        self.wanted = wanted  # backend -> names whose test for that backend was selected
        self.order = [n for n in NAMES if any(n in names for names in wanted.values())]
        self.built = {}
        self.jax_pending = set(wanted["jax"])
        self.procs, self.logs = {}, []
        for backend in ("torch", "tensorflow"):
            if wanted[backend]:
                env = {**os.environ, "KERAS_BACKEND": backend}
                self.logs.append(open(root / f"worker_{backend}.log", "w"))
                self.procs[backend] = subprocess.Popen(
                    [sys.executable, str(WORKER), "-"], env=env, stdin=subprocess.PIPE, stdout=self.logs[-1],
                    stderr=subprocess.STDOUT, text=True)

    def folder(self, name: str) -> Path:
        """Build every case up to ``name`` (in order, bounded by ``AHEAD``) and return its folder."""
        while name not in self.built:
            nxt = self.order[len(self.built)]
            self._make_room()
            folder = self.root / nxt
            build_reference_case(nxt, folder, seed=NAMES.index(nxt))
            release_memory()
            self.built[nxt] = folder
            for backend, proc in self.procs.items():
                if nxt in self.wanted[backend]:
                    self._send(proc, f"{folder}\n")
            if len(self.built) == len(self.order):
                for proc in self.procs.values():
                    self._send(proc, None)
        folder = self.built[name]
        if name in self.jax_pending and not (folder / CHECKPOINT).exists():  # evicted before its JAX test ran
            self._make_room()
            build_reference_case(name, folder, seed=NAMES.index(name))
        return folder

    @staticmethod
    def _send(proc, line):
        """A folder to a worker (``None`` closes its input); a worker that died is reported by the tests."""
        try:
            if proc.poll() is None:
                proc.stdin.write(line) if line is not None else proc.stdin.close()
                if line is not None:
                    proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def jax_done(self, name: str):
        self.jax_pending.discard(name)
        self._evict()

    def _consumed(self, name: str, ignore_jax: bool = False) -> bool:
        if name in self.jax_pending and not ignore_jax:
            return False
        folder = self.built[name]
        for backend, proc in self.procs.items():
            if name in self.wanted[backend] and proc.poll() is None and not any(
                    (folder / f"{kind}_{backend}.{ext}").exists() for kind, ext in (("out", "npz"), ("error", "txt"))):
                return False
        return True

    def _evict(self, ignore_jax: bool = False) -> int:
        alive = 0
        for name, folder in self.built.items():
            ckpt = folder / CHECKPOINT
            if ckpt.exists():
                if self._consumed(name, ignore_jax):
                    ckpt.unlink()
                else:
                    alive += 1
        return alive

    def _make_room(self, timeout: float = 1800):
        deadline = time.monotonic() + timeout
        while self._evict() >= AHEAD and self._evict(ignore_jax=True) >= AHEAD:
            if time.monotonic() > deadline:
                pytest.fail(f"backend workers made no progress for {timeout:.0f}s; see {self.root}/worker_*.log")
            time.sleep(0.5)

    def close(self):
        for proc in self.procs.values():
            proc.kill()
            proc.wait(timeout=60)
        for log in self.logs:
            log.close()


@pytest.fixture(scope="session")
def parity(request, tmp_path_factory):
    wanted = {"jax": set(), "torch": set(), "tensorflow": set()}
    for item in request.session.items:
        backend = item.originalname.removeprefix("test_parity_")
        if item.module.__name__ == __name__ and backend in wanted:
            wanted[backend].add(item.callspec.params["name"])
    pipeline = ParityPipeline(tmp_path_factory.mktemp("parity"), wanted)
    yield pipeline
    pipeline.close()


def _compare(folder: Path, out: dict):
    case = np.load(folder / "case.npz")
    image_err = np.abs(out["image"] - case["image_ref"]).max()
    text_err = np.abs(out["text"] - case["text_ref"]).max()
    assert image_err <= TOL, f"image embeddings differ from open_clip by {image_err:.2e}"
    assert text_err <= TOL, f"text embeddings differ from open_clip by {text_err:.2e}"
    np.testing.assert_allclose(out["logit_scale"], case["logit_scale"], rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_parity_jax(parity, name):
    import keras
    folder = parity.folder(name)
    try:
        model = anyclip.create_model(f"local-dir:{folder}")
        case = np.load(folder / "case.npz")
        out = {"image": np.asarray(model.encode_image(case["images"], normalize=True)),
               "text": np.asarray(model.encode_text(case["tokens"], normalize=True)),
               "logit_scale": float(np.exp(keras.ops.convert_to_numpy(model.logit_scale)))}
        del model
    finally:
        keras.backend.clear_session()
        release_memory()
        parity.jax_done(name)
    _compare(folder, out)


def _wait_for_worker(parity, backend, name, timeout=1800):
    folder = parity.folder(name)
    proc = parity.procs[backend]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / f"out_{backend}.npz").exists():
            return folder, dict(np.load(folder / f"out_{backend}.npz"))
        if (folder / f"error_{backend}.txt").exists():
            pytest.fail((folder / f"error_{backend}.txt").read_text())
        if proc.poll() is not None and not (folder / f"out_{backend}.npz").exists():
            pytest.fail(f"{backend} worker exited ({proc.returncode}): "
                        + (parity.root / f"worker_{backend}.log").read_text()[-3000:])
        time.sleep(0.5)
    pytest.fail(f"{backend} worker timed out on {name}")


@pytest.mark.parametrize("name", NAMES)
def test_parity_torch(parity, name):
    _compare(*_wait_for_worker(parity, "torch", name))


@pytest.mark.parametrize("name", TF_NAMES)
def test_parity_tensorflow(parity, name):
    _compare(*_wait_for_worker(parity, "tensorflow", name))
