"""Tests for lossbook.classification.ensloss (Dai 2024, EnsLoss, and the fixed convex calibrated margin losses).

No library implements EnsLoss: the reference is a plain float64 loop transcribed from the official `ensLoss.forward`
(statmlben/ensLoss, losses.py) with the same normal draws; the fixed losses are checked against
`F.binary_cross_entropy_with_logits`, `F.soft_margin_loss` and their formulas.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.classification.ensloss import (
    EnsLoss,
    ExpMarginLoss,
    HingeMarginLoss,
    LogisticMarginLoss,
    SqHingeMarginLoss,
    box_cox_inverse,
    calibrated_loss_derivatives,
    ensloss,
    exp_margin_loss,
    hinge_margin_loss,
    implied_loss_curve,
    logistic_margin_loss,
    margins,
    sqhinge_margin_loss,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
FIXED = [logistic_margin_loss, hinge_margin_loss, sqhinge_margin_loss, exp_margin_loss]


def _data(B=16, dtype=torch.float64, seed=0, device="cpu", scale=2.0):
    g = torch.Generator().manual_seed(seed)
    f = scale * torch.randn(B, generator=g, dtype=torch.float64)
    t = torch.randint(0, 2, (B,), generator=g)
    return f.to(device=device, dtype=dtype), t.to(device)


def _reference_derivatives(z, seed, lam=0.0, clip=-1.0, tail=True, anchor=False, shift=1e-6):
    "The official generator as a loop over Python floats (float64), with the same N(0, 1) draws."
    z = list(z) + ([0.0] if anchor else [])
    eps = torch.randn(len(z), generator=torch.Generator().manual_seed(seed), dtype=torch.float64).tolist()
    if lam == 0:
        raw = [-math.exp(e) for e in eps]
    else:
        raw = [-(max(1 + lam * e, 0.0) ** (1 / lam)) for e in eps]
    raw = sorted(raw)
    if clip is not None:
        raw = [max(r, clip) for r in raw]
    order = sorted(range(len(z)), key=lambda i: z[i])  # stable
    g = [0.0] * len(z)
    for k, i in enumerate(order):
        g[i] = raw[k]
    if tail:
        g = [gi / zi if zi > 1 else gi for gi, zi in zip(g, z)]
    g = [gi - shift for gi in g]
    return torch.tensor(g[: len(z) - 1] if anchor else g, dtype=torch.float64)


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("kw", [{}, {"tail": False}, {"lam": 0.5}, {"lam": 2.0, "clip": None}, {"clip": -0.5},
                                {"add_zero_anchor": True}, {"shift": 0.0}, {"shift": 0.1, "tail": False}])
@pytest.mark.parametrize("B", [1, 2, 7, 64])
def test_derivatives_match_official_loop(kw, B):
    f, t = _data(B, seed=B)
    z = margins(f, t)
    got = calibrated_loss_derivatives(z, seed=5, **kw)
    ref = _reference_derivatives(z.tolist(), 5, kw.get("lam", 0.0), kw.get("clip", -1.0), kw.get("tail", True),
                                 kw.get("add_zero_anchor", False), kw.get("shift", 1e-6))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-15)


def test_defaults_are_the_official_ones():
    z = margins(*_data(40, seed=1))
    want = calibrated_loss_derivatives(z, lam=0.0, clip=-1.0, tail=True, add_zero_anchor=False, shift=1e-6, seed=2)
    assert torch.equal(calibrated_loss_derivatives(z, seed=2), want)
    for other in ({"lam": 0.1}, {"clip": -2.0}, {"tail": False}, {"add_zero_anchor": True}, {"shift": 1e-3}):
        assert not torch.equal(calibrated_loss_derivatives(z, seed=2, **other), want), other
    f, t = _data(40, seed=1)
    assert torch.equal(ensloss(f, t, seed=3), (calibrated_loss_derivatives(z, seed=3) * z).mean())  # reduction mean
    for other in ({"lam": 0.1}, {"clip": -2.0}, {"tail": False}, {"add_zero_anchor": True}):
        assert not torch.equal(ensloss(f, t, seed=3, **other), ensloss(f, t, seed=3)), other
    assert ExpMarginLoss().max_exponent == 50.0
    m = EnsLoss()
    assert (m.lam, m.tail, m.add_zero_anchor, m.clip, m.reduction, m.gather_distributed) == (0.0, True, False, -1.0, "mean", False)


def test_ensloss_value_and_gradient_identity():
    f, t = _data(33, seed=4)
    f.requires_grad_(True)
    z = margins(f, t)
    g = _reference_derivatives(z.tolist(), 9)
    v = ensloss(f, t, seed=9)
    torch.testing.assert_close(v, (g * z.detach()).mean(), rtol=1e-12, atol=1e-15)
    (grad,) = torch.autograd.grad(v, f)
    torch.testing.assert_close(grad, g * (2 * t - 1) / 33, rtol=1e-12, atol=1e-15)  # Eq. (9) exactly


def test_gradcheck_where_the_derivative_is_locally_constant():
    f, t = _data(12, seed=6)
    f = f.clone().requires_grad_(True)
    # tail off: the surrogate is linear in the margins for a fixed draw; margins are distinct, so ranks do not move
    assert torch.autograd.gradcheck(lambda x: ensloss(x, t, tail=False, seed=1), (f,), eps=1e-7, atol=1e-8)
    for fn in FIXED:
        assert torch.autograd.gradcheck(lambda x: fn(x + 0.01, t), (f,), eps=1e-6, atol=1e-6)


# ---------------------------------------------------------------- properties of the generator
@pytest.mark.parametrize("seed", range(5))
def test_c1_c2_clip_and_tail_bound(seed):
    z = 3 * torch.randn(500, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    order = z.argsort()
    for tail in (True, False):
        g = calibrated_loss_derivatives(z, tail=tail, seed=seed)
        assert (g < 0).all()  # (C2)
        assert (g[order].diff() >= 0).all()  # (C1): holds with the tail too (a negative g divided by z > 1 moves up)
        assert (g >= -1 - 1e-6 - 1e-15).all()
    g = calibrated_loss_derivatives(z, seed=seed)
    assert (g[z > 1].abs() <= 1 / z[z > 1] + 1e-6).all()


def test_rank_invariance_only_without_tail():
    z = 2 * torch.randn(50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = torch.exp(z) - 3  # strictly increasing
    assert torch.equal(calibrated_loss_derivatives(z, tail=False, seed=1), calibrated_loss_derivatives(w, tail=False, seed=1))
    assert not torch.equal(calibrated_loss_derivatives(z, seed=1), calibrated_loss_derivatives(w, seed=1))


def test_seed_generator_and_global_rng():
    z = torch.randn(20, dtype=torch.float64)
    assert torch.equal(calibrated_loss_derivatives(z, seed=3), calibrated_loss_derivatives(z, seed=3))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = calibrated_loss_derivatives(z, generator=g1)
    assert torch.equal(a, calibrated_loss_derivatives(z, seed=3))  # seed s == a fresh generator seeded s
    assert torch.equal(a, calibrated_loss_derivatives(z, generator=g2))
    assert not torch.equal(a, calibrated_loss_derivatives(z, generator=g1))  # the stream advances
    assert torch.equal(calibrated_loss_derivatives(z, generator=torch.Generator().manual_seed(0), seed=3), a)  # seed wins
    torch.manual_seed(7)
    b = calibrated_loss_derivatives(z)
    torch.manual_seed(7)
    assert torch.equal(b, calibrated_loss_derivatives(z))  # None: torch's global CPU generator
    m = EnsLoss(generator=torch.Generator().manual_seed(3))
    f, t = _data(20)
    assert torch.equal(m(f, t), ensloss(f, t, seed=3))
    assert not torch.equal(m(f, t), ensloss(f, t, seed=3))


def test_batched_rows_are_independent_draws():
    z = torch.randn(3, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = calibrated_loss_derivatives(z, seed=4)
    eps = torch.randn(3, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for i in range(3):
        raw = (-eps[i].exp()).sort().values.clamp_min(-1)
        ref = torch.empty(10, dtype=torch.float64)
        ref[z[i].argsort()] = raw
        ref = torch.where(z[i] > 1, ref / z[i], ref) - 1e-6
        torch.testing.assert_close(g[i], ref, rtol=1e-12, atol=1e-15)
    assert not torch.equal(g[0].sort().values, g[1].sort().values)


def test_ties_keep_their_order():
    z = torch.zeros(6, dtype=torch.float64)  # all margins tied (an initialisation with zero scores)
    g = calibrated_loss_derivatives(z, seed=0)
    assert (g.diff() >= 0).all()  # stable sort: the k-th sample gets the k-th smallest derivative


def test_box_cox_inverse_and_large_lambda_moments():
    e = torch.linspace(-4, 4, 81, dtype=torch.float64)
    torch.testing.assert_close(box_cox_inverse(e), e.exp())
    torch.testing.assert_close(box_cox_inverse(e, 0.5), (1 + 0.5 * e).clamp_min(0) ** 2)
    torch.testing.assert_close(box_cox_inverse(e, 1e-8), e.exp(), rtol=1e-6, atol=1e-6)
    # lambda = 1: -g_raw = max(1 + eps, 0); E = Phi(1) + phi(1), E[X^2] = E[(1 + eps)^2; eps > -1] = 2 Phi(1) + phi(1)
    z = torch.randn(400000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = -calibrated_loss_derivatives(z, lam=1.0, clip=None, tail=False, shift=0.0, seed=2)
    Phi, phi = 0.5 * (1 + math.erf(1 / math.sqrt(2))), math.exp(-0.5) / math.sqrt(2 * math.pi)
    assert abs(g.mean().item() - (Phi + phi)) < 0.01
    assert abs(g.pow(2).mean().item() - (2 * Phi + phi)) < 0.02
    # lambda = 0: -g_raw is log-normal, mean e^{1/2} (clip off)
    g0 = -calibrated_loss_derivatives(z, clip=None, tail=False, shift=0.0, seed=3)
    assert abs(g0.mean().item() - math.exp(0.5)) < 0.02
    # with the clip at -1, half the draws sit on it
    gc = calibrated_loss_derivatives(z, tail=False, shift=0.0, seed=3)
    assert abs((gc == -1).double().mean().item() - 0.5) < 0.01


def test_implied_loss_curve():
    z = torch.linspace(-3, 3, 64, dtype=torch.float64)
    g = calibrated_loss_derivatives(z, tail=False, seed=0)
    phi = implied_loss_curve(z, g)
    slopes = phi.diff() / z.diff()
    torch.testing.assert_close(slopes, (g[1:] + g[:-1]) / 2)
    assert (slopes.diff() >= -1e-12).all() and phi[-1] == 0 and (phi.diff() < 0).all()
    torch.testing.assert_close(implied_loss_curve(z, torch.full_like(z, -1.0)), 3 - z)  # slope -1: a line
    with pytest.raises(ValueError, match=r"^z_sorted: expected margins sorted ascending"):
        implied_loss_curve(z.flip(0), g)
    with pytest.raises(ValueError, match=r"^z_sorted and g_sorted: expected the same shape"):
        implied_loss_curve(z, g[:-1])
    with pytest.raises(ValueError, match=r"^z_sorted: expected at least 2"):
        implied_loss_curve(z[:1], g[:1])


# ---------------------------------------------------------------- the fixed losses
def test_fixed_losses_against_torch_and_formulas():
    f, t = _data(50, seed=3)
    y = 2 * t.double() - 1
    torch.testing.assert_close(logistic_margin_loss(f, t), F.binary_cross_entropy_with_logits(f, t.double()))
    torch.testing.assert_close(logistic_margin_loss(f, t), F.soft_margin_loss(f, y))
    torch.testing.assert_close(hinge_margin_loss(f, t, reduction="none"), (1 - y * f).clamp_min(0))
    torch.testing.assert_close(sqhinge_margin_loss(f, t, reduction="none"), (1 - y * f).clamp_min(0) ** 2)
    torch.testing.assert_close(exp_margin_loss(f, t, reduction="none"), torch.exp(-y * f))


def test_exp_loss_linear_continuation():
    t = torch.ones(4, dtype=torch.long)
    f = torch.tensor([-49.0, -51.0, -1e3, -1e6], dtype=torch.float64)
    v = exp_margin_loss(f, t, reduction="none")
    torch.testing.assert_close(v[0], torch.tensor(math.exp(49.0), dtype=torch.float64))
    torch.testing.assert_close(v[1], torch.tensor(math.exp(50.0) * 2, dtype=torch.float64))
    assert torch.isfinite(v).all() and torch.isfinite(exp_margin_loss(f.float(), t))
    v5 = exp_margin_loss(torch.tensor([-4.0, -7.0]), torch.ones(2, dtype=torch.long), max_exponent=5.0, reduction="none")
    torch.testing.assert_close(v5, torch.tensor([math.exp(4.0), math.exp(5.0) * 3]))
    # C^1 at the junction: the slopes agree
    x = torch.tensor([-50.0], dtype=torch.float64, requires_grad=True)
    (d_left,) = torch.autograd.grad(exp_margin_loss(x + 1e-7, torch.ones(1, dtype=torch.long)), x)
    (d_right,) = torch.autograd.grad(exp_margin_loss(x - 1e-7, torch.ones(1, dtype=torch.long)), x)
    torch.testing.assert_close(d_left, d_right, rtol=1e-5, atol=0)


def test_fixed_losses_are_cc():
    z = torch.linspace(-3, 3, 601, dtype=torch.float64, requires_grad=True)
    ones = torch.ones(601, dtype=torch.long)
    for fn in FIXED:
        (d,) = torch.autograd.grad(fn(z, ones, reduction="sum"), z)
        assert (d.diff() >= -1e-12).all() and d[300] < 0, fn.__name__


# ---------------------------------------------------------------- API: reductions, modules, shapes, dtypes, devices
@pytest.mark.parametrize("fn", FIXED + [lambda f, t, **k: ensloss(f, t, seed=0, **k)])
def test_reductions(fn):
    f, t = _data(9)
    none = fn(f, t, reduction="none")
    assert none.shape == (9,)
    torch.testing.assert_close(fn(f, t), none.mean())
    torch.testing.assert_close(fn(f, t, reduction="sum"), none.sum())
    with pytest.raises(ValueError, match=r"^reduction: expected one of"):
        fn(f, t, reduction="avg")


def test_modules_equal_functions_and_store_arguments():
    f, t = _data(10)
    for mod, fn in ((LogisticMarginLoss, logistic_margin_loss), (HingeMarginLoss, hinge_margin_loss),
                    (SqHingeMarginLoss, sqhinge_margin_loss), (ExpMarginLoss, exp_margin_loss)):
        assert torch.equal(mod()(f, t), fn(f, t))
        assert torch.equal(mod(reduction="sum")(f, t), fn(f, t, reduction="sum"))
    assert torch.equal(ExpMarginLoss(max_exponent=0.5)(f, t), exp_margin_loss(f, t, 0.5))
    kw = dict(lam=0.3, tail=False, add_zero_anchor=True, clip=-2.0, reduction="sum")
    assert torch.equal(EnsLoss(**kw)(f, t, seed=4), ensloss(f, t, seed=4, **kw))
    assert "lam=0.3" in repr(EnsLoss(**kw))


def test_shapes_and_label_forms():
    f, t = _data(8)
    v = ensloss(f, t, seed=1)
    assert torch.equal(ensloss(f[:, None], t, seed=1), v)  # (B, 1) scores
    assert torch.equal(ensloss(f, t.bool(), seed=1), v)  # bool labels
    assert torch.equal(ensloss(f, t.double(), seed=1), v)  # float 0./1. labels
    for fn in FIXED:
        assert torch.equal(fn(f[:, None], t.float()), fn(f, t))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_devices(dtype, device):
    f, t = _data(16, dtype=dtype, device=device)
    f.requires_grad_(True)
    for fn in FIXED + [lambda a, b: ensloss(a, b, seed=2)]:
        v = fn(f, t)
        assert v.dtype == dtype and v.device.type == device
        (g,) = torch.autograd.grad(v, f)
        assert g.dtype == dtype and torch.isfinite(g).all()
    f64, t64 = _data(16)
    torch.testing.assert_close(ensloss(f, t, seed=2).double().cpu(), ensloss(f64, t64, seed=2), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs():
    f, t = _data(6)
    for fn in FIXED + [ensloss]:
        with pytest.raises(ValueError, match=r"^logits: expected finite values"):
            fn(torch.tensor([0.0, float("nan")]), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match=r"^logits: expected 1 or 2 dimensions"):
            fn(f.reshape(2, 3, 1), t)
        with pytest.raises(ValueError, match=r"^logits: expected one score per sample"):
            fn(torch.randn(6, 2), t)
        with pytest.raises(ValueError, match=r"^logits: expected a floating-point tensor"):
            fn(t, t)
        with pytest.raises(ValueError, match=r"^targets: expected labels in \{0, 1\}"):
            fn(f, t + 1)
        with pytest.raises(ValueError, match=r"^targets: expected 6 labels"):
            fn(f, t[:-1])
        with pytest.raises(ValueError, match=r"^logits: expected at least 1 sample"):
            fn(f[:0], t[:0])
        with pytest.raises(ValueError, match=r"^targets: expected finite values"):
            fn(f, torch.tensor([0.0, 1.0, float("nan"), 0.0, 1.0, 1.0]))
        with pytest.raises(ValueError, match=r"^targets: expected 1 dimensions"):
            fn(f, t[:, None])
    z = margins(f, t)
    with pytest.raises(ValueError, match=r"^lam: expected a finite number >= 0"):
        calibrated_loss_derivatives(z, lam=-0.1)
    with pytest.raises(ValueError, match=r"^clip: expected a negative number"):
        calibrated_loss_derivatives(z, clip=0.0)
    with pytest.raises(ValueError, match=r"^clip: expected a finite real number"):
        calibrated_loss_derivatives(z, clip=float("-inf"))
    with pytest.raises(ValueError, match=r"^shift: expected a finite number >= 0"):
        calibrated_loss_derivatives(z, shift=-1e-6)
    with pytest.raises(ValueError, match=r"^margins: expected finite values"):
        calibrated_loss_derivatives(torch.tensor([0.0, float("inf")]))
    with pytest.raises(ValueError, match=r"^margins: expected at least one margin"):
        calibrated_loss_derivatives(torch.zeros(3, 0))
    with pytest.raises(ValueError, match=r"^margins: expected at least one margin"):
        calibrated_loss_derivatives(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"^margins: expected a floating-point tensor"):
        calibrated_loss_derivatives(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"^max_exponent: expected a finite number > 0"):
        exp_margin_loss(f, t, max_exponent=0.0)
    with pytest.raises(ValueError, match=r"^max_exponent: expected a finite number > 0"):
        ExpMarginLoss(max_exponent=-1.0)
    with pytest.raises(ValueError, match=r"^lam: expected a finite number >= 0"):
        EnsLoss(lam=-1.0)
    with pytest.raises(ValueError, match=r"^clip: expected a negative number"):
        EnsLoss(clip=0.5)
    with pytest.raises(ValueError, match=r"^reduction: expected one of"):
        EnsLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"^reduction: expected one of"):
        LogisticMarginLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"^lam: expected a finite number >= 0"):
        box_cox_inverse(torch.zeros(2), -1.0)


# ---------------------------------------------------------------- tests asked for by mutation testing (issue #7)
def test_ddp_path_ranks_the_gathered_margins_and_keeps_its_rows(monkeypatch):
    "gather / local_slice are called only under DDP; then the derivatives are drawn for the global batch (one process)."
    import lossbook.classification.ensloss as mod
    f, t = _data(10, seed=8)
    calls = []
    monkeypatch.setattr(mod, "gather", lambda x: calls.append("gather") or x)
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append(("slice", n, device)) or slice(0, n))
    ensloss(f, t, seed=1, gather_distributed=True)  # no process group: DDP is not active
    assert calls == []
    # rank 1 of 2: rank 0 holds 6 other samples; the fake gather puts them first
    f0, t0 = _data(6, seed=9)
    z0 = margins(f0, t0)
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    monkeypatch.setattr(mod, "gather", lambda x: calls.append("gather") or torch.cat([z0, x]))
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append(("slice", n, device)) or slice(6, 6 + n))
    full = ensloss(torch.cat([f0, f]), torch.cat([t0, t]), seed=1, reduction="none")
    got = ensloss(f, t, seed=1, reduction="none", gather_distributed=True)
    assert calls == ["gather", ("slice", 10, f.device)]
    torch.testing.assert_close(got, full[6:], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(ensloss(f, t, seed=1, gather_distributed=True), full[6:].sum() / 16, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(ensloss(f, t, seed=1, reduction="sum", gather_distributed=True), full[6:].sum(),
                               rtol=1e-12, atol=1e-15)


def test_implied_loss_curve_checks_each_argument_by_name():
    z = torch.linspace(-1, 1, 5, dtype=torch.float64)
    g = -torch.ones(5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^z_sorted: expected 1 dimensions"):
        implied_loss_curve(z[None], g[None])
    with pytest.raises(ValueError, match=r"^z_sorted: expected a floating-point tensor"):
        implied_loss_curve(torch.arange(5), g)
    with pytest.raises(ValueError, match=r"^g_sorted: expected 1 dimensions"):
        implied_loss_curve(z, g[None])
    with pytest.raises(ValueError, match=r"^g_sorted: expected a floating-point tensor"):
        implied_loss_curve(z, -torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^g_sorted: expected at least 2"):
        implied_loss_curve(z[:2], g[:1])
    with pytest.raises(ValueError, match=r"^g_sorted: expected finite values"):
        implied_loss_curve(z, torch.full_like(g, float("nan")))
    # the smallest legal input: two margins; tied margins are sorted (non-decreasing) and add nothing to the integral
    torch.testing.assert_close(implied_loss_curve(z[:2], g[:2]), torch.tensor([0.5, 0.0], dtype=torch.float64))
    zt = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(implied_loss_curve(zt, -torch.ones(3, dtype=torch.float64)),
                               torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))


def test_label_messages_and_dtype_of_the_signs():
    f, _ = _data(6)
    with pytest.raises(ValueError, match=r"^targets: expected labels in \{0, 1\}, got values such as \[2, 3, -1\]$"):
        margins(f, torch.tensor([0, 2, 1, 3, -1, 5]))
    with pytest.raises(ValueError, match=r"^logits: expected one score per sample, shape \(B,\) or \(B, 1\), got \(6, 2\); "
                                         r"a 2-class softmax output is not a binary score \(use logits\[:, 1\] - logits\[:, 0\]\)$"):
        margins(torch.randn(6, 2), torch.zeros(6))
    # float64 labels do not promote float32 scores: the signs take the scores' dtype
    z = margins(f.float(), torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    assert z.dtype == torch.float32


def test_batched_rows_with_the_zero_anchor_and_an_empty_leading_dim():
    z = torch.randn(3, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    g = calibrated_loss_derivatives(z, add_zero_anchor=True, seed=6)
    eps = torch.randn(3, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for i in range(3):  # each row gets its own anchor 0 in the last dimension
        zi = torch.cat([z[i], z.new_zeros(1)])
        ref = torch.empty(8, dtype=torch.float64)
        ref[zi.argsort(stable=True)] = (-eps[i].exp()).sort().values.clamp_min(-1)
        ref = torch.where(zi > 1, ref / zi, ref) - 1e-6
        torch.testing.assert_close(g[i], ref[:7], rtol=1e-12, atol=1e-15)
    # no rows (leading dimension 0) but margins in the last one: an empty result, not an error
    assert calibrated_loss_derivatives(torch.zeros(0, 5, dtype=torch.float64), seed=0).shape == (0, 5)


def test_many_ties_keep_their_order():
    "A stable sort: with 200 tied margins (unstable sorts reorder ties from about 100 on) the k-th sample gets the k-th smallest."
    z = torch.zeros(2, 200, dtype=torch.float64)
    g = calibrated_loss_derivatives(z, seed=1)
    assert (g.diff(dim=-1) >= 0).all()
