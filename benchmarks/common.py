"""Timing shared by the benchmark scripts (run them as `python benchmarks/bench_<slug>.py`)."""
from __future__ import annotations

import statistics
import time

import torch


def timeit(fn, repeats: int, device: torch.device, min_time: float = 0.3) -> float:
    "Median seconds per call over `repeats` rounds (each round loops until `min_time` has passed), after a warm-up."
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        fn()
    sync()
    rounds = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            sync()
            if time.perf_counter() - t0 >= min_time:
                break
        rounds.append((time.perf_counter() - t0) / n)
    return statistics.median(rounds)
