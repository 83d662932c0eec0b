"""Shared timing helpers for the bench scripts (run them as ``python bench/NAME.py``)."""

import os
import statistics
import time


def timed(fn, repeats, warmup=1):
    """Median wall time of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns, repeats, warmup=1):
    """Median wall time of each of ``fns``, timed in alternation (one call of each per round).

    A machine shared with other jobs slows both sides of a round alike, so the ratio of the medians is
    steadier than that of back-to-back blocks. Example: ``ours, theirs = interleaved([f, g], 5)``.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, slot in zip(fns, times):
            start = time.perf_counter()
            fn()
            slot.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def load_average():
    """The 1-minute load average (``uptime``'s first figure), to print next to a run's figures."""
    return os.getloadavg()[0]


def per_backend(script, backends, argv):
    """Run ``script argv --backend B`` once per Keras backend, each in its own process (Keras fixes its
    backend once per process). Example: ``per_backend(__file__, ["jax", "torch"], ["--model", "RN50"])``."""
    import subprocess
    import sys

    for backend in backends:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        subprocess.run([sys.executable, script, "--backend", backend, *argv], env=env, check=True)
