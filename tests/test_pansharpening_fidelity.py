"""Tests for lossbook.vision.pansharpening_fidelity (λ-PNN, Ciotola, Poggi & Scarpa 2023).

Oracles: torchmetrics' `error_relative_global_dimensionless_synthesis` (values and autograd gradients, float64) for
ERGAS; numpy transcriptions of the official code (`xcorr_torch`, `StructuralLoss`, `local_corr_mask`,
`nyquist_filter_generator`, `DowngradeProtocol`) in tests/references.py for the rest; properties and bad inputs.
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossbook.vision.pansharpening_fidelity import (
    GE1_GAINS,
    ERGASLoss,
    LambdaPNNLoss,
    MTFDowngrade,
    StructuralLoss,
    correlation_threshold,
    ergas_loss,
    lambda_pnn_loss,
    local_xcorr,
    mtf_downgrade,
    mtf_kernel,
    structural_loss,
)

sys.path.insert(0, str(Path(__file__).parent))
from references import _downgrade_np, _ergas_np, _mtf_np, _structural_np, _xcorr_np  # noqa: E402

tm = pytest.importorskip("torchmetrics.functional.image")


def _scene(n=3, side=32, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    gt = 0.3 + 0.5 * F.avg_pool2d(torch.rand(n, 4, side + 3, side + 3, generator=g, dtype=torch.float64), 4, 1)
    ms = mtf_downgrade(gt, mtf_kernel(dtype=torch.float64)) + 0.01 * torch.randn(n, 4, side // 4, side // 4, generator=g, dtype=torch.float64)
    pan = gt.mean(1, keepdim=True) + 0.01 * torch.randn(n, 1, side, side, generator=g, dtype=torch.float64)
    pred = gt + 0.03 * torch.randn(gt.shape, generator=g, dtype=torch.float64)
    thr = correlation_threshold(gt, pan)
    return [t.to(dtype) for t in (pred, ms, pan, thr)]


# ---------------------------------------------------------------- ERGAS = torchmetrics
@pytest.mark.parametrize("ratio", [4, 2, 3.5])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ergas_equals_torchmetrics_values_and_gradients(ratio, reduction):
    g = torch.Generator().manual_seed(1)
    t = 0.2 + torch.rand(5, 4, 8, 8, generator=g, dtype=torch.float64)
    p1 = (t + 0.05 * torch.randn(t.shape, generator=g, dtype=torch.float64)).requires_grad_()
    p2 = p1.detach().clone().requires_grad_()
    t1, t2 = t.clone().requires_grad_(), t.clone().requires_grad_()
    tm_red = {"mean": "elementwise_mean", "sum": "sum", "none": "none"}[reduction]
    ours = ergas_loss(p1, t1, ratio=ratio, reduction=reduction)
    theirs = tm.error_relative_global_dimensionless_synthesis(p2, t2, ratio=ratio, reduction=tm_red)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(t1.grad, t2.grad, rtol=1e-10, atol=1e-12)


def test_ergas_defaults_and_formula():
    pred, ms, _, _ = _scene()
    d = mtf_downgrade(pred, mtf_kernel(dtype=torch.float64))
    torch.testing.assert_close(ergas_loss(d, ms), ergas_loss(d, ms, ratio=4, reduction="mean"), rtol=0, atol=0)
    torch.testing.assert_close(ergas_loss(d, ms, reduction="none"), torch.tensor(_ergas_np(d.numpy(), ms.numpy()), dtype=torch.float64),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ergas_loss(d, ms, ratio=2), 2 * ergas_loss(d, ms), rtol=1e-12, atol=0)
    torch.testing.assert_close(ergas_loss(d, ms, reduction="sum"), ergas_loss(d, ms, reduction="none").sum())
    assert ergas_loss(ms, ms).item() == 0.0
    torch.testing.assert_close(ERGASLoss()(d, ms), ergas_loss(d, ms), rtol=0, atol=0)
    torch.testing.assert_close(ERGASLoss(ratio=2, reduction="none")(d, ms), ergas_loss(d, ms, 2, "none"), rtol=0, atol=0)


def test_ergas_float32_and_gradcheck():
    pred, ms, _, _ = _scene(n=2)
    d = mtf_downgrade(pred, mtf_kernel(dtype=torch.float64))
    v32 = ergas_loss(d.float(), ms.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), ergas_loss(d, ms), rtol=1e-5, atol=1e-6)
    assert torch.autograd.gradcheck(lambda p: ergas_loss(p, ms), (d.clone().requires_grad_(),))


# ---------------------------------------------------------------- MTF kernel and re-projection
def test_mtf_kernel_defaults_match_official_construction():
    k = mtf_kernel(dtype=torch.float64)
    torch.testing.assert_close(k, mtf_kernel(GE1_GAINS, 4, 41, dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(k[:, 0], torch.from_numpy(_mtf_np()), rtol=1e-10, atol=1e-14)
    assert GE1_GAINS == (0.23, 0.23, 0.23, 0.23)
    assert mtf_kernel().dtype == torch.get_default_dtype()
    for ratio, size in [(2, 21), (4, 25)]:
        torch.testing.assert_close(mtf_kernel([0.3, 0.25], ratio, size, dtype=torch.float64)[:, 0],
                                   torch.from_numpy(_mtf_np((0.3, 0.25), ratio, size)), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("G", [0.23, 0.35])
def test_mtf_kernel_gain_at_nyquist(G):
    k = mtf_kernel([G], dtype=torch.float64)[0, 0]
    torch.testing.assert_close(k.sum(), torch.tensor(1.0, dtype=torch.float64))
    H = torch.fft.fft2(k, s=(512, 512)).abs()
    assert abs(H[0, 64].item() - G) < 0.02 and abs(H[64, 0].item() - G) < 0.02
    assert (k >= 0).all()


def test_downgrade_equals_blur_then_decimate_and_reference():
    x = torch.rand(2, 4, 40, 48, dtype=torch.float64)
    k = mtf_kernel(dtype=torch.float64)
    full = F.conv2d(F.pad(x, (20,) * 4, mode="replicate"), k, groups=4)
    torch.testing.assert_close(mtf_downgrade(x, k), full[..., 2::4, 2::4], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(mtf_downgrade(x, k), torch.from_numpy(_downgrade_np(x.numpy())), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(MTFDowngrade()(x), mtf_downgrade(x, k), rtol=0, atol=1e-15)
    k2 = mtf_kernel(ratio=2, dtype=torch.float64)
    full2 = F.conv2d(F.pad(x, (20,) * 4, mode="replicate"), k2, groups=4)
    torch.testing.assert_close(mtf_downgrade(x, k2, ratio=2), full2[..., 1::2, 1::2], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(MTFDowngrade(ratio=2)(x), full2[..., 1::2, 1::2], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(MTFDowngrade([0.3] * 4, 4, 21)(x), mtf_downgrade(x, mtf_kernel([0.3] * 4, 4, 21, torch.float64)))
    c = torch.full((1, 4, 16, 16), 0.4, dtype=torch.float64)
    torch.testing.assert_close(MTFDowngrade()(c), torch.full((1, 4, 4, 4), 0.4, dtype=torch.float64))


# ---------------------------------------------------------------- local correlation
@pytest.mark.parametrize("w", [1, 2, 3, 8])
def test_local_xcorr_matches_official_transcription(w):
    g = torch.Generator().manual_seed(w)
    a = torch.rand(2, 3, 20, 24, generator=g, dtype=torch.float64)
    b = torch.rand(2, 1, 20, 24, generator=g, dtype=torch.float64)
    torch.testing.assert_close(local_xcorr(a, b, w), torch.from_numpy(_xcorr_np(a.numpy(), b.numpy(), w)),
                               rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(local_xcorr(b, a, w), local_xcorr(a, b, w), rtol=1e-12, atol=1e-12)


def test_local_xcorr_properties_and_eps_default():
    a = torch.rand(2, 4, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(local_xcorr(a, a, 2), torch.ones_like(a))
    torch.testing.assert_close(local_xcorr(a, -a, 2), -torch.ones_like(a))
    # constant images: every energy is floored at eps = 1e-20, so rho = 0 / (1e-20 + 1e-20) = 0 ...
    c = torch.ones(1, 1, 12, 12, dtype=torch.float64)
    assert local_xcorr(c[..., :1, :1] * 0 + 0, c[..., :1, :1] * 0, 1).abs().max() == 0
    # ... and the default eps is the official 1e-20: a tiny energy is floored differently with a larger eps
    t = 1e-12 * torch.rand(1, 1, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(local_xcorr(t, t, 2), local_xcorr(t, t, 2, eps=1e-20), rtol=0, atol=0)
    assert not torch.allclose(local_xcorr(t, t, 2), local_xcorr(t, t, 2, eps=1e-10))
    assert local_xcorr(a.float(), a.float(), 2).dtype == torch.float32


def test_local_xcorr_gradcheck():
    a = torch.rand(1, 2, 10, 10, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 1, 10, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: local_xcorr(x, y, 2), (a, b))


# ---------------------------------------------------------------- structural loss and threshold
@pytest.mark.parametrize("ratio", [4, 6, 2])
def test_structural_loss_matches_official_transcription(ratio):
    pred, _, pan, thr = _scene(n=2, side=24)
    for t in (thr, None):
        ref = _structural_np(pred.numpy(), pan.numpy(), None if t is None else t.numpy(), ratio)
        torch.testing.assert_close(structural_loss(pred, pan, t, ratio=ratio, reduction="none"), torch.from_numpy(ref),
                                   rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(StructuralLoss(ratio, "none")(pred, pan, t), torch.from_numpy(ref), rtol=1e-10, atol=1e-12)


def test_structural_loss_defaults_and_modes():
    pred, _, pan, thr = _scene(n=3)
    x = 1 - local_xcorr(pred, pan, 2).clamp_min(-1)
    torch.testing.assert_close(structural_loss(pred, pan), x.mean(), rtol=1e-12, atol=1e-14)  # ratio 4 -> w 2, mean
    torch.testing.assert_close(structural_loss(pred, pan, thr), (x * (x > thr)).mean(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(structural_loss(pred, pan, thr, reduction="sum"), (x * (x > thr)).flatten(1).mean(1).sum())
    torch.testing.assert_close(StructuralLoss()(pred, pan, thr), structural_loss(pred, pan, thr), rtol=0, atol=0)
    torch.testing.assert_close(StructuralLoss()(pred, pan), structural_loss(pred, pan), rtol=0, atol=0)
    assert structural_loss(pan.expand(-1, 4, -1, -1), pan).abs().item() < 1e-12
    # rho clipped at -1: anti-correlated output gives X = 2 exactly
    torch.testing.assert_close(structural_loss(-pan.expand(-1, 4, -1, -1), pan), torch.tensor(2.0, dtype=torch.float64))
    # the threshold is a constant: no gradient flows to it, and X > tau (strict) decides
    p = pred.clone().requires_grad_()
    structural_loss(p, pan, thr).backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert structural_loss(pred, pan, x).item() == 0.0  # X > X is never true


def test_correlation_threshold_matches_official_local_corr_mask():
    _, _, pan, _ = _scene(n=2)
    ms_up = torch.rand(2, 4, 32, 32, dtype=torch.float64)
    k = mtf_kernel(dtype=torch.float64)[:1]
    plp = F.conv2d(F.pad(pan, (20,) * 4, mode="reflect"), k)
    ref = 1 - torch.from_numpy(_xcorr_np(plp.numpy(), ms_up.numpy(), 8))
    torch.testing.assert_close(correlation_threshold(ms_up, pan), ref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(correlation_threshold(ms_up, pan, GE1_GAINS, 4, 8), ref, rtol=1e-9, atol=1e-11)
    ref4 = 1 - local_xcorr(plp, ms_up, 4)
    torch.testing.assert_close(correlation_threshold(ms_up, pan, semi_width=4), ref4, rtol=1e-12, atol=1e-12)
    k2 = mtf_kernel([0.4], ratio=2, dtype=torch.float64)
    ref2 = 1 - local_xcorr(F.conv2d(F.pad(pan, (20,) * 4, mode="reflect"), k2), ms_up, 8)
    torch.testing.assert_close(correlation_threshold(ms_up, pan, [0.4] * 4, ratio=2), ref2, rtol=1e-12, atol=1e-12)
    assert not correlation_threshold(ms_up.requires_grad_(), pan).requires_grad


# ---------------------------------------------------------------- λ-PNN loss
def test_lambda_pnn_defaults_and_formula():
    pred, ms, pan, thr = _scene()
    d = mtf_downgrade(pred, mtf_kernel(dtype=torch.float64))
    parts = 0.075 * ergas_loss(d, ms, reduction="none") + 4.0 * structural_loss(pred, pan, thr, reduction="none")
    torch.testing.assert_close(lambda_pnn_loss(pred, ms, pan, thr, reduction="none"), parts, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lambda_pnn_loss(pred, ms, pan, thr), parts.mean(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lambda_pnn_loss(pred, ms, pan, thr, reduction="sum"), parts.sum(), rtol=1e-12, atol=1e-14)
    nothr = 0.075 * ergas_loss(d, ms) + 4.0 * structural_loss(pred, pan)
    torch.testing.assert_close(lambda_pnn_loss(pred, ms, pan), nothr, rtol=1e-12, atol=1e-14)
    other = 0.5 * ergas_loss(mtf_downgrade(pred, mtf_kernel([0.3] * 4, dtype=torch.float64)), ms) + 2.0 * structural_loss(pred, pan, thr)
    torch.testing.assert_close(lambda_pnn_loss(pred, ms, pan, thr, [0.3] * 4, 4, 0.5, 2.0), other, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lambda_pnn_loss(pred, ms, pan, thr, gamma=0.0), 0.075 * ergas_loss(d, ms), rtol=1e-12, atol=0)
    torch.testing.assert_close(lambda_pnn_loss(pred, ms, pan, thr, alpha=0.0), 4.0 * structural_loss(pred, pan, thr))


def test_lambda_pnn_module_passes_every_setting():
    pred, ms, pan, thr = _scene()
    torch.testing.assert_close(LambdaPNNLoss()(pred, ms, pan, thr), lambda_pnn_loss(pred, ms, pan, thr), rtol=0, atol=0)
    kw = dict(nyquist_gains=[0.3] * 4, ratio=4, alpha=0.5, gamma=2.0, reduction="none")
    torch.testing.assert_close(LambdaPNNLoss(**kw)(pred, ms, pan, thr), lambda_pnn_loss(pred, ms, pan, thr, **kw), rtol=0, atol=0)
    torch.testing.assert_close(LambdaPNNLoss(reduction="sum")(pred, ms, pan), lambda_pnn_loss(pred, ms, pan, reduction="sum"))
    g2 = torch.rand(2, 4, 16, 16, dtype=torch.float64) + 0.3
    m2 = mtf_downgrade(g2, mtf_kernel(ratio=2, dtype=torch.float64), ratio=2)
    p2 = g2.mean(1, keepdim=True)
    torch.testing.assert_close(LambdaPNNLoss(ratio=2)(g2, m2, p2), lambda_pnn_loss(g2, m2, p2, ratio=2), rtol=0, atol=0)
    assert lambda_pnn_loss(g2, m2, p2, ratio=2, gamma=0.0).abs().item() < 1e-12


def test_lambda_pnn_float32_gradcheck_and_reference_downgrade():
    pred, ms, pan, thr = _scene(n=2, side=24)
    v32 = lambda_pnn_loss(pred.float(), ms.float(), pan.float(), thr.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), lambda_pnn_loss(pred, ms, pan, thr), rtol=1e-4, atol=1e-5)
    e = _ergas_np(_downgrade_np(pred.numpy()), ms.numpy())
    s = _structural_np(pred.numpy(), pan.numpy(), thr.numpy())
    torch.testing.assert_close(lambda_pnn_loss(pred, ms, pan, thr, reduction="none"),
                               torch.tensor([0.075 * a + 4.0 * b for a, b in zip(e, s)], dtype=torch.float64), rtol=1e-10, atol=1e-12)
    p = pred[:1, :, :8, :8].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: lambda_pnn_loss(x, ms[:1, :, :2, :2], pan[:1, :, :8, :8]), (p,))


# ---------------------------------------------------------------- bad inputs: ValueError naming the argument
def test_bad_inputs_name_the_argument():
    pred, ms, pan, thr = _scene(n=2)
    x = torch.rand(2, 4, 8, 8)
    cases = [
        (lambda: ergas_loss(x, x[:, :3]), r"^pred and target"),
        (lambda: ergas_loss(x[0], x[0]), r"^pred:"),
        (lambda: ergas_loss(x, x.long()), r"^target:"),
        (lambda: ergas_loss(x, x, ratio=0), r"^ratio:"),
        (lambda: ergas_loss(x, x, reduction="avg"), r"^reduction:"),
        (lambda: ergas_loss(x[:0], x[:0]), r"^pred:"),
        (lambda: ergas_loss(x * float("nan"), x), r"^pred:"),
        (lambda: mtf_kernel([0.23, 1.0]), r"^nyquist_gains:"),
        (lambda: mtf_kernel([0.0]), r"^nyquist_gains:"),
        (lambda: mtf_kernel([]), r"^nyquist_gains:"),
        (lambda: mtf_kernel(5), r"^nyquist_gains:"),
        (lambda: mtf_kernel(ratio=1), r"^ratio:"),
        (lambda: mtf_kernel(ratio=4.0), r"^ratio:"),
        (lambda: mtf_kernel(ratio=True), r"^ratio:"),
        (lambda: mtf_kernel(size=40), r"^size:"),
        (lambda: mtf_kernel(size=1), r"^size:"),
        (lambda: mtf_kernel(size=True), r"^size:"),
        (lambda: mtf_downgrade(pred, mtf_kernel(dtype=torch.float64)[:3]), r"^kernel:"),
        (lambda: mtf_downgrade(pred[..., :30], mtf_kernel(dtype=torch.float64)), r"^x:"),
        (lambda: mtf_downgrade(pred[:, :2], mtf_kernel(dtype=torch.float64)), r"^kernel:"),
        (lambda: local_xcorr(pred, pan[..., :20], 2), r"^a and b"),
        (lambda: local_xcorr(pred, pan[:1], 2), r"^a and b"),
        (lambda: local_xcorr(pred, pred[:, :2], 2), r"^a and b"),
        (lambda: local_xcorr(pred, pan, 0), r"^half_width:"),
        (lambda: local_xcorr(pred, pan, 2.0), r"^half_width:"),
        (lambda: local_xcorr(pred, pan, True), r"^half_width:"),
        (lambda: local_xcorr(pred, pan, 2, eps=0), r"^eps:"),
        (lambda: local_xcorr(pred.long(), pan, 2), r"^a:"),
        (lambda: local_xcorr(pred, pan.long(), 2), r"^b:"),
        (lambda: structural_loss(pred, pred), r"^pan:"),
        (lambda: structural_loss(pred, pan[:1]), r"^pan:"),
        (lambda: structural_loss(pred, pan[..., :16]), r"^pan:"),
        (lambda: structural_loss(pred, pan, thr[:1]), r"^threshold and pred"),
        (lambda: structural_loss(pred, pan, thr.long()), r"^threshold:"),
        (lambda: structural_loss(pred, pan, ratio=1), r"^ratio:"),
        (lambda: structural_loss(pred, pan, reduction="avg"), r"^reduction:"),
        (lambda: correlation_threshold(pred, pan[:1]), r"^pan:"),
        (lambda: correlation_threshold(pred[..., :16, :16], pan[..., :16, :16]), r"^pan:"),
        (lambda: correlation_threshold(pred.long(), pan), r"^ms_up:"),
        (lambda: lambda_pnn_loss(pred, ms[..., :4], pan, thr), r"^ms:"),
        (lambda: lambda_pnn_loss(pred, ms[:1], pan, thr), r"^ms:"),
        (lambda: lambda_pnn_loss(pred[..., :30, :30], ms, pan[..., :30, :30]), r"^ms:"),
        (lambda: lambda_pnn_loss(pred[:, :3], ms[:, :3], pan, thr[:, :3]), r"^pred:"),
        (lambda: lambda_pnn_loss(pred, ms[:, :3], pan, thr), r"^ms:"),
        (lambda: lambda_pnn_loss(pred, ms, pan.long(), thr), r"^pan:"),
        (lambda: lambda_pnn_loss(pred, ms, pan.expand(-1, 4, -1, -1), thr), r"^pan:"),
        (lambda: lambda_pnn_loss(pred, ms, pan, thr.long()), r"^threshold:"),
        (lambda: LambdaPNNLoss()(pred, ms, pan.long()), r"^pan:"),
        (lambda: lambda_pnn_loss(pred, ms, pan, thr, alpha=-1), r"^alpha:"),
        (lambda: lambda_pnn_loss(pred, ms, pan, thr, gamma=-1), r"^gamma:"),
        (lambda: lambda_pnn_loss(pred, ms, pan, thr, nyquist_gains=[2.0] * 4), r"^nyquist_gains:"),
        (lambda: lambda_pnn_loss(pred, ms, pan, thr, ratio=0), r"^ratio:"),
        (lambda: lambda_pnn_loss(pred, ms, pan, thr, reduction="avg"), r"^reduction:"),
        (lambda: LambdaPNNLoss(alpha=-1), r"^alpha:"),
        (lambda: LambdaPNNLoss(gamma=float("nan")), r"^gamma:"),
        (lambda: LambdaPNNLoss(ratio=1), r"^ratio:"),
        (lambda: LambdaPNNLoss(reduction="avg"), r"^reduction:"),
        (lambda: LambdaPNNLoss(nyquist_gains=[1.5]), r"^nyquist_gains:"),
        (lambda: LambdaPNNLoss()(pred, ms[..., :4], pan), r"^ms:"),
        (lambda: StructuralLoss(ratio=1), r"^ratio:"),
        (lambda: StructuralLoss(reduction="x"), r"^reduction:"),
        (lambda: ERGASLoss(reduction="x"), r"^reduction:"),
        (lambda: MTFDowngrade(ratio=1), r"^ratio:"),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()


# ---------------------------------------------------------------- mutation-testing pass (#7): edges, dtypes, settings
def test_smallest_images_and_empty_sides():
    one = torch.full((1, 2, 1, 1), 0.5, dtype=torch.float64)
    assert ergas_loss(one, one).item() == 0.0  # 1x1 images are legal
    torch.testing.assert_close(ergas_loss(one * 1.5, one, reduction="none"), torch.tensor([12.5], dtype=torch.float64))
    for bad in (one[..., :0, :], one[..., :, :0]):
        with pytest.raises(ValueError, match=r"^pred: expected a non-empty image"):
            ergas_loss(bad, bad)
        with pytest.raises(ValueError, match=r"^a: expected a non-empty image"):
            local_xcorr(bad, bad, 1)
    # the smallest legal kernel side and ratio
    k = mtf_kernel([0.3], ratio=2, size=3, dtype=torch.float64)
    assert k.shape == (1, 1, 3, 3) and abs(k.sum().item() - 1) < 1e-12
    torch.testing.assert_close(k[:, 0], torch.from_numpy(_mtf_np((0.3,), 2, 3)), rtol=1e-10, atol=1e-14)
    x = torch.rand(1, 1, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(mtf_downgrade(x, k, ratio=2), F.conv2d(F.pad(x, (1,) * 4, mode="replicate"), k)[..., 1::2, 1::2])


def test_divisibility_checks_each_side():
    pred, ms, pan, thr = _scene(n=1)
    k = mtf_kernel(dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^x: expected sides divisible by ratio 4"):
        mtf_downgrade(pred[..., :30, :], k)
    with pytest.raises(ValueError, match=r"^x: expected sides divisible by ratio 4"):
        mtf_downgrade(pred[..., :, :30], k)
    # pred of side 30 x 32 and an MS of 7 x 8 rows (30 // 4 = 7): the sides must still be divisible
    with pytest.raises(ValueError, match=r"^ms:"):
        lambda_pnn_loss(pred[..., :30, :], ms[..., :7, :], pan[..., :30, :])
    with pytest.raises(ValueError, match=r"^ms:"):
        lambda_pnn_loss(pred[..., :, :30], ms[..., :, :7], pan[..., :, :30])
    with pytest.raises(ValueError, match=r"^ms:"):
        LambdaPNNLoss()(pred[..., :30, :], ms[..., :7, :], pan[..., :30, :])


def test_correlation_threshold_reflection_bound_is_strict():
    g = torch.Generator().manual_seed(5)
    pan = torch.rand(1, 1, 21, 21, generator=g, dtype=torch.float64)
    ms_up = torch.rand(1, 4, 21, 21, generator=g, dtype=torch.float64)
    assert correlation_threshold(ms_up, pan).shape == (1, 4, 21, 21)  # sides 21 > 20: legal
    with pytest.raises(ValueError, match=r"^pan: reflection padding by 20 needs sides > 20"):
        correlation_threshold(ms_up[..., :20, :20], pan[..., :20, :20])
    with pytest.raises(ValueError, match=r"^pan: reflection padding by 20"):
        correlation_threshold(ms_up[..., :20, :], pan[..., :20, :])
    # a 2-band MS: only band 0's kernel low-passes the PAN
    ref = 1 - local_xcorr(F.conv2d(F.pad(pan, (20,) * 4, mode="reflect"), mtf_kernel([0.3], dtype=torch.float64)), ms_up[:, :2], 8)
    torch.testing.assert_close(correlation_threshold(ms_up[:, :2], pan, [0.3, 0.4]), ref, rtol=1e-12, atol=1e-12)
    assert correlation_threshold(ms_up.float(), pan.float()).dtype == torch.float32


def test_modules_keep_the_kernel_out_of_the_state_dict_and_cast_it():
    assert "kernel" not in MTFDowngrade().state_dict() and "kernel" not in LambdaPNNLoss().state_dict()
    assert MTFDowngrade().kernel.dtype == torch.float64 and LambdaPNNLoss().kernel.dtype == torch.float64
    x = torch.rand(2, 4, 16, 16, dtype=torch.float64)
    y = MTFDowngrade()(x.float())
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, mtf_downgrade(x.float(), mtf_kernel(dtype=torch.float32)), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(MTFDowngrade()(x), mtf_downgrade(x, mtf_kernel(dtype=torch.float64)), rtol=0, atol=0)
    pred, ms, pan, thr = _scene(n=2)
    torch.testing.assert_close(LambdaPNNLoss()(pred, ms, pan, thr), lambda_pnn_loss(pred, ms, pan, thr), rtol=0, atol=0)


def test_lambda_pnn_mixed_dtypes_promote_and_ratio_reaches_both_terms():
    pred, ms, pan, thr = _scene(n=2)
    f = lambda t: t.float()
    for k in range(3):
        args = [f(t) if j != k else t for j, t in enumerate((pred, ms, pan))]
        out = lambda_pnn_loss(*args, thr, reduction="none")
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, lambda_pnn_loss(*[t.double() for t in args], thr, reduction="none"), rtol=0, atol=0)
        torch.testing.assert_close(LambdaPNNLoss(reduction="none")(*args, thr), out, rtol=0, atol=0)
    # ratio 2 reaches the kernel, the decimation, the ERGAS prefactor and the structural window
    g2 = pred[..., :16, :16]
    k2 = mtf_kernel(ratio=2, dtype=torch.float64)
    m2 = mtf_downgrade(g2, k2, ratio=2) + 0.02
    p2 = pan[..., :16, :16]
    want = 0.075 * ergas_loss(mtf_downgrade(g2, k2, ratio=2), m2, ratio=2, reduction="none") \
        + 4.0 * structural_loss(g2, p2, None, ratio=2, reduction="none")
    torch.testing.assert_close(lambda_pnn_loss(g2, m2, p2, ratio=2, reduction="none"), want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(LambdaPNNLoss(ratio=2, reduction="none")(g2, m2, p2), want, rtol=1e-12, atol=1e-14)
    # an odd ratio: window half-width ceil(3 / 2) = 2
    torch.testing.assert_close(structural_loss(pred[..., :30, :30], pan[..., :30, :30], ratio=3),
                               (1 - local_xcorr(pred[..., :30, :30], pan[..., :30, :30], 2).clamp_min(-1)).mean(), rtol=1e-12, atol=0)


def test_exact_messages_name_the_expected_shapes():
    pred, ms, pan, thr = _scene(n=2)
    p2, q2 = pred[..., :24], pan[..., :20]
    with pytest.raises(ValueError, match=r"^pan: expected shape \(2, 1, 32, 24\) to match pred, got \(2, 1, 32, 20\)$"):
        structural_loss(p2, q2)
    with pytest.raises(ValueError, match=r"^ms: expected shape \(2, 4, 8, 8\) for pred of shape \(2, 4, 32, 32\) and ratio 4 "
                                         r"\(pred's sides divisible by ratio\), got \(2, 4, 8, 4\)$"):
        lambda_pnn_loss(pred, ms[..., :4], pan, thr)
    with pytest.raises(ValueError, match=r"^ms: expected 4 channel\(s\) \(bands\), got shape \(2, 3, 8, 8\)$"):
        lambda_pnn_loss(pred, ms[:, :3], pan, thr)
    with pytest.raises(ValueError, match=r"^pred: expected 4 channel\(s\) \(bands\)"):
        LambdaPNNLoss()(pred[:, :3], ms[:, :3], pan)
    with pytest.raises(ValueError, match=r"^kernel: expected shape \(4, 1, k, k\) for 4 bands, got \(3, 1, 41, 41\)$"):
        mtf_downgrade(pred, mtf_kernel(dtype=torch.float64)[:3])
    for bad in (pred.long(), pred[0], pred[..., :0]):
        with pytest.raises(ValueError, match=r"^pred: expected"):
            structural_loss(bad, pan)
        with pytest.raises(ValueError, match=r"^x: expected"):
            mtf_downgrade(bad, mtf_kernel(dtype=torch.float64))


def test_rho_clipped_at_minus_one_and_threshold_cast_to_the_loss_dtype():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)
    p = -3 * a.expand(-1, 4, -1, -1)  # rho rounds to -1 - 4e-16 at some pixels: the clip keeps X <= 2 exactly
    assert structural_loss(p, a, torch.full_like(p, 2.0)).item() == 0.0
    # a float64 threshold just below a float32 X is cast to float32 first (it rounds to X, and X > X is false)
    pred, _, pan, _ = _scene(n=1)
    p32, q32 = pred.float(), pan.float()
    x32 = 1.0 - local_xcorr(p32, q32, 2).clamp_min(-1.0)
    assert x32.dtype == torch.float32
    assert structural_loss(p32, q32, x32.double() - 1e-12).item() == 0.0
    assert structural_loss(p32, q32, x32.double() - 1e-3).item() > 0


def test_ergas_and_xcorr_mixed_dtypes_promote():
    g = torch.Generator().manual_seed(7)
    t = 0.2 + torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64)
    p = t + 0.05 * torch.randn(t.shape, generator=g, dtype=torch.float64)
    for a, b in ((p, t.float()), (p.float(), t)):
        out = ergas_loss(a, b, reduction="none")
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, ergas_loss(a.double(), b.double(), reduction="none"), rtol=0, atol=0)
        r = local_xcorr(a, b[:, :1], 2)
        assert r.dtype == torch.float64
        torch.testing.assert_close(r, local_xcorr(a.double(), b[:, :1].double(), 2), rtol=0, atol=0)
    assert ergas_loss(p.bfloat16(), t.bfloat16()).dtype == torch.float32


def test_lambda_module_zero_weights_are_legal():
    pred, ms, pan, thr = _scene(n=2)
    for kw in (dict(alpha=0.0), dict(gamma=0.0), dict(alpha=0.0, gamma=0.0)):
        m = LambdaPNNLoss(**kw)
        torch.testing.assert_close(m(pred, ms, pan, thr), lambda_pnn_loss(pred, ms, pan, thr, **kw), rtol=0, atol=0)
    assert LambdaPNNLoss(alpha=0.0, gamma=0.0)(pred, ms, pan, thr).item() == 0.0
    m = LambdaPNNLoss()
    assert (m.nyquist_gains, m.ratio, m.alpha, m.gamma, m.reduction) == (GE1_GAINS, 4, 0.075, 4.0, "mean")
