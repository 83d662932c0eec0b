"""Test session setup: JAX backend by default, no network, shared fixtures."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ["HF_HUB_OFFLINE"] = "1"  # no test may touch the network
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# One JAX compilation cache on disk for the session, inherited by every subprocess the tests start (CLI runs,
# backend workers, kill-and-resume runs): a program compiled once is loaded, not compiled again, by the next
# process or module that builds it (after jax.clear_caches, or through a new function object). XLA's executable
# is the same either way; the cache starts empty each session and is removed at its end. The size limit turns
# on JAX's file lock, so concurrent processes never read a half-written entry.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _jax_cache = tempfile.mkdtemp(prefix="anyclip-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _jax_cache
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))
    _session_pid = os.getpid()
    atexit.register(lambda: os.getpid() == _session_pid and shutil.rmtree(_jax_cache, ignore_errors=True))

import pytest  # noqa: E402

# XLA:CPU compile options of the default tier, for every process it runs (the pytest workers and the CLI runs,
# workers and jobs they start, so that outputs compared bit for bit across processes come from the same code). Its
# tiny models spend most of their time compiling (every eager op is a program of its own), and these options
# compile about 3x faster (a trivial fused op: 15 instead of 43 ms): XLA's older elemental loop emitters and
# LLVM IR left unoptimised. They change how XLA generates its loops (unvectorised: a large elementwise op runs
# about 5x slower), not what the programs compute. The slow tier keeps XLA's defaults (the full parity sweep
# users' weights rely on), and so do the distributed-training workers (tests/test_distributed.py sets their
# flags). An XLA_FLAGS already in the environment wins: `XLA_FLAGS= python -m pytest` keeps XLA's defaults.
FAST_COMPILE_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"


def pytest_configure(config):
    default_tier = "not slow" in (config.getoption("markexpr") or "")
    if default_tier and "XLA_FLAGS" not in os.environ:  # xdist workers inherit it; JAX reads it when it starts
        os.environ["XLA_FLAGS"] = FAST_COMPILE_XLA_FLAGS


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache used for this test only."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module", autouse=True)
def _release_memory_after_each_module():
    """Hand back what a test module leaves behind (Keras state, JAX's compiled functions, freed heap pages)
    before the next one starts: one pytest process runs them all and would otherwise keep accumulating."""
    yield
    import sys
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    from reference import release_memory
    release_memory()
