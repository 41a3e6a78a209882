"""Tests for lossbook.classification.z_loss (de Brébisson & Vincent 2016, the Z-loss, and the spherical baselines).

There is no library implementation of this Z-loss: the reference is a plain float64 loop transcribed from the
paper's Eqs. (2)-(4), plus the card's one-liner with torch's population std, the invariances and the limits.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.classification.z_loss import (
    LogSphericalSoftmaxLoss,
    LogTaylorSoftmaxLoss,
    ZLoss,
    default_b,
    log_spherical_softmax_loss,
    log_taylor_softmax_loss,
    spherical_cache,
    spherical_softmax,
    spherical_stats,
    taylor_softmax,
    z_loss,
    z_loss_from_stats,
    z_scores,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _data(B=16, D=10, dtype=torch.float64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(B, D, generator=g, dtype=torch.float64) * 2 + 0.5
    y = torch.randint(0, D, (B,), generator=g)
    return o.to(device=device, dtype=dtype), y.to(device)


def _reference_z_loss(o, y, a, b, eps):
    "Eqs. (2)-(4) transcribed, one example at a time, in Python floats (float64)."
    out = []
    for row, c in zip(o.tolist(), y.tolist()):
        D = len(row)
        S1 = sum(row)
        S2 = sum(v * v for v in row)
        mu = S1 / D
        sigma = math.sqrt(S2 / D - mu * mu + eps)
        z_c = (row[c] - mu) / sigma
        bb = math.sqrt(D - 1) / 2 if b is None else b
        x = a * (bb - z_c)
        out.append((max(x, 0.0) + math.log1p(math.exp(-abs(x)))) / a)  # stable softplus
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("a,b,eps", [(1.0, None, 0.0), (0.3, 2.0, 1e-8), (5.0, -1.0, 1e-3), (50.0, 2.9, 0.0)])
def test_matches_float64_loop(a, b, eps):
    o, y = _data()
    got = z_loss(o, y, a=a, b=b, eps=eps, reduction="none")
    torch.testing.assert_close(got, _reference_z_loss(o, y, a, b, eps), rtol=1e-10, atol=1e-12)


def test_matches_card_oneliner():
    o, y = _data(B=32, D=7)
    z = (o - o.mean(1, keepdim=True)) / o.std(1, unbiased=False, keepdim=True)
    ref = F.softplus(2.0 * (1.2 - z.gather(1, y[:, None]).squeeze(1))) / 2.0
    torch.testing.assert_close(z_loss(o, y, a=2.0, b=1.2, eps=0, reduction="none"), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z_scores(o, eps=0), z, rtol=1e-12, atol=1e-12)


def test_hand_value_and_default_b():
    o = torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    assert default_b(4) == pytest.approx(math.sqrt(3) / 2)
    # z_c = sqrt(3) for a one-hot row, D = 4
    want = math.log1p(math.exp(default_b(4) - math.sqrt(3)))
    assert z_loss(o, torch.tensor([3]), eps=0).item() == pytest.approx(want, abs=1e-14)


def test_spherical_baselines_match_loops():
    o, y = _data(B=8, D=6)
    eps = 0.05
    sph, tay = [], []
    for row, c in zip(o.tolist(), y.tolist()):
        q = [v * v + eps for v in row]
        sph.append(-math.log(q[c] / sum(q)))
        t = [1 + v + v * v / 2 for v in row]
        tay.append(-math.log(t[c] / sum(t)))
    torch.testing.assert_close(log_spherical_softmax_loss(o, y, eps=eps, reduction="none"),
                               torch.tensor(sph, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_taylor_softmax_loss(o, y, reduction="none"),
                               torch.tensor(tay, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(spherical_softmax(o, eps).sum(1), torch.ones(8, dtype=torch.float64))
    torch.testing.assert_close(taylor_softmax(o).sum(1), torch.ones(8, dtype=torch.float64))


# ---------------------------------------------------------------- invariances, identities, bound, limits
@pytest.mark.parametrize("alpha,beta", [(1e-3, 0.0), (0.5, 3.0), (10.0, -7.0), (1e4, 1e3)])
def test_shift_and_scale_invariance(alpha, beta):
    o, y = _data()
    ref = z_loss(o, y, eps=0, reduction="none")
    torch.testing.assert_close(z_loss(alpha * o + beta, y, eps=0, reduction="none"), ref, rtol=1e-9, atol=1e-12)
    # with the default eps the invariance holds to O(eps / (alpha sigma)^2): close for scales that keep sigma >~ 1
    if alpha >= 0.5:
        torch.testing.assert_close(z_loss(alpha * o + beta, y, reduction="none"), ref, rtol=0, atol=1e-6)


def test_not_invariant_to_negative_scale_and_ce_not_scale_invariant():
    o, y = _data()
    assert not torch.allclose(z_loss(-o, y, eps=0), z_loss(o, y, eps=0))
    assert abs(F.cross_entropy(3 * o, y) - F.cross_entropy(o, y)) > 1e-2
    assert not torch.allclose(log_taylor_softmax_loss(3 * o, y), log_taylor_softmax_loss(o, y))


def test_euler_identities_and_target_gradient_sign():
    o, y = _data(B=32, D=12)
    o.requires_grad_(True)
    z_loss(o, y, a=2.0, b=1.0, eps=0, reduction="sum").backward()
    g = o.grad
    torch.testing.assert_close(g.sum(1), torch.zeros(32, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close((o.detach() * g).sum(1), torch.zeros(32, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (g.gather(1, y[:, None]) < 0).all()


def test_bound_and_equality_at_one_hot():
    g = torch.Generator().manual_seed(1)
    for D in (2, 3, 10, 257):
        o = torch.randn(2000, D, generator=g, dtype=torch.float64) ** 3
        y = torch.randint(0, D, (2000,), generator=g)
        zc = z_scores(o, eps=0).gather(1, y[:, None])
        assert zc.abs().max().item() <= math.sqrt(D - 1) + 1e-12
        eye = torch.eye(D, dtype=torch.float64) * 5 + 2  # alpha e_c + beta 1
        zc_eye = z_scores(eye, eps=0).diagonal()
        torch.testing.assert_close(zc_eye, torch.full((D,), math.sqrt(D - 1), dtype=torch.float64))
    assert z_scores(torch.eye(10, dtype=torch.float64), eps=0)[0, 0].item() == pytest.approx(3.0, abs=1e-14)


def test_b_above_ceiling_never_met():
    D = 10
    b = math.sqrt(D - 1) + 0.5  # allowed, but unreachable
    eye = torch.eye(D, dtype=torch.float64)
    floor = F.softplus(torch.tensor(1.0 * 0.5, dtype=torch.float64)).item()
    got = z_loss(eye, torch.arange(D), a=1.0, b=b, eps=0, reduction="none")
    torch.testing.assert_close(got, torch.full((D,), floor, dtype=torch.float64))
    o, y = _data(B=64, D=D)
    assert (z_loss(o, y, a=1.0, b=b, eps=0, reduction="none") >= floor - 1e-12).all()


def test_limits_in_a():
    o, y = _data()
    zc = z_scores(o, eps=0).gather(1, y[:, None]).squeeze(1)
    b = 1.0
    hinge = (b - zc).clamp_min(0)
    for a in (1e2, 1e4):
        diff = (z_loss(o, y, a=a, b=b, eps=0, reduction="none") - hinge).abs().max().item()
        assert diff <= math.log(2) / a + 1e-12
    a = 1e-6
    lin = z_loss(o, y, a=a, b=b, eps=0, reduction="none") - math.log(2) / a
    torch.testing.assert_close(lin, (b - zc) / 2, rtol=0, atol=1e-4)


def test_constant_logits_with_eps_give_finite_loss_and_gradient():
    o = torch.full((3, 5), 2.0, dtype=torch.float64, requires_grad=True)
    loss = z_loss(o, torch.tensor([0, 1, 4]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(o.grad).all()
    assert loss.item() == pytest.approx(F.softplus(torch.tensor(default_b(5))).item())


# ---------------------------------------------------------------- spherical statistics, Eq. (10)
def test_spherical_stats_equal_direct():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(20, 16, generator=g, dtype=torch.float64)
    W = torch.randn(300, 16, generator=g, dtype=torch.float64)
    y = torch.randint(0, 300, (20,), generator=g)
    o = h @ W.T
    for cache in (None, spherical_cache(W)):
        o_c, S1, S2 = spherical_stats(h, W, y, *(cache or (None, None)))
        torch.testing.assert_close(o_c, o.gather(1, y[:, None]).squeeze(1))
        torch.testing.assert_close(S1, o.sum(1))
        torch.testing.assert_close(S2, o.pow(2).sum(1))
    got = z_loss_from_stats(o_c, S1, S2, 300, a=0.5, b=4.0, reduction="none")
    torch.testing.assert_close(got, z_loss(o, y, a=0.5, b=4.0, reduction="none"), rtol=1e-9, atol=1e-10)
    # the other spherical losses are functions of the same statistics, Eqs. (11)-(13)
    D, eps = 300, 0.01
    torch.testing.assert_close(log_spherical_softmax_loss(o, y, eps, "none"),
                               torch.log(S2 + D * eps) - torch.log(o_c**2 + eps))
    torch.testing.assert_close(log_taylor_softmax_loss(o, y, "none"),
                               torch.log(D + S1 + S2 / 2) - torch.log(1 + o_c + o_c**2 / 2))
    torch.testing.assert_close(F.mse_loss(o, F.one_hot(y, D).double(), reduction="none").sum(1), S2 - 2 * o_c + 1)


# ---------------------------------------------------------------- gradcheck
def test_gradcheck():
    o, y = _data(B=4, D=5)
    o.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: z_loss(x, y, a=1.5, b=0.7, reduction="none"), (o,))
    assert torch.autograd.gradcheck(lambda x: z_loss(x, y, eps=0), (o,))
    assert torch.autograd.gradcheck(lambda x: log_spherical_softmax_loss(x, y, reduction="none"), (o,))
    assert torch.autograd.gradcheck(lambda x: log_taylor_softmax_loss(x, y, reduction="none"), (o,))
    g = torch.Generator().manual_seed(5)
    h = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(9, 6, generator=g, dtype=torch.float64, requires_grad=True)
    yy = torch.randint(0, 9, (4,), generator=g)
    assert torch.autograd.gradcheck(lambda hh, WW: z_loss_from_stats(*spherical_stats(hh, WW, yy), 9, reduction="none"),
                                    (h, W))


# ---------------------------------------------------------------- reductions, modules, dtypes, devices
@pytest.mark.parametrize("fn", [
    lambda o, y, r: z_loss(o, y, reduction=r),
    lambda o, y, r: log_spherical_softmax_loss(o, y, reduction=r),
    lambda o, y, r: log_taylor_softmax_loss(o, y, reduction=r),
])
def test_reductions(fn):
    o, y = _data()
    none = fn(o, y, "none")
    assert none.shape == (16,)
    torch.testing.assert_close(fn(o, y, "mean"), none.mean())
    torch.testing.assert_close(fn(o, y, "sum"), none.sum())


def test_functional_equals_module():
    o, y = _data()
    torch.testing.assert_close(ZLoss(a=2.0, b=0.5, reduction="sum")(o, y), z_loss(o, y, a=2.0, b=0.5, reduction="sum"))
    torch.testing.assert_close(ZLoss()(o, y), z_loss(o, y))
    torch.testing.assert_close(LogSphericalSoftmaxLoss(0.1, "none")(o, y), log_spherical_softmax_loss(o, y, 0.1, "none"))
    torch.testing.assert_close(LogTaylorSoftmaxLoss("sum")(o, y), log_taylor_softmax_loss(o, y, "sum"))
    assert "sqrt(D-1)/2" in repr(ZLoss())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_devices(dtype, device):
    o64, y = _data(device=device)
    o = o64.to(dtype).requires_grad_(True)
    for fn in (z_loss, log_spherical_softmax_loss, log_taylor_softmax_loss):
        loss = fn(o, y)
        assert loss.dtype == dtype and loss.device.type == device
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(loss.double(), fn(o64, y), rtol=tol, atol=tol)
    z_loss(o, y).backward()
    assert o.grad.dtype == dtype and torch.isfinite(o.grad).all()


def test_float32_large_offset_is_stable():
    o, y = _data(B=8, D=50)
    ref = z_loss(o, y, eps=0, reduction="none")
    got = z_loss((o + 1e4).float(), y, eps=0, reduction="none")  # centred variance: no cancellation
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=1e-3)


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs():
    o, y = _data()
    with pytest.raises(ValueError, match="target: expected 16 labels"):
        z_loss(o, y[:5])
    with pytest.raises(ValueError, match="logits: expected finite values"):
        z_loss(torch.where(torch.arange(10) == 3, float("nan"), o), y)
    with pytest.raises(ValueError, match="logits: expected finite values"):
        z_loss(o.clone().fill_(float("inf")), y)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        z_loss(o, torch.full((16,), 10))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        z_loss(o, torch.full((16,), -1))
    with pytest.raises(ValueError, match="empty batch"):
        z_loss(o[:0], y[:0])
    with pytest.raises(ValueError, match="expected 2 dimensions"):
        z_loss(o[0], y[:1])
    with pytest.raises(ValueError, match="floating-point"):
        z_loss(o.long(), y)
    with pytest.raises(ValueError, match="integer tensor"):
        z_loss(o, y.double())
    with pytest.raises(ValueError, match="at least 2 classes"):
        z_loss(o[:, :1], torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="a: expected a finite number > 0"):
        z_loss(o, y, a=0.0)
    with pytest.raises(ValueError, match="a: expected a finite number > 0"):
        ZLoss(a=-1.0)
    with pytest.raises(ValueError, match="b: expected a finite real number"):
        z_loss(o, y, b=float("inf"))
    with pytest.raises(ValueError, match="b: expected a finite real number"):
        ZLoss(b="large")
    with pytest.raises(ValueError, match="eps: expected a finite number >= 0"):
        z_loss(o, y, eps=-1e-3)
    with pytest.raises(ValueError, match="reduction"):
        z_loss(o, y, reduction="avg")
    with pytest.raises(ValueError, match="sigma = 0"):
        z_loss(torch.ones(3, 4), torch.zeros(3, dtype=torch.long), eps=0)
    with pytest.raises(ValueError, match="eps: expected a finite number > 0"):
        log_spherical_softmax_loss(o, y, eps=0.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        log_taylor_softmax_loss(o, torch.full((16,), 12))
    with pytest.raises(TypeError, match="torch.Tensor"):
        z_loss(o.tolist(), y)


def test_bad_inputs_spherical_stats():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(4, 6, generator=g)
    W = torch.randn(9, 6, generator=g)
    y = torch.randint(0, 9, (4,), generator=g)
    with pytest.raises(ValueError, match="same feature size"):
        spherical_stats(h[:, :5], W, y)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 8\]"):
        spherical_stats(h, W, torch.tensor([0, 1, 2, 9]))
    with pytest.raises(ValueError, match="WtW and Wt1"):
        spherical_stats(h, W, y, torch.eye(5), torch.zeros(6))
    W_bad = W.clone()
    W_bad[y[0]] = float("nan")
    with pytest.raises(ValueError, match=r"W\[target\]: expected finite values"):
        spherical_stats(h, W_bad, y, *spherical_cache(W))
    with pytest.raises(ValueError, match="W: expected finite values"):  # no cache: W^T W is built from W, O(D d^2)
        spherical_stats(h, W_bad, y)
    o_c, S1, S2 = spherical_stats(h, W, y)
    with pytest.raises(ValueError, match="o_c and S2 must have the same shape"):
        z_loss_from_stats(o_c, S1, S2[:2], 9)
    with pytest.raises(ValueError, match="n_classes: expected at least 2"):
        z_loss_from_stats(o_c, S1, S2, 1)


# ---------------------------------------------------------------- gaps found by mutation testing
def test_zloss_module_uses_its_eps_and_b():
    o = torch.tensor([[1.0, 1.0, 1.0, 1.0 + 1e-3]], dtype=torch.float64)  # sigma ~ 4e-4: eps matters
    t = torch.tensor([3])
    assert ZLoss(eps=1e-2)(o, t) == z_loss(o, t, eps=1e-2)
    assert not torch.isclose(ZLoss(eps=1e-2)(o, t), ZLoss()(o, t))
    assert ZLoss(b=0.3)(o, t) == z_loss(o, t, b=0.3) != ZLoss()(o, t)


def test_z_loss_from_stats_defaults_and_degenerate_sigma():
    g = torch.Generator().manual_seed(0)
    o = torch.randn(6, 10, generator=g, dtype=torch.float64)
    t = torch.randint(10, (6,), generator=g)
    stats = (o.gather(1, t[:, None]).squeeze(1), o.sum(1), o.pow(2).sum(1))
    none = z_loss_from_stats(*stats, 10, reduction="none")
    assert z_loss_from_stats(*stats, 10) == none.mean()  # the default reduction is the mean
    torch.testing.assert_close(none, z_loss(o, t, reduction="none"))
    const = torch.full((2,), 3.0, dtype=torch.float64)  # every logit 3: S1 = 30, S2 = 90, sigma = 0
    with pytest.raises(ValueError, match="sigma = 0"):
        z_loss_from_stats(const, 10 * const, 30 * const, 10, eps=0.0)


def test_spherical_and_taylor_softmax_against_their_formulas():
    g = torch.Generator().manual_seed(1)
    o = torch.randn(5, 7, generator=g, dtype=torch.float64)
    sq = o.pow(2) + 0.01
    torch.testing.assert_close(spherical_softmax(o), sq / sq.sum(1, keepdim=True))
    sq3 = o.pow(2) + 0.3
    torch.testing.assert_close(spherical_softmax(o, eps=0.3), sq3 / sq3.sum(1, keepdim=True))
    t = 1 + o + o.pow(2) / 2
    torch.testing.assert_close(taylor_softmax(o), t / t.sum(1, keepdim=True))


def test_spherical_stats_refuses_a_broadcast_target():
    h, W = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match="4 labels"):
        spherical_stats(h, W, torch.tensor([1]))


def test_eps_enters_as_sigma_squared_plus_eps():
    g = torch.Generator().manual_seed(4)
    o = torch.randn(3, 6, generator=g, dtype=torch.float64)
    c = o - o.mean(1, keepdim=True)
    for eps in (0.5, 0.0):
        torch.testing.assert_close(z_scores(o, eps=eps), c / (c.pow(2).mean(1, keepdim=True) + eps).sqrt())
    torch.testing.assert_close(z_scores(o), c / (c.pow(2).mean(1, keepdim=True) + 1e-8).sqrt())  # the default eps
    const = torch.ones(2, 4, dtype=torch.float64)
    assert torch.equal(z_scores(const), torch.zeros(2, 4, dtype=torch.float64))  # eps > 0: a constant row gives z = 0
    with pytest.raises(ValueError, match="sigma = 0"):
        z_scores(const, eps=0.0)
    with pytest.raises(ValueError, match="sigma = 0"):
        z_loss(const, torch.tensor([0, 1]), eps=0.0)
    assert torch.isfinite(z_loss(o, torch.tensor([0, 1, 2]), eps=0.0))  # eps = 0 is legal when sigma > 0


BAD_STATS = [  # (call, the argument the message must name)
    (lambda h, W, t: spherical_stats(h[0], W, t), "h"),
    (lambda h, W, t: spherical_stats(h.long(), W, t), "h"),
    (lambda h, W, t: spherical_stats(h, W[0], t), "W"),
    (lambda h, W, t: spherical_stats(h, W.long(), t), "W"),
    (lambda h, W, t: spherical_stats(h, W[:1], t.clamp(max=0)), "W"),
    (lambda h, W, t: spherical_stats(h, W, t.double()), "target"),
    (lambda h, W, t: spherical_stats(h, W, t, WtW=torch.ones(4, dtype=torch.float64)), "WtW"),
    (lambda h, W, t: spherical_stats(h, W, t, WtW=torch.ones(4, 4, dtype=torch.long)), "WtW"),
    (lambda h, W, t: spherical_stats(h, W, t, Wt1=torch.ones(4, 4, dtype=torch.float64)), "Wt1"),
    (lambda h, W, t: spherical_stats(h, W, t, Wt1=torch.ones(4, dtype=torch.long)), "Wt1"),
    (lambda h, W, t: spherical_cache(W[0]), "W"),
    (lambda h, W, t: spherical_cache(W.long()), "W"),
    (lambda h, W, t: spherical_cache(W[:1]), "W"),
    (lambda h, W, t: z_loss_from_stats(h, h[:, 0], h[:, 0], 5), "o_c"),
    (lambda h, W, t: z_loss_from_stats(h[:, 0], h, h[:, 0], 5), "S1"),
    (lambda h, W, t: z_loss_from_stats(h[:, 0], h[:, 0], h, 5), "S2"),
    (lambda h, W, t: z_loss_from_stats(h[:, 0], h[:, 0], h[:, 0], 1), "n_classes"),
    (lambda h, W, t: z_loss_from_stats(h[:, 0], h[:, 0], h[:, 0] ** 2 * 5, 5, a=0.0), "a"),
    (lambda h, W, t: z_loss_from_stats(h[:, 0], h[:, 0], h[:, 0] ** 2 * 5, 5, b=float("nan")), "b"),
    (lambda h, W, t: z_loss_from_stats(h[:, 0], h[:, 0], h[:, 0] ** 2 * 5, 5, eps=-1.0), "eps"),
    (lambda h, W, t: ZLoss(eps=-1.0), "eps"),
    (lambda h, W, t: ZLoss(a=0.0), "a"),
    (lambda h, W, t: ZLoss(b=float("inf")), "b"),
    (lambda h, W, t: LogSphericalSoftmaxLoss(eps=0.0), "eps"),
    (lambda h, W, t: z_scores(h, eps=-1.0), "eps"),
    (lambda h, W, t: spherical_softmax(h, eps=0.0), "eps"),
    (lambda h, W, t: taylor_softmax(h[0]), "logits"),
    (lambda h, W, t: spherical_softmax(h.long()), "logits"),
]


@pytest.mark.parametrize("i", range(len(BAD_STATS)))
def test_bad_input_names_the_argument(i):
    g = torch.Generator().manual_seed(5)
    h, W = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 4, 2])
    call, name = BAD_STATS[i]
    with pytest.raises(ValueError, match=rf"^{name}\b|\b{name}:"):
        call(h, W, t)


def test_spherical_stats_uses_given_caches_and_two_classes_work():
    g = torch.Generator().manual_seed(6)
    h, W = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 4, 2])
    WtW, Wt1 = spherical_cache(W)
    o_c, S1, S2 = spherical_stats(h, W, t, WtW=2 * WtW, Wt1=Wt1)  # a given cache is used as given
    torch.testing.assert_close(S2, 2 * ((h @ W.T) ** 2).sum(1))
    o_c, S1, S2 = spherical_stats(h, W, t, Wt1=3 * Wt1)  # WtW computed, Wt1 taken
    torch.testing.assert_close(S1, 3 * (h @ W.T).sum(1))
    torch.testing.assert_close(S2, ((h @ W.T) ** 2).sum(1))
    o = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # D = 2 is the smallest legal D
    torch.testing.assert_close(z_loss_from_stats(o[:, 1], o.sum(1), o.pow(2).sum(1), 2), z_loss(o, torch.tensor([1])))


def test_small_sigma_with_eps_zero_and_two_class_weights():
    o = torch.tensor([[0.0, 0.1, 0.2]], dtype=torch.float64)  # sigma^2 = 0.0067: small but not zero
    t = torch.tensor([2])
    v = z_loss_from_stats(o[:, 2], o.sum(1), o.pow(2).sum(1), 3, eps=0.0)
    torch.testing.assert_close(v, z_loss(o, t, eps=0.0))
    h, W = torch.randn(4, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)  # D = 2 output rows
    o_c, S1, S2 = spherical_stats(h, W, torch.tensor([0, 1, 1, 0]))
    torch.testing.assert_close(S1, (h @ W.T).sum(1))
    assert spherical_cache(W)[0].shape == (3, 3)


# ---------------------------------------------------------------- what the second mutation run asked for
def test_module_repr_shows_every_hyper_parameter():
    assert repr(ZLoss()) == "ZLoss(a=1.0, b=sqrt(D-1)/2, eps=1e-08, reduction='mean')"
    assert repr(ZLoss(a=2.0, b=0.5, eps=0.0, reduction="sum")) == "ZLoss(a=2.0, b=0.5, eps=0.0, reduction='sum')"


def test_constant_row_with_eps_zero_names_logits():
    o = torch.randn(3, 5, dtype=torch.float64)
    o[1] = 0.7
    msg = r"^logits: a row has all D logits equal \(sigma = 0\) and eps=0; pass eps > 0 or vary the logits$"
    with pytest.raises(ValueError, match=msg):
        z_scores(o, eps=0.0)
    with pytest.raises(ValueError, match=msg):
        z_loss(o, torch.zeros(3, dtype=torch.long), eps=0.0)
    assert torch.equal(z_scores(o)[1], torch.zeros(5, dtype=torch.float64))  # eps > 0: a constant row gives z = 0


def test_spherical_stats_and_from_stats_messages_name_the_argument():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(4, 6, generator=g, dtype=torch.float64)
    W = torch.randn(9, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 9, (4,), generator=g)
    WtW, Wt1 = spherical_cache(W)
    cases = [
        (lambda: spherical_stats(h, W.long(), y), "W: expected a floating-point tensor"),
        (lambda: spherical_stats(h, W.long(), y, WtW, Wt1), "W: expected a floating-point tensor"),
        (lambda: spherical_stats(h, W[:1], torch.zeros(4, dtype=torch.long), WtW, Wt1), r"W: expected at least 2 sample\(s\)"),
        (lambda: spherical_stats(h, W, y, WtW[None], Wt1), "WtW: expected 2 dimensions"),
        (lambda: spherical_stats(h, W, y, WtW[0], Wt1), "WtW: expected 2 dimensions"),
        (lambda: spherical_stats(h, W, y, WtW, Wt1[None]), "Wt1: expected 1 dimensions"),
        (lambda: spherical_stats(h, W, y, WtW, WtW), "Wt1: expected 1 dimensions"),
        (lambda: spherical_stats(h, W, y.float()), "target: expected an integer tensor"),
    ]
    o_c, S1, S2 = spherical_stats(h, W, y)
    cases += [
        (lambda: z_loss_from_stats(o_c[:, None], S1[:, None], S2[:, None], 9), "o_c: expected 1 dimensions"),
        (lambda: z_loss_from_stats(o_c[:, None], S1, S2, 9), "o_c: expected 1 dimensions"),
    ]
    const = torch.full((2,), 3.0, dtype=torch.float64)  # every logit 3: S1 = 30, S2 = 90, sigma = 0
    cases.append((lambda: z_loss_from_stats(const, 10 * const, 30 * const, 10, eps=0.0),
                  r"S1, S2: a row has sigma = 0 and eps=0; pass eps > 0$"))
    for call, msg in cases:
        with pytest.raises(ValueError, match="^" + msg):
            call()
