"""Benchmark of lossbook.metric.snr_distance against pytorch-metric-learning (card 28).

Forward + backward time of the pairwise SNR distance (N = M = 512, D = 128 and 512) and of the SNR contrastive loss,
lossbook vs pytorch-metric-learning's `SNRDistance(normalize_embeddings=False)` /
`SignalToNoiseRatioContrastiveLoss`, in the same process; prints the ratio lossbook / library (goal <= 1.0).

    python benchmarks/bench_snr_distance.py [--device cpu|cuda] [--threads N] [--repeats 5]
"""

import argparse

import torch
from common import timeit

from lossbook.metric.snr_distance import snr_contrastive_loss, snr_distance


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=512)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from pytorch_metric_learning import losses
    from pytorch_metric_learning.distances import SNRDistance

    dev = torch.device(args.device)
    n = args.n
    pml_dist = SNRDistance(normalize_embeddings=False)
    pml_loss = losses.SignalToNoiseRatioContrastiveLoss(pos_margin=0, neg_margin=1, distance=pml_dist)
    print(f"device={dev} threads={torch.get_num_threads()} torch={torch.__version__} N=M={n} float32, forward+backward")
    print(f"{'case':32s} {'lossbook ms':>12s} {'PML ms':>10s} {'ratio':>7s}")
    g = torch.Generator().manual_seed(0)
    labels = (torch.arange(n) % (n // 16)).to(dev)  # 16 samples per class
    for d in (128, 512):
        q = torch.randn(n, d, generator=g).to(dev).requires_grad_()
        r = torch.randn(n, d, generator=g).to(dev).requires_grad_()
        w = torch.randn(n, n, generator=g).to(dev)  # a non-trivial upstream gradient

        def ours_dist(q=q, r=r, w=w):
            (snr_distance(q, r) * w).sum().backward()

        def pml_d(q=q, r=r, w=w):
            (pml_dist(q, r) * w).sum().backward()

        def ours_loss(q=q):
            snr_contrastive_loss(q, labels).backward()

        def pml_l(q=q):
            pml_loss(q, labels).backward()

        with torch.no_grad():
            assert torch.allclose(snr_distance(q, r), pml_dist(q, r), rtol=1e-4, atol=1e-4)
        for name, a, b in [(f"snr_distance D={d}", ours_dist, pml_d), (f"SNR contrastive loss D={d}", ours_loss, pml_l)]:
            ta, tb = timeit(a, args.repeats, dev), timeit(b, args.repeats, dev)
            print(f"{name:32s} {ta * 1e3:12.2f} {tb * 1e3:10.2f} {ta / tb:7.3f}")
            q.grad = r.grad = None


if __name__ == "__main__":
    main()
