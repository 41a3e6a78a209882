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


def fwd_bwd(fn, x: torch.Tensor, *rest):
    "A step for the timers: one forward + backward of `fn(x, *rest)` into `x` (which requires grad), clearing its gradient."
    def step():
        fn(x, *rest).backward()
        x.grad = None
    return step


def blocked_seconds(fn, min_time: float, device: torch.device | None = None, fastest: bool = False) -> float:
    "Seconds per call of `fn` by torch.utils.benchmark: the median block, or the fastest (the least disturbed on a shared machine)."
    from torch.utils import benchmark
    sync = "torch.cuda.synchronize()" if device is not None and device.type == "cuda" else "pass"
    fn()  # warm-up
    m = benchmark.Timer(stmt=f"fn(); {sync}", globals={"fn": fn, "torch": torch},
                        num_threads=torch.get_num_threads()).blocked_autorange(min_run_time=min_time)
    return min(m.times) if fastest else m.median
