"""Shared timing helper for the bench scripts (run them as ``python bench/NAME.py``)."""

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
