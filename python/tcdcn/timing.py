"""Timing for the benchmarks (tools/bench_*.py): medians of repeated runs."""
from __future__ import annotations

import statistics
import time


def timed(fn, repeats: int) -> float:
    """Median seconds of fn() over `repeats` runs (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)
