"""Benchmark of lossbook.vision.ms_ssim_loss against pytorch-msssim 1.0.0 (card 11).

Forward + backward time of `ms_ssim_loss` (lossbook: the five local statistics of both batches stacked, separable
Gaussian filtering as two grouped (depthwise) convolutions per scale) against `1 - pytorch_msssim.ms_ssim` (ten grouped
convolutions per scale, one-channel convolutions for grey images), in the same process, float32, on images of the sizes
pytorch-msssim accepts (its assert: side > (win-1)·16). Prints the ratio lossbook / library (goal <= 1.0).

    python benchmarks/bench_ms_ssim_loss.py [--device cpu|cuda] [--threads N] [--repeats 5]
"""

import argparse
from importlib.metadata import version

import torch
from common import timeit

from lossbook.vision.ms_ssim_loss import ms_ssim, ms_ssim_loss

CASES = [  # (name, batch, channels, side, win_size)
    ("32 x 1x176x176, win 11, 5 scales", 32, 1, 176, 11),
    ("64 x 1x64x64, win 3, 5 scales", 64, 1, 64, 3),
    ("8 x 3x256x256, win 11, 5 scales", 8, 3, 256, 11),
    ("4 x 3x256x256, win 11, 5 scales", 4, 3, 256, 11),
    ("1 x 3x512x512, win 11, 5 scales", 1, 3, 512, 11),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import pytorch_msssim

    dev = torch.device(args.device)
    print(f"device={dev} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"pytorch_msssim={version('pytorch-msssim')} "
          "float32, forward+backward of 1 - MS-SSIM")
    print(f"{'case':36s} {'lossbook ms':>12s} {'library ms':>11s} {'ratio':>7s}")
    g = torch.Generator().manual_seed(0)
    for name, n, c, side, win in CASES:
        target = torch.rand(n, c, side, side, generator=g).to(dev)
        pred = (target + 0.1 * torch.randn(target.shape, generator=g).to(dev)).clamp(0, 1).requires_grad_()
        with torch.no_grad():
            a = ms_ssim(pred, target, win_size=win, reduction="none")
            b = pytorch_msssim.ms_ssim(pred, target, data_range=1.0, win_size=win, size_average=False)
            assert torch.allclose(a, b, atol=1e-4), (a, b)

        def ours(pred=pred, target=target, win=win):
            ms_ssim_loss(pred, target, win_size=win).backward()

        def lib(pred=pred, target=target, win=win):
            (1 - pytorch_msssim.ms_ssim(pred, target, data_range=1.0, win_size=win)).backward()

        ta, tb = timeit(ours, args.repeats, dev), timeit(lib, args.repeats, dev)
        pred.grad = None
        print(f"{name:36s} {ta * 1e3:12.2f} {tb * 1e3:11.2f} {ta / tb:7.3f}")


if __name__ == "__main__":
    main()
