"""Forward + backward time of `barlow_twins_loss` against its matrix-product floor, on CPU.

The floor is what any implementation of the official code's loss must do at least: the D x D product
C = z1n.T @ z2n of the standardised views, forward and backward (given an upstream gradient), i.e. three
N x D x D products. We also time the official code's formulation (nn.BatchNorm1d(affine=False), C / N,
off_diagonal(c).pow(2).sum()) for comparison. For D > 2N the library uses the N x N Gram form (Eq. 6 of the
notebook) and can beat this floor.

    OMP_NUM_THREADS=1 python benchmarks/bench_barlow_twins.py [--threads 1] [--n 256] [--dims 128 512 2048]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from lossbook.ssl.barlow_twins import barlow_twins_loss, off_diagonal


def official_loss(z1, z2, bn, lambd=5e-3):
    "The official main.py forward for one process."
    c = bn(z1).T @ bn(z2) / z1.shape[0]
    return torch.diagonal(c).add(-1).pow(2).sum() + lambd * off_diagonal(c).pow(2).sum()


def interleaved(fns: dict, min_time: float) -> tuple[dict, dict]:
    """Run the callables in turn until each has run `min_time` seconds; the fastest and the median seconds per call.

    On a shared machine the median moves with the load; the fastest call is the least disturbed estimate."""
    times = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f(), f()
    while min(sum(t) for t in times.values()) < min_time or min(len(t) for t in times.values()) < 5:
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: min(t) for k, t in times.items()}, {k: statistics.median(t) for k, t in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=256, help="batch size N")
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 512, 2048], help="embedding dimensions D")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds of calls per variant and D")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    N = args.n
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), N={N}, float32, CPU; ms per forward+backward, "
          "fastest call (median in brackets)")
    print(f"{'D':>6} {'floor':>16} {'lossbook':>16} {'official':>16} {'lossbook/floor':>16} {'official/floor':>16}")
    rows = []
    for D in args.dims:
        g = torch.Generator().manual_seed(D)
        z1, z2 = (torch.randn(N, D, generator=g).requires_grad_() for _ in range(2))
        x1, x2 = (torch.randn(N, D, generator=g).requires_grad_() for _ in range(2))
        G = torch.randn(D, D, generator=g)
        bn = nn.BatchNorm1d(D, affine=False)

        def floor():
            (x1.T @ x2).backward(G)

        def ours():
            barlow_twins_loss(z1, z2).backward()

        def official():
            official_loss(z1, z2, bn).backward()

        best, med = interleaved({"floor": floor, "ours": ours, "official": official}, args.min_time)
        cell = lambda k: f"{1e3 * best[k]:.3f} ({1e3 * med[k]:.3f})"
        ratio = lambda k: f"{best[k] / best['floor']:.2f} ({med[k] / med['floor']:.2f})"
        rows.append({"D": D, "best": best, "median": med})
        print(f"{D:>6} {cell('floor'):>16} {cell('ours'):>16} {cell('official'):>16} {ratio('ours'):>16} {ratio('official'):>16}")
    return rows


if __name__ == "__main__":
    main()
