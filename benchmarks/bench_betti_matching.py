"""Benchmark of lossbook.vision.betti_matching against topolosses 0.2.0 (card 20).

Forward + backward time per image of `betti_matching_loss` (lossbook: one numba kernel per batch, compiled before
timing: counting sorts and six union-find passes) against topolosses' `BettiMatchingLoss(use_base_loss=False)` (the
compiled C++ Betti-Matching-3D plus its PyTorch gathering), in the same process, float32, on
one thread by default. Two kinds of inputs: uniform noise (the worst case: a critical point every few pixels) and
smooth likelihood maps (blurred noise through a steep sigmoid, like a trained network's output) against smooth binary
labels. Checks that both give the same loss before timing. Prints the ratio lossbook / library (goal <= 1.0).

    python benchmarks/bench_betti_matching.py [--threads 1] [--repeats 5] [--batch 4]
"""

import argparse
import importlib.util
import sys
import types
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from common import timeit
from scipy.ndimage import gaussian_filter

from lossbook.vision.betti_matching import betti_matching_loss


def load_topolosses_bm():
    "topolosses' BettiMatchingLoss, loaded file by file with its compiled extension (the package's __init__ pulls cv2)."
    spec = importlib.util.find_spec("topolosses")
    if spec is None:
        raise SystemExit("topolosses is not installed: pip install topolosses==0.2.0 --no-deps")
    root = Path(list(spec.submodule_search_locations)[0])
    src = root / "losses" / "betti_matching" / "src"
    for name, d in [("_tl", root), ("_tl.losses", root / "losses"), ("_tl.losses.betti_matching", src.parent),
                    ("_tl.losses.betti_matching.src", src)]:
        m = types.ModuleType(name)
        m.__path__ = [str(d)]
        sys.modules[name] = m

    def load(name, path):
        s = importlib.util.spec_from_file_location(name, path)
        m = importlib.util.module_from_spec(s)
        sys.modules[name] = m
        s.loader.exec_module(m)
        return m

    load("_tl.losses.betti_matching.src.betti_matching", sorted(src.glob("betti_matching*.so"))[0])
    load("_tl.losses.utils", root / "losses" / "utils.py")
    return load("_tl.losses.betti_matching.src.betti_matching_loss", src / "betti_matching_loss.py").BettiMatchingLoss


def inputs(kind, n, side, rng):
    if kind == "noise":
        return torch.rand(n, 1, side, side, dtype=torch.float32), (torch.rand(n, 1, side, side) > 0.5).float()
    s = side / 16
    z = np.stack([gaussian_filter(rng.standard_normal((side, side)), s) for _ in range(n)])
    z = (z - z.mean()) / z.std()
    probs = torch.from_numpy(1 / (1 + np.exp(-4 * z))).float()[:, None]
    labels = np.stack([gaussian_filter(rng.standard_normal((side, side)), s) for _ in range(n)]) > 0
    return probs, torch.from_numpy(labels).float()[:, None]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    ref = load_topolosses_bm()(use_base_loss=False)
    dev = torch.device("cpu")
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} topolosses={version('topolosses')} "
          f"float32, forward+backward, batch {args.batch}, times per image")
    print(f"{'case':22s} {'lossbook ms':>12s} {'library ms':>11s} {'ratio':>7s}")
    rng = np.random.default_rng(0)
    for kind in ("noise", "smooth"):
        for side in (32, 64, 128):
            probs, target = inputs(kind, args.batch, side, rng)
            probs.requires_grad_()
            a, b = betti_matching_loss(probs, target), ref(probs, target).reshape(())
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (kind, side, a.item(), b.item())

            def ours(p=probs, t=target):
                betti_matching_loss(p, t).backward()

            def lib(p=probs, t=target):
                ref(p, t).backward()

            ta = timeit(ours, args.repeats, dev) / args.batch
            tb = timeit(lib, args.repeats, dev) / args.batch
            print(f"{kind + f' {side}x{side}':22s} {ta * 1e3:12.2f} {tb * 1e3:11.2f} {ta / tb:7.2f}")


if __name__ == "__main__":
    main()
