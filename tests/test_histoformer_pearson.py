"""Tests for lossbook.vision.histoformer_pearson (Sun et al. 2024, Histoformer's Pearson correlation loss).

References: torchmetrics' `pearson_corrcoef` (1.9.0) on each flattened image, torch.corrcoef, scipy.stats.pearsonr and
a plain float64 loop transcribed from Eqs. (1)-(3) of the notebook (the official `pearson_correlation_loss` and
`compute_correlation_loss`); then the invariances, the gradient identities of Eq. (4), the degenerate images, gradcheck,
reductions, modules, dtypes and every bad-input message.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.vision.histoformer_pearson import (
    L1PearsonLoss,
    PearsonLoss,
    l1_pearson_loss,
    pearson_correlation,
    pearson_loss,
)

torchmetrics = pytest.importorskip("torchmetrics", reason="torchmetrics is the reference (test extra)")
from torchmetrics.functional import pearson_corrcoef  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SHAPES = [(4, 3, 8, 8), (5, 1, 16, 12), (3, 2, 7), (6, 50), (2, 3, 4, 5, 6)]


def _data(shape=(6, 3, 8, 8), dtype=torch.float64, seed=0, noise=0.3, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(shape, generator=g, dtype=torch.float64)
    x = y + noise * torch.randn(shape, generator=g, dtype=torch.float64)
    return x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)


def _rho_loop(x, y, eps):
    "Eq. (1) transcribed, one image at a time, in Python floats."
    out = []
    for a, b in zip(x.detach().double().flatten(1).tolist(), y.detach().double().flatten(1).tolist()):
        n = len(a)
        ma, mb = math.fsum(a) / n, math.fsum(b) / n
        sab = math.fsum((u - ma) * (v - mb) for u, v in zip(a, b))
        saa = math.fsum((u - ma) ** 2 for u in a)
        sbb = math.fsum((v - mb) ** 2 for v in b)
        out.append(sab / (math.sqrt(saa) * math.sqrt(sbb) + eps))
    return torch.tensor(out, dtype=torch.float64)


def _official(x1, x2, eps=1e-6):
    """The official code (image_restoration_model.py), transcribed: pearson_correlation_loss + compute_correlation_loss
    (its eps is 1e-6; `eps` lets the degenerate case of eps=0 be compared)."""
    b = x1.shape[0]
    x1, x2 = x1.reshape(b, -1), x2.reshape(b, -1)
    m1, m2 = x1.mean(dim=-1, keepdim=True), x2.mean(dim=-1, keepdim=True)
    num = ((x1 - m1) * (x2 - m2)).sum(dim=-1, keepdim=True)
    s1 = (x1 - m1).pow(2).sum(dim=-1, keepdim=True).sqrt()
    s2 = (x2 - m2).pow(2).sum(dim=-1, keepdim=True).sqrt()
    pearson = (1.0 - num.div(s1 * s2 + eps)) / 2.0
    return pearson[~pearson.isnan() * ~pearson.isinf()].mean()


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("shape", SHAPES)
def test_equals_torchmetrics_pearson_corrcoef(shape):
    x, y = _data(shape)
    tm = pearson_corrcoef(x.flatten(1).T, y.flatten(1).T)
    torch.testing.assert_close(pearson_correlation(x, y), tm, rtol=0, atol=1e-6)
    torch.testing.assert_close(pearson_correlation(x, y, eps=0), tm, rtol=0, atol=1e-12)
    # and one image at a time, the flattened image as a 1-D series
    for i in range(shape[0]):
        one = pearson_corrcoef(x[i].flatten(), y[i].flatten())
        assert abs(pearson_correlation(x[i : i + 1], y[i : i + 1]).item() - one.item()) <= 1e-6


@pytest.mark.parametrize("noise", [0.05, 1.0, 10.0])
def test_equals_torchmetrics_across_correlations(noise):
    x, y = _data((8, 3, 10, 10), noise=noise, seed=3)
    tm = pearson_corrcoef(x.flatten(1).T, y.flatten(1).T)
    torch.testing.assert_close(pearson_correlation(x, y), tm, rtol=0, atol=1e-6)
    assert tm.min() < 0.2 if noise == 10.0 else tm.min() > 0.2  # the cases span weak and strong correlations


def test_equals_corrcoef_scipy_and_loop():
    scipy_stats = pytest.importorskip("scipy.stats")
    x, y = _data((5, 2, 9, 9), seed=1)
    ref = torch.stack([torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] for a, b in zip(x, y)])
    torch.testing.assert_close(pearson_correlation(x, y, eps=0), ref, rtol=0, atol=1e-13)
    sp = torch.tensor([scipy_stats.pearsonr(a.flatten().numpy(), b.flatten().numpy())[0] for a, b in zip(x, y)],
                      dtype=torch.float64)
    torch.testing.assert_close(pearson_correlation(x, y, eps=0), sp, rtol=0, atol=1e-13)
    for eps in (0.0, 1e-6, 0.5, 10.0):
        torch.testing.assert_close(pearson_correlation(x, y, eps=eps), _rho_loop(x, y, eps), rtol=1e-12, atol=1e-14)


def test_loss_equals_official_code_and_loop():
    x, y = _data((7, 3, 6, 5), seed=2)
    torch.testing.assert_close(pearson_loss(x, y), _official(x, y), rtol=1e-13, atol=1e-15)
    for eps in (0.0, 1e-6, 0.3):
        torch.testing.assert_close(pearson_loss(x, y, eps=eps, reduction="none"), (1 - _rho_loop(x, y, eps)) / 2,
                                   rtol=1e-12, atol=1e-14)
    # the training loss of the official optimize_parameters: L1Loss (mean) + the Pearson loss
    torch.testing.assert_close(l1_pearson_loss(x, y), F.l1_loss(x, y) + _official(x, y), rtol=1e-13, atol=1e-15)


def test_hand_value():
    # centred (-1, 0, 1) and (-1, 1, 0): rho = 1 / (sqrt 2 sqrt 2) = 1/2; with eps: 1 / (2 + eps)
    x, y = torch.tensor([[1.0, 2, 3]], dtype=torch.float64), torch.tensor([[1.0, 3, 2]], dtype=torch.float64)
    assert pearson_correlation(x, y, eps=0).item() == pytest.approx(0.5, abs=1e-15)
    assert pearson_correlation(x, y, eps=0.5).item() == pytest.approx(1 / 2.5, abs=1e-15)
    assert pearson_loss(x, y, eps=0.5).item() == pytest.approx((1 - 1 / 2.5) / 2, abs=1e-15)
    # per-image L1: (0 + 1 + 1) / 3
    assert l1_pearson_loss(x, y, eps=0.5).item() == pytest.approx(2 / 3 + (1 - 1 / 2.5) / 2, abs=1e-15)


# ---------------------------------------------------------------- defaults
def test_default_eps_is_1e_6():
    # images with tiny values: the norms' product is ~1e-6, where eps decides the value
    x, y = _data((3, 1, 4, 4), seed=4)
    x, y = 1e-4 * x, 1e-4 * y
    for eps_default, eps_other in ((pearson_correlation(x, y), pearson_correlation(x, y, eps=1e-5)),):
        torch.testing.assert_close(eps_default, pearson_correlation(x, y, eps=1e-6), rtol=0, atol=0)
        assert (eps_default - eps_other).abs().min() > 1e-3
    torch.testing.assert_close(pearson_loss(x, y), pearson_loss(x, y, eps=1e-6), rtol=0, atol=0)
    assert abs(pearson_loss(x, y) - pearson_loss(x, y, eps=0)) > 1e-3
    torch.testing.assert_close(l1_pearson_loss(x, y), l1_pearson_loss(x, y, eps=1e-6), rtol=0, atol=0)
    assert abs(l1_pearson_loss(x, y) - l1_pearson_loss(x, y, eps=0)) > 1e-3
    assert PearsonLoss().eps == 1e-6 and L1PearsonLoss().eps == 1e-6
    torch.testing.assert_close(PearsonLoss()(x, y), pearson_loss(x, y, eps=1e-6), rtol=0, atol=0)
    torch.testing.assert_close(L1PearsonLoss()(x, y), l1_pearson_loss(x, y, eps=1e-6), rtol=0, atol=0)


def test_default_weights_reduction_and_drop():
    x, y = _data(seed=5)
    l1, pear = F.l1_loss(x, y), pearson_loss(x, y)
    torch.testing.assert_close(l1_pearson_loss(x, y), l1 + pear, rtol=1e-14, atol=0)
    torch.testing.assert_close(l1_pearson_loss(x, y, w_pix=2.0), 2 * l1 + pear, rtol=1e-14, atol=0)
    torch.testing.assert_close(l1_pearson_loss(x, y, w_pear=3.0), l1 + 3 * pear, rtol=1e-14, atol=0)
    torch.testing.assert_close(l1_pearson_loss(x, y, w_pix=0.0, w_pear=0.0), torch.zeros((), dtype=torch.float64))
    assert pearson_loss(x, y).ndim == 0 and l1_pearson_loss(x, y).ndim == 0  # default reduction: mean
    torch.testing.assert_close(pearson_loss(x, y), pearson_loss(x, y, reduction="none").mean(), rtol=1e-14, atol=0)
    m = L1PearsonLoss()
    assert (m.w_pix, m.w_pear, m.reduction) == (1.0, 1.0, "mean")
    p = PearsonLoss()
    assert (p.reduction, p.drop_nonfinite) == ("mean", True)
    # drop_nonfinite defaults to True: an undefined image is dropped, not raised
    flat = torch.cat([torch.full((1, 3, 8, 8), 0.5, dtype=torch.float64), x[1:]])
    torch.testing.assert_close(pearson_loss(flat, y, eps=0), pearson_loss(flat, y, eps=0, drop_nonfinite=True))
    torch.testing.assert_close(PearsonLoss(eps=0)(flat, y), pearson_loss(flat, y, eps=0))


# ---------------------------------------------------------------- invariances, bounds, gradient
@pytest.mark.parametrize("alpha,beta", [(1e-2, 0.0), (0.5, 3.0), (7.0, -2.0), (1e3, 1e2)])
def test_gain_offset_invariance_and_sign(alpha, beta):
    x, y = _data()
    ref = pearson_loss(x, y, eps=0, reduction="none")
    torch.testing.assert_close(pearson_loss(alpha * x + beta, y, eps=0, reduction="none"), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pearson_loss(x, alpha * y + beta, eps=0, reduction="none"), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pearson_loss(-alpha * x + beta, y, eps=0, reduction="none"), 1 - ref, rtol=1e-10,
                               atol=1e-12)


def test_limits_and_bounds():
    x, y = _data((20, 2, 5, 5), seed=6, noise=3.0)
    torch.testing.assert_close(pearson_loss(x, x, reduction="none"), torch.zeros(20, dtype=torch.float64), rtol=0,
                               atol=1e-7)
    torch.testing.assert_close(pearson_loss(-x, x, eps=0, reduction="none"), torch.ones(20, dtype=torch.float64))
    v = pearson_loss(x, y, reduction="none")
    assert (v >= 0).all() and (v <= 1).all() and v.min() < 0.45 and v.max() > 0.5
    assert pearson_correlation(x, x).max() < 1  # eps > 0 keeps rho strictly inside (-1, 1)
    # symmetric in its two arguments
    torch.testing.assert_close(pearson_correlation(x, y), pearson_correlation(y, x), rtol=0, atol=1e-15)


def test_gradient_identities_eq4():
    x, y = _data(seed=7)
    x.requires_grad_(True)
    pearson_correlation(x, y, eps=0).sum().backward()
    g = x.grad.flatten(1)
    xc = (x.detach() - x.detach().mean((1, 2, 3), keepdim=True)).flatten(1)
    rho = pearson_correlation(x.detach(), y, eps=0)
    zero = torch.zeros(6, dtype=torch.float64)
    torch.testing.assert_close(g.sum(1), zero, rtol=0, atol=1e-12)
    torch.testing.assert_close((g * xc).sum(1), zero, rtol=0, atol=1e-12)
    torch.testing.assert_close(g.norm(dim=1), (1 - rho**2).sqrt() / xc.norm(dim=1), rtol=1e-10, atol=0)
    # direction: (v - rho u) / |x - x̄|
    yc = (y - y.mean((1, 2, 3), keepdim=True)).flatten(1)
    u, v = xc / xc.norm(dim=1, keepdim=True), yc / yc.norm(dim=1, keepdim=True)
    torch.testing.assert_close(g, (v - rho[:, None] * u) / xc.norm(dim=1, keepdim=True), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- degenerate images
def test_constant_image_with_eps_costs_one_half():
    x, y = _data(seed=8)
    x = x.clone()
    x[2] = 0.3
    v = pearson_loss(x, y, reduction="none")
    assert v[2].item() == pytest.approx(0.5, abs=1e-9)
    assert torch.isfinite(v).all()


def test_constant_image_without_eps_is_dropped_or_raises():
    x, y = _data(seed=9)
    x = x.clone()
    x[1] = 0.5  # exactly representable: x - mean(x) == 0
    x.requires_grad_(True)
    none = pearson_loss(x, y, eps=0, reduction="none")
    assert torch.isnan(none[1]) and torch.isfinite(none[[0, 2, 3, 4, 5]]).all()
    keep = none[[0, 2, 3, 4, 5]].detach()
    torch.testing.assert_close(pearson_loss(x, y, eps=0), keep.mean(), rtol=1e-14, atol=0)
    torch.testing.assert_close(pearson_loss(x, y, eps=0, reduction="sum"), keep.sum(), rtol=1e-14, atol=0)
    torch.testing.assert_close(pearson_loss(x, y, eps=0), _official(x.detach(), y, eps=0), rtol=1e-14, atol=0)
    pearson_loss(x, y, eps=0).backward()
    assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all()  # no 0/0 in the backward pass either
    torch.testing.assert_close(l1_pearson_loss(x, y, eps=0), F.l1_loss(x, y) + keep.mean())
    with pytest.raises(ValueError, match=r"^input: the Pearson correlation of image\(s\) \[1\]"):
        pearson_loss(x, y, eps=0, drop_nonfinite=False)
    with pytest.raises(ValueError, match="drop_nonfinite=True leaves such images out"):
        PearsonLoss(eps=0, drop_nonfinite=False)(x, y)
    with pytest.raises(ValueError, match=r"^target: the Pearson"):
        pearson_loss(y, x.detach(), eps=0, drop_nonfinite=False)
    with pytest.raises(ValueError, match=r"^x: the Pearson correlation"):
        pearson_correlation(x, y, eps=0)
    with pytest.raises(ValueError, match=r"^y: the Pearson correlation"):
        pearson_correlation(y, x.detach(), eps=0)
    assert pearson_correlation(x, y)[1].item() == 0.0  # eps > 0: rho = 0 / eps


def test_every_image_undefined_raises():
    x = torch.full((3, 4), 0.25, dtype=torch.float64)
    y = torch.rand(3, 4, dtype=torch.float64)
    for reduction in ("mean", "sum", "none"):
        with pytest.raises(ValueError, match=r"^input: the Pearson correlation of image\(s\) \[0, 1, 2\]"):
            pearson_loss(x, y, eps=0, reduction=reduction)
    assert pearson_loss(x, y).item() == pytest.approx(0.5)


def test_overflow_is_undefined_not_nan():
    x, y = _data((3, 1, 4, 4), dtype=torch.float32, seed=10)
    big = x.clone()
    big[0] = big[0] * 1e30  # its squares overflow float32
    v = pearson_loss(big, y, reduction="none")
    assert torch.isnan(v[0]) and torch.isfinite(v[1:]).all()
    torch.testing.assert_close(pearson_loss(big, y), v[1:].mean())


# ---------------------------------------------------------------- gradcheck
def test_gradcheck():
    x, y = _data((3, 2, 3, 3), seed=11)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: pearson_correlation(a, b), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: pearson_correlation(a, b, eps=0), (x, y))
    for r in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(lambda a, b: pearson_loss(a, b, reduction=r), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: l1_pearson_loss(a, b, w_pix=0.7, w_pear=1.3, reduction="none"), (x, y))


# ---------------------------------------------------------------- reductions, modules, dtypes, devices
@pytest.mark.parametrize("fn", [pearson_loss, l1_pearson_loss])
def test_reductions(fn):
    x, y = _data()
    none = fn(x, y, reduction="none")
    assert none.shape == (6,)
    torch.testing.assert_close(fn(x, y, reduction="mean"), none.mean(), rtol=1e-14, atol=0)
    torch.testing.assert_close(fn(x, y, reduction="sum"), none.sum(), rtol=1e-14, atol=0)


def test_l1_pearson_none_and_sum_are_per_image():
    x, y = _data(seed=12)
    l1 = (x - y).abs().flatten(1).mean(1)
    pear = pearson_loss(x, y, reduction="none")
    torch.testing.assert_close(l1_pearson_loss(x, y, 2.0, 3.0, reduction="none"), 2 * l1 + 3 * pear)
    torch.testing.assert_close(l1_pearson_loss(x, y, 2.0, 3.0, reduction="sum"), 2 * l1.sum() + 3 * pear.sum())


def test_functional_equals_module_with_every_setting():
    x, y = _data(seed=13)
    for kw in ({}, {"eps": 0.25}, {"reduction": "sum"}, {"reduction": "none"}, {"drop_nonfinite": False}):
        torch.testing.assert_close(PearsonLoss(**kw)(x, y), pearson_loss(x, y, **kw), rtol=0, atol=0)
    for kw in ({}, {"w_pix": 0.3}, {"w_pear": 2.5}, {"eps": 0.25}, {"reduction": "sum"}, {"reduction": "none"}):
        torch.testing.assert_close(L1PearsonLoss(**kw)(x, y), l1_pearson_loss(x, y, **kw), rtol=0, atol=0)
    flat = torch.cat([torch.full((1, 3, 8, 8), 0.5, dtype=torch.float64), x[1:]])
    with pytest.raises(ValueError, match="^input:"):
        PearsonLoss(eps=0, drop_nonfinite=False)(flat, y)
    assert repr(PearsonLoss()) == "PearsonLoss(eps=1e-06, reduction='mean', drop_nonfinite=True)"
    assert repr(L1PearsonLoss(w_pix=0.5)) == "L1PearsonLoss(w_pix=0.5, w_pear=1.0, eps=1e-06, reduction='mean')"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_devices(dtype, device):
    x64, y64 = _data(device=device)
    x, y = x64.to(dtype).requires_grad_(True), y64.to(dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for fn in (pearson_loss, l1_pearson_loss):
        v = fn(x, y)
        assert v.dtype == dtype and v.device.type == device
        torch.testing.assert_close(v.double(), fn(x64, y64), rtol=tol, atol=tol)
    rho = pearson_correlation(x, y)
    assert rho.dtype == dtype and rho.shape == (6,)
    pearson_loss(x, y).backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()


def test_half_inputs_computed_in_float32_and_mixed_dtypes_promote():
    x, y = _data(seed=14)
    v16 = pearson_loss(x.half(), y.half())
    assert v16.dtype == torch.float16
    torch.testing.assert_close(v16.double(), pearson_loss(x, y), rtol=0, atol=2e-3)
    assert pearson_loss(x.float(), y).dtype == torch.float64
    assert pearson_correlation(x.float(), y).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vb = pearson_loss(x.float(), y.float())
    assert vb.dtype == torch.float32
    torch.testing.assert_close(vb.double(), pearson_loss(x, y), rtol=0, atol=1e-6)  # autocast is off inside


def test_float32_large_offset_is_stable():
    x, y = _data(seed=15)
    ref = pearson_loss(x, y, reduction="none")
    got = pearson_loss((x + 1e3).float(), (y - 1e3).float(), reduction="none")  # centred sums: no cancellation
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=1e-4)


# ---------------------------------------------------------------- bad inputs
BAD = [
    (lambda x, y: (x.clone().index_put_((torch.tensor([0]),), torch.tensor(float("nan"), dtype=x.dtype)), y),
     r"^input: expected finite values"),
    (lambda x, y: (x, y.clone().index_put_((torch.tensor([1]),), torch.tensor(float("inf"), dtype=y.dtype))),
     r"^target: expected finite values"),
    (lambda x, y: (x[:, :2], y), r"^input and target must have the same shape"),
    (lambda x, y: (x[:0], y[:0]), r"^input: expected at least 1 sample"),
    (lambda x, y: (x.long(), y), r"^input: expected a floating-point tensor"),
    (lambda x, y: (x, y.long()), r"^target: expected a floating-point tensor"),
    (lambda x, y: (x.flatten(), y.flatten()), r"^input: expected a batch of images"),
    (lambda x, y: (x[:, :1, :1, :1], y[:, :1, :1, :1]), r"^input: a correlation needs at least 2 values per image"),
]


@pytest.mark.parametrize("fn", [pearson_loss, l1_pearson_loss, PearsonLoss(), L1PearsonLoss()])
@pytest.mark.parametrize("make,msg", BAD)
def test_bad_inputs(fn, make, msg):
    x, y = _data()
    a, b = make(x, y)
    with pytest.raises(ValueError, match=msg):
        fn(a, b)


@pytest.mark.parametrize("make,msg", BAD)
def test_bad_inputs_pearson_correlation(make, msg):
    x, y = _data()
    a, b = make(x, y)
    msg = msg.replace("input and target", "x and y").replace("^input", "^x").replace("^target", "^y")
    with pytest.raises(ValueError, match=msg):
        pearson_correlation(a, b)


def test_not_a_tensor_is_a_type_error():
    x, _ = _data()
    with pytest.raises(TypeError, match="^target"):
        pearson_loss(x, x.tolist())


@pytest.mark.parametrize("eps", [-1e-6, float("nan"), float("inf"), "a"])
def test_bad_eps(eps):
    x, y = _data()
    for call in (lambda: pearson_correlation(x, y, eps=eps), lambda: pearson_loss(x, y, eps=eps),
                 lambda: l1_pearson_loss(x, y, eps=eps), lambda: PearsonLoss(eps=eps), lambda: L1PearsonLoss(eps=eps)):
        with pytest.raises(ValueError, match="^eps:"):
            call()


@pytest.mark.parametrize("name", ["w_pix", "w_pear"])
@pytest.mark.parametrize("w", [-0.1, float("nan"), float("inf")])
def test_bad_weights(name, w):
    x, y = _data()
    with pytest.raises(ValueError, match=f"^{name}:"):
        l1_pearson_loss(x, y, **{name: w})
    with pytest.raises(ValueError, match=f"^{name}:"):
        L1PearsonLoss(**{name: w})


@pytest.mark.parametrize("flag", [1, 0, "yes", None])
def test_bad_drop_nonfinite(flag):
    x, y = _data()
    with pytest.raises(ValueError, match="^drop_nonfinite:"):
        pearson_loss(x, y, drop_nonfinite=flag)
    with pytest.raises(ValueError, match="^drop_nonfinite:"):
        PearsonLoss(drop_nonfinite=flag)


def test_bad_reduction():
    x, y = _data()
    for call in (lambda: pearson_loss(x, y, reduction="avg"), lambda: l1_pearson_loss(x, y, reduction="avg"),
                 lambda: PearsonLoss(reduction="avg"), lambda: L1PearsonLoss(reduction="avg")):
        with pytest.raises(ValueError, match="reduction"):
            call()


def test_smallest_legal_inputs():
    x = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert pearson_correlation(x, x, eps=0).item() == pytest.approx(1.0)
    assert pearson_loss(x, 1 - x, eps=0).item() == pytest.approx(1.0)
    assert l1_pearson_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- mutation pass (#7): the gaps its survivors showed
def test_zero_weights_and_eps_are_legal_in_the_module():
    m = L1PearsonLoss(w_pix=0.0, w_pear=0.0, eps=0.0)
    assert (m.w_pix, m.w_pear, m.eps) == (0.0, 0.0, 0.0)
    x, y = _data(seed=16)
    assert m(x, y).item() == 0.0
    torch.testing.assert_close(L1PearsonLoss(w_pix=0.0, eps=0.0)(x, y), pearson_loss(x, y, eps=0.0), rtol=0, atol=0)


def test_undefined_messages_end_as_documented():
    x = torch.full((3, 4), 0.25, dtype=torch.float64)
    y = torch.rand(3, 4, dtype=torch.float64)
    tail = r"\(0/0: a constant image with eps=0, or values too large for torch.float64\)"
    with pytest.raises(ValueError, match=r"^input: the Pearson correlation of image\(s\) \[0, 1, 2\] is undefined " + tail + "$"):
        pearson_loss(x, y, eps=0)  # drop_nonfinite=True, nothing left to average: no hint about the option
    with pytest.raises(ValueError, match=tail + "; drop_nonfinite=True leaves such images out$"):
        pearson_loss(x, y, eps=0, drop_nonfinite=False)
    many = torch.full((12, 4), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"image\(s\) \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\] is undefined"):
        pearson_loss(many, torch.rand(12, 4, dtype=torch.float64), eps=0)


def test_undefined_message_names_input_when_any_of_its_images_is_constant():
    x, y = _data((3, 5), seed=17)
    x, y = x.clone(), y.clone()
    x[0] = 0.5  # image 0: a constant restored image
    y[1] = 0.25  # image 1: a constant ground truth
    with pytest.raises(ValueError, match=r"^input: the Pearson correlation of image\(s\) \[0, 1\]"):
        pearson_loss(x, y, eps=0, drop_nonfinite=False)


def test_too_small_images_message_gives_the_image_shape():
    with pytest.raises(ValueError, match=r"^input: a correlation needs at least 2 values per image, got images of shape \(1, 1\)$"):
        pearson_loss(torch.zeros(3, 1, 1), torch.zeros(3, 1, 1))


def test_mixed_precision_is_computed_in_the_wider_dtype_and_half_returned_as_half():
    x, y = _data(seed=18)
    for a, b in ((x.float(), y), (x, y.float())):
        got = pearson_correlation(a, b)
        assert got.dtype == torch.float64 and torch.equal(got, pearson_correlation(a.double(), b.double()))
    assert pearson_correlation(x.half(), y.half()).dtype == torch.float16


def test_registry_example_shape_and_dtype():
    from lossbook.vision import histoformer_pearson as hp
    (x, t), kw = hp._images_example(2, torch.float32, "cpu", 0)
    assert x.shape == t.shape == (2, 3, 8, 8) and x.dtype == t.dtype == torch.float32 and kw == {}
