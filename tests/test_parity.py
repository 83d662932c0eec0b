"""Parity with open_clip 3.3.0 for every shipped config, on JAX (in process), torch and TF (workers).

Each case is a random open_clip model saved in open_clip's folder layout (see ``reference.py``), loaded
by anyclip through ``local-dir:``; normalised image and text embeddings must match to 1e-5.

Full-width checkpoints of every shipped config would take ~50 GB, so cases are built in order as the tests
ask for them, handed to the backend workers, and each checkpoint is deleted as soon as every backend that
tests it has read it: at most ``AHEAD`` checkpoints are on disk at once. A case whose JAX test has not run
when room is needed (another test order, xdist) loses its checkpoint and is rebuilt (seeded, identical)
when that test comes.

Tiers: every case is marked ``slow`` (``python -m pytest -m slow`` runs the whole sweep). The cheapest configs
that together cover every registered tower family and CoCa (``parity_tiers.default_configs``, derived from the
registry) are also marked ``default_tier`` and run in a plain ``python -m pytest`` on JAX and torch;
``test_every_family_has_a_default_tier_parity_case`` fails when a family has none.
``ANYCLIP_PARITY_MODELS=ViT-B-32,ViT-S-16`` narrows a run to those configs, all in the default tier.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from parity_tiers import config_kinds, default_configs, required_kinds
from reference import build_reference_case, encode_case, peak_tree_rss, release_memory

import anyclip

TOL = 1e-5
AHEAD = 2  # checkpoints alive at once (the JAX test's case plus the one a worker is still reading)
# ANYCLIP_PARITY_MODELS=ViT-B-32,ViT-S-16 narrows a local run (to the default tier); -m slow runs every config.
_ONLY = [n for n in os.environ.get("ANYCLIP_PARITY_MODELS", "").split(",") if n]
NAMES = [n for n in anyclip.list_models() if not _ONLY or n in _ONLY]
DEFAULT = NAMES if _ONLY else default_configs(NAMES)
TF_NAMES = [n for n in ["ViT-B-32", "ViT-M-16-alt", "ViT-L-14-CLIPA"] if n in NAMES]
TF_DEFAULT = TF_NAMES if _ONLY else [n for n in ["ViT-B-32"] if n in NAMES]  # the others run in the sweep


def _params(names, default):
    """Each name as a ``slow`` case, also ``default_tier`` when in ``default``."""
    return [pytest.param(n, marks=[pytest.mark.slow] + ([pytest.mark.default_tier] if n in default else []))
            for n in names]


PARAMS = _params(NAMES, DEFAULT)
TF_PARAMS = _params(TF_NAMES, TF_DEFAULT)
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
        self.procs, self.logs = {}, []  # a worker starts with its first case and ends after its last

    def _worker(self, backend: str):
        """The ``backend`` worker, started on first use (an idle TensorFlow worker holds ~0.7 GiB)."""
        if backend not in self.procs:
            env = {**os.environ, "KERAS_BACKEND": backend}
            self.logs.append(open(self.root / f"worker_{backend}.log", "w"))
            self.procs[backend] = subprocess.Popen(
                [sys.executable, str(WORKER), "-"], env=env, stdin=subprocess.PIPE, stdout=self.logs[-1],
                stderr=subprocess.STDOUT, text=True)
        return self.procs[backend]

    def folder(self, name: str) -> Path:
        """Build every case up to ``name`` (in order, bounded by ``AHEAD``) and return its folder."""
        while name not in self.built:
            nxt = self.order[len(self.built)]
            self._make_room()
            folder = self.root / nxt
            build_reference_case(nxt, folder, seed=NAMES.index(nxt))
            release_memory()
            self.built[nxt] = folder
            for backend in ("torch", "tensorflow"):
                if nxt in self.wanted[backend]:
                    proc = self._worker(backend)
                    self._send(proc, f"{folder}\n")
                    if self.wanted[backend] <= set(self.built):  # its last case: it exits when done
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


@pytest.mark.parametrize("name", PARAMS)
def test_parity_jax(parity, name, record_property):
    with peak_tree_rss() as peak:  # this process and the workers: the case's cost in memory (parity_tiers)
        folder = parity.folder(name)
        try:
            out = encode_case(folder)
        finally:
            release_memory()
            parity.jax_done(name)
    record_property("peak_rss_gib", round(peak["bytes"] / 2**30, 2))
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


@pytest.mark.parametrize("name", PARAMS)
def test_parity_torch(parity, name):
    _compare(*_wait_for_worker(parity, "torch", name))


@pytest.mark.parametrize("name", TF_PARAMS)
def test_parity_tensorflow(parity, name):
    _compare(*_wait_for_worker(parity, "tensorflow", name))


def _default_markexpr(config) -> str:
    """The ``-m`` expression of the ini ``addopts`` (what a plain ``python -m pytest`` selects by)."""
    args = config.getini("addopts")
    flags = [i for i, arg in enumerate(args) if arg == "-m"]
    return args[flags[-1] + 1] if flags else ""


@pytest.mark.skipif(bool(_ONLY), reason="ANYCLIP_PARITY_MODELS narrows the configs")
def test_every_family_has_a_default_tier_parity_case(pytestconfig):
    """Every registered tower family, and CoCa, has a parity case on JAX and on torch that a plain run selects."""
    from _pytest.mark.expression import Expression
    selects = Expression.compile(_default_markexpr(pytestconfig) or "True")
    for test in (test_parity_jax, test_parity_torch):
        params = next(m for m in test.pytestmark if m.name == "parametrize").args[1]
        default = [p.values[0] for p in params
                   if selects.evaluate(lambda name, /, **kw: any(m.name == name for m in p.marks))]
        covered = set().union(*(config_kinds(n) for n in default))
        missing = sorted(set(required_kinds()) - covered)
        assert not missing, f"{test.__name__}: no parity case in the default run covers {missing}"
        assert len(default) < len(params), f"{test.__name__}: the default run selects the whole sweep"
