"""Benchmark of lossbook.vision.topomortar's clDice against MONAI 1.6.1 (card 45).

Forward + backward time of `cldice_loss(logits, target)` (lossbook: the soft skeleton with each erosion computed once,
k+1 erosions and k+1 dilations for k iterations) against MONAI's
`SoftclDiceLoss(iter_=3, smooth_nr=1, smooth_dr=1, smooth=1e-300, include_background=False, softmax=True)` (the
published soft_skel, 2k+1 erosions and k+1 dilations), the same loss value, in the same process, float32, on 2-class
segmentation batches of several sizes. Prints the ratio lossbook / MONAI (goal <= 1.0).

    python benchmarks/bench_topomortar.py [--device cpu|cuda] [--threads N] [--repeats 5]
"""

import argparse
from importlib.metadata import version

import torch
from common import timeit

from lossbook.vision.topomortar import cldice_loss

CASES = [  # (name, batch, classes, side)
    ("8 x 2x48x48 (training crops)", 8, 2, 48),
    ("8 x 2x96x96", 8, 2, 96),
    ("4 x 2x256x256", 4, 2, 256),
    ("2 x 3x256x256 (3 classes)", 2, 3, 256),
    ("1 x 2x512x512", 1, 2, 512),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from monai.losses import SoftclDiceLoss

    dev = torch.device(args.device)
    lib = SoftclDiceLoss(iter_=3, smooth_nr=1.0, smooth_dr=1.0, smooth=1e-300, include_background=False, softmax=True)
    print(f"device={dev} threads={torch.get_num_threads()} torch={torch.__version__} monai={version('monai')} "
          "float32, forward+backward of clDice (iters=3, smooth=1)")
    print(f"{'case':32s} {'lossbook ms':>12s} {'MONAI ms':>9s} {'ratio':>7s}")
    g = torch.Generator().manual_seed(0)
    for name, n, c, side in CASES:
        labels = torch.randint(0, c, (n, side, side), generator=g)
        target = torch.nn.functional.one_hot(labels, c).permute(0, 3, 1, 2).float().to(dev)
        logits = (2 * target - 1 + torch.randn(target.shape, generator=g).to(dev)).requires_grad_()
        with torch.no_grad():
            a, b = cldice_loss(logits, target), lib(logits, target)
            assert torch.allclose(a, b, atol=1e-5), (a, b)

        def ours(logits=logits, target=target):
            cldice_loss(logits, target).backward()

        def theirs(logits=logits, target=target):
            lib(logits, target).backward()

        ta, tb = timeit(ours, args.repeats, dev), timeit(theirs, args.repeats, dev)
        logits.grad = None
        print(f"{name:32s} {ta * 1e3:12.2f} {tb * 1e3:9.2f} {ta / tb:7.3f}")


if __name__ == "__main__":
    main()
