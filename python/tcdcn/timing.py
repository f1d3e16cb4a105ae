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


def paired_rounds(first, second, rounds: int) -> list[tuple[float, float]]:
    """(seconds of first(), seconds of second()) per round, one round after the other so
    that both see the same state of a shared machine; one warm-up round is dropped. Take
    medians, and of ratios the median of the rounds' ratios."""
    out = []
    for _ in range(1 + rounds):
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        out.append((t1 - t0, time.perf_counter() - t1))
    return out[1:]
