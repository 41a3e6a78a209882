"""Forward + backward time of Histoformer's Pearson loss against torchmetrics' pearson_corrcoef on the same images.

Both compute, per image (all C×H×W values flattened), the Pearson correlation rho of a restored batch with a
ground-truth batch, and the loss mean((1 - rho) / 2); the gradient flows into the restored batch, as in training.
torchmetrics' `pearson_corrcoef(preds, target)` correlates the columns of (N, d) inputs, so the flattened images go in
as columns (`x.flatten(1).T`): one call for the whole batch, its fastest use. Ours validates its inputs (a NaN/Inf
scan, shapes) and torchmetrics' functional form does not check finiteness. The ratio column is ours / torchmetrics
(below 1: ours is faster). Run:

    python benchmarks/bench_histoformer_pearson.py                 # one CPU thread, float32, CUDA too if present
    python benchmarks/bench_histoformer_pearson.py --threads 2 --dtype float64 --min-time 0.5
"""

from __future__ import annotations

import argparse

import torch
from common import blocked_seconds, fwd_bwd
from torchmetrics.functional import pearson_corrcoef

from lossbook.vision.histoformer_pearson import pearson_loss

SHAPES = [(32, 1, 32, 32), (16, 3, 64, 64), (8, 3, 128, 128), (4, 3, 256, 256), (1, 3, 512, 512), (64, 3, 16, 16)]


def torchmetrics_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    "The same loss through torchmetrics: rho of each flattened image (a column), then mean((1 - rho) / 2)."
    rho = pearson_corrcoef(x.flatten(1).T, y.flatten(1).T)
    return ((1 - rho) / 2).mean()


def time_it(step, min_time: float) -> float:
    return blocked_seconds(step, min_time)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CPU, plus CUDA if present")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds of repeated runs per measurement")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    rows = []
    for dev in devices:
        for shape in SHAPES:
            y = torch.rand(shape, generator=g, dtype=torch.float64)
            x = (y + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dev, dtype).requires_grad_(True)
            y = y.to(dev, dtype)
            # the same value first: the comparison is of two computations of one number
            torch.testing.assert_close(pearson_loss(x, y), torchmetrics_loss(x, y), rtol=1e-4, atol=1e-5)
            t_tm = time_it(fwd_bwd(torchmetrics_loss, x, y), args.min_time)
            t_ours = time_it(fwd_bwd(pearson_loss, x, y), args.min_time)
            rows.append((dev, shape, t_ours, t_tm))
    print(f"forward+backward of mean((1 - rho) / 2), {args.dtype}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU thread(s)")
    print(f"{'device':6s} {'B×C×H×W':>16s} {'ours (ms)':>10s} {'torchmetrics (ms)':>18s} {'ours / tm':>10s}")
    for dev, shape, t_ours, t_tm in rows:
        print(f"{dev:6s} {'×'.join(map(str, shape)):>16s} {1e3 * t_ours:10.3f} {1e3 * t_tm:18.3f} {t_ours / t_tm:10.2f}")
    worst = max(t_o / t_t for *_, t_o, t_t in rows)
    print(f"largest ratio ours / torchmetrics: {worst:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
