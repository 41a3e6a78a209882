"""Benchmark of lossbook.contrastive against pytorch-metric-learning 2.9.0 (the shared contrastive core).

Forward + backward time of `nt_xent_loss`, `info_nce` and `supcon_loss` against pytorch-metric-learning's
`NTXentLoss` (on the stacked views, and with `ref_emb` for the one-directional InfoNCE; pass a copy of the labels as
`ref_labels`: the same tensor object makes pytorch-metric-learning drop the diagonal, i.e. every positive) and `SupConLoss`, in the same
process, float32, N = 512 anchors (per view), D = 128. Prints the ratio lossbook / library (goal <= 1.0).

    python benchmarks/bench_contrastive.py [--device cpu|cuda] [--threads N] [--repeats 5] [--n 512] [--d 128]
"""

import argparse
from importlib.metadata import version

import torch
from common import timeit
from pytorch_metric_learning import losses as pml

from lossbook.contrastive import info_nce, nt_xent_loss, supcon_loss


def once(fn, dev) -> float:
    "Seconds of one call (after none: the library's first call includes no compilation on CPU)."
    import time
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--d", type=int, default=128)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(f"device={dev} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"pytorch-metric-learning={version('pytorch-metric-learning')} N={args.n} D={args.d} float32, forward+backward")
    g = torch.Generator().manual_seed(0)
    n, d = args.n, args.d
    z1 = torch.randn(n, d, generator=g).to(dev).requires_grad_()
    z2 = torch.randn(n, d, generator=g).to(dev).requires_grad_()
    y = (torch.arange(n) % 32).to(dev)  # SupCon: 32 classes, 16 samples each
    pair_labels = torch.arange(n, device=dev)
    nt_ref, sup_ref = pml.NTXentLoss(temperature=0.1), pml.SupConLoss(temperature=0.07)
    cases = {
        "NT-Xent (2N anchors)": (lambda: nt_xent_loss(z1, z2, 0.1),
                                 lambda: nt_ref(torch.cat([z1, z2]), torch.cat([pair_labels, pair_labels]))),
        "InfoNCE (ref_emb)": (lambda: info_nce(z1, z2, 0.1),
                              lambda: nt_ref(z1, pair_labels, ref_emb=z2, ref_labels=pair_labels.clone())),
        "SupCon": (lambda: supcon_loss(z1, y, 0.07), lambda: sup_ref(z1, y)),
    }
    print(f"{'case':24s} {'lossbook ms':>12s} {'library ms':>11s} {'ratio':>7s}")
    for name, (ours, lib) in cases.items():
        with torch.no_grad():
            assert torch.allclose(ours(), lib(), rtol=1e-4, atol=1e-5), name
        ta = timeit(lambda: ours().backward(), args.repeats, dev)
        tb = once(lambda: lib().backward(), dev)  # a slow call is timed once (PML's NT-Xent takes seconds here)
        if tb < 1.0:
            tb = timeit(lambda: lib().backward(), args.repeats, dev)
        print(f"{name:24s} {ta * 1e3:12.2f} {tb * 1e3:11.2f} {ta / tb:7.3f}")


if __name__ == "__main__":
    main()
