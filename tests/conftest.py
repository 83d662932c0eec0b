"""Test session setup: JAX backend by default, no network, shared fixtures."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ["HF_HUB_OFFLINE"] = "1"  # no test may touch the network
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402


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
