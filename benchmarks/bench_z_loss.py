"""Forward + backward time of the Z-loss against F.cross_entropy on the same logits.

There is no library implementation of de Brébisson & Vincent's Z-loss to compare with, so the reference point is
PyTorch's fused log-softmax + NLL. Both are timed on the same (B, D) logits with torch.utils.benchmark (median of
repeated blocks). z_loss validates its inputs (a NaN/Inf scan of the logits, the label range) and F.cross_entropy
does not; the last column shows how much of z_loss's time those checks take. Run:

    python benchmarks/bench_z_loss.py                  # B=256, D in {10, 1000, 100000}, CPU (and CUDA if present)
    python benchmarks/bench_z_loss.py --device cpu --threads 2 --min-time 0.5
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import blocked_seconds, fwd_bwd

from lossbook.classification.z_loss import z_loss
from lossbook.core import check_labels, check_tensor


def time_it(step, min_time: float) -> float:
    return blocked_seconds(step, min_time)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--classes", type=int, nargs="+", default=[10, 1000, 100000])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CPU, plus CUDA if present")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds of repeated runs per measurement")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    rows = []
    for dev in devices:
        for D in args.classes:
            logits = torch.randn(args.batch, D, generator=g, dtype=dtype).to(dev).requires_grad_(True)
            target = torch.randint(0, D, (args.batch,), generator=g).to(dev)
            t_ce = time_it(fwd_bwd(F.cross_entropy, logits, target), args.min_time)
            t_z = time_it(fwd_bwd(z_loss, logits, target), args.min_time)
            x = logits.detach()
            # the part of z_loss's time spent validating its inputs (lossbook.core's NaN/Inf scan and label range)
            def checks(x=x, target=target, D=D):
                check_tensor(x, "logits", ndim=2, floating=True)
                check_labels(target, D)
            t_chk = time_it(checks, args.min_time)
            rows.append((dev, D, t_ce, t_z, t_chk))
    threads = torch.get_num_threads()
    print(f"forward+backward, B={args.batch}, {args.dtype}, torch {torch.__version__}, {threads} CPU thread(s)")
    print(f"{'device':6s} {'D':>8s} {'cross_entropy (ms)':>19s} {'z_loss (ms)':>12s} {'z / ce':>7s} "
          f"{'of which input checks (ms)':>27s}")
    for dev, D, t_ce, t_z, t_chk in rows:
        print(f"{dev:6s} {D:8d} {1e3 * t_ce:19.4f} {1e3 * t_z:12.4f} {t_z / t_ce:7.2f} {1e3 * t_chk:27.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
