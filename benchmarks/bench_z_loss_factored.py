"""Time per SGD step of a D x d output layer: the factored Z-loss update against the full layer (issue #12).

Three ways to make one SGD step on a batch of B hidden vectors of size d with a D-class output layer:
(a) the full layer with softmax cross-entropy (logits, F.cross_entropy, autograd's gradient, in-place update);
(b) the full layer with the Z-loss (the same with `z_loss`);
(c) `FactoredSphericalLayer.step` with the Z-loss: the exact update of Vincent et al. (2015), O(B d^2 + d^3).
Each number is the fastest block of torch.utils.benchmark (blocks of repeated steps; the least disturbed one on a
shared machine; `--median` for the median block). The goal of the issue: (c) at least 10x faster than (a) at D = 1e5 with
d = B = 128 on one thread, and flat in D. Run:

    python benchmarks/bench_z_loss_factored.py                       # D = 1e3 .. 1e5, one thread, CPU
    python benchmarks/bench_z_loss_factored.py --D 1000 100000 1000000 --device cuda
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F
from common import blocked_seconds

from lossbook.classification.z_loss import z_loss
from lossbook.classification.z_loss_factored import FactoredSphericalLayer


def full_step(W: torch.Tensor, h: torch.Tensor, y: torch.Tensor, loss_fn, lr: float = 0.1):
    "One SGD step of the full (D, d) layer W under `loss_fn(logits, target)`."
    def step():
        (G,) = torch.autograd.grad(loss_fn(h @ W.T, y), W)
        with torch.no_grad():
            W.sub_(lr * G)
    return step


def time_it(fn, device: torch.device, min_time: float, fastest: bool = True) -> float:
    return blocked_seconds(fn, min_time, device, fastest)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--D", type=int, nargs="+", default=[1000, 3162, 10000, 31623, 100000])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-time", type=float, default=0.5)
    p.add_argument("--median", action="store_true", help="report the median block instead of the fastest")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    print(f"one SGD step, B={a.batch}, d={a.dim}, {dev}, {a.threads} thread(s); ms per step "
          f"({'median' if a.median else 'fastest'} block)")
    print(f"{'D':>9} {'(a) full CE':>12} {'(b) full Z':>11} {'(c) factored Z':>15} {'(a)/(c)':>8}")
    for D in a.D:
        W = (0.01 * torch.randn(D, a.dim, generator=g)).to(dev).requires_grad_()
        h = torch.randn(a.batch, a.dim, generator=g).to(dev)
        y = torch.randint(0, D, (a.batch,), generator=g).to(dev)
        layer = FactoredSphericalLayer(W.detach())
        ta = time_it(full_step(W, h, y, F.cross_entropy), dev, a.min_time, not a.median)
        tb = time_it(full_step(W, h, y, z_loss), dev, a.min_time, not a.median)
        tc = time_it(partial(layer.step, h, y, 0.1), dev, a.min_time, not a.median)
        print(f"{D:>9} {1e3 * ta:>12.3f} {1e3 * tb:>11.3f} {1e3 * tc:>15.3f} {ta / tc:>8.1f}", flush=True)
        del W, layer
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
