"""Tests for lossbook.classification.comp_sum_losses (Mao, Mohri & Zhong 2023: comp-sum losses and ADV-COMP-SUM).

No well-kept library ships comp-sum / GCE losses; the references are torch's cross-entropy (tau = 1), the closed forms
1 - p_y (tau = 2), GCE (tau = 1 + q) and sum-exponential (tau = 0), and a float64 loop over Eq. (1)-(2) of the card:
Phi^tau(sum_{y' != y} exp(h_y' - h_y)).
"""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lossbook.classification import comp_sum_losses as csl
from lossbook.classification.comp_sum_losses import (
    AdvCompSumLoss,
    CompSumLoss,
    adv_comp_sum_loss,
    comp_sum_loss,
    comp_sum_phi,
    pgd_attack,
    smooth_adv_comp_sum_loss,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TAUS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]


def _data(B=16, n=10, scale=2.0, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    h = scale * torch.randn(B, n, generator=g, dtype=torch.float64)
    y = torch.randint(0, n, (B,), generator=g)
    return h.to(device=device, dtype=dtype), y.to(device)


def _phi(u, tau):
    "Eq. (2) of the card in Python floats."
    if tau == 1.0:
        return math.log(1.0 + u)
    return ((1.0 + u) ** (1.0 - tau) - 1.0) / (1.0 - tau)


def _loop_loss(h, y, tau):
    "Eq. (1)-(2): Phi^tau(sum_{y' != y} exp(h_y' - h_y)), one example at a time (float64)."
    out = []
    for row, c in zip(h.tolist(), y.tolist()):
        u = math.fsum(math.exp(v - row[c]) for k, v in enumerate(row) if k != c)
        out.append(_phi(u, tau))
    return torch.tensor(out, dtype=torch.float64)


def _net(seed=0, d=12, n=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, n)).double()


def _inputs(B=8, d=12, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, d, generator=g, dtype=torch.float64), torch.randint(0, n, (B,), generator=g)


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("tau", TAUS + [0.25, 1.7, 2.5])
def test_matches_float64_loop_of_eq_1_2(tau):
    h, y = _data()
    torch.testing.assert_close(comp_sum_loss(h, y, tau, reduction="none"), _loop_loss(h, y, tau), rtol=1e-10, atol=1e-12)


def test_tau_1_is_cross_entropy_values_and_grads():
    h, y = _data(B=32)
    h1, h2 = h.clone().requires_grad_(True), h.clone().requires_grad_(True)
    a, b = comp_sum_loss(h1, y, 1.0), F.cross_entropy(h2, y)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    a.backward()
    b.backward()
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-10, atol=1e-14)


def test_special_cases():
    h, y = _data(B=32)
    p = torch.softmax(h, 1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(comp_sum_loss(h, y, 2.0, "none"), 1 - p, rtol=1e-12, atol=1e-14)
    for q in (0.3, 0.7):
        torch.testing.assert_close(comp_sum_loss(h, y, 1 + q, "none"), (1 - p**q) / q, rtol=1e-10, atol=1e-13)
    mask = F.one_hot(y, 10).bool()
    sum_exp = torch.exp(torch.logsumexp(h.masked_fill(mask, float("-inf")), 1) - h.gather(1, y[:, None]).squeeze(1))
    torch.testing.assert_close(comp_sum_loss(h, y, 0.0, "none"), sum_exp, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(comp_sum_loss(h, y, 3.0, "none"), (1 - p**2) / 2, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("tau", TAUS)
def test_gradcheck(tau):
    h, y = _data(B=5, n=4, scale=1.0)
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: comp_sum_loss(t, y, tau, reduction="none"), (h,))


def test_phi_against_formula_and_loss():
    u = torch.tensor([0.0, 1e-8, 0.3, 2.0, 50.0], dtype=torch.float64)
    for tau in TAUS + [0.9999, 1.0001]:
        want = torch.tensor([_phi(v, tau) for v in u.tolist()], dtype=torch.float64)
        torch.testing.assert_close(comp_sum_phi(u, tau), want, rtol=1e-9, atol=1e-11)  # the plain formula loses digits at u = 1e-8
    torch.testing.assert_close(comp_sum_phi(u), torch.log1p(u), rtol=0, atol=0)  # default tau = 1
    assert comp_sum_phi(torch.tensor([1e-12], dtype=torch.float64), 0.5).item() == pytest.approx(1e-12, rel=1e-9)
    h, y = _data()
    u_h = (h - h.gather(1, y[:, None])).exp().masked_fill(F.one_hot(y, 10).bool(), 0).sum(1)
    for tau in (0.0, 2.0):
        torch.testing.assert_close(comp_sum_loss(h, y, tau, "none"), comp_sum_phi(u_h, tau), rtol=1e-10, atol=1e-12)
    assert comp_sum_phi(torch.zeros(0, dtype=torch.float64), 2.0).shape == (0,)


# ---------------------------------------------------------------- properties
@pytest.mark.parametrize("d", [1e-4, -1e-4, 1e-7, -1e-7])
def test_continuity_at_tau_1(d):
    h, y = _data(B=64, scale=3.0)
    ce = comp_sum_loss(h, y, 1.0, "none")
    diff = comp_sum_loss(h, y, 1.0 + d, "none") - ce
    # ell_{1+d} = -log p_y - (d/2) log^2 p_y + O(d^2): continuous from both sides, with this first-order term
    torch.testing.assert_close(diff, -d / 2 * ce**2, rtol=1e-2, atol=1e-15)
    moderate = ce < math.log(100)  # p_y > 0.01: the card's |ell_{1 +- 1e-4} - ell_1| < 1e-3
    assert diff[moderate].abs().max() < 1e-3
    u = torch.tensor([0.5, 10.0], dtype=torch.float64)
    assert (comp_sum_phi(u, 1.0 + d) - torch.log1p(u)).abs().max() < 1e-3


def test_shift_invariance_and_gradient_signs():
    h, y = _data(B=32)
    for tau in TAUS:
        torch.testing.assert_close(comp_sum_loss(h + 5.0, y, tau, "none"), comp_sum_loss(h, y, tau, "none"),
                                   rtol=1e-10, atol=1e-12)
        hh = h.clone().requires_grad_(True)
        comp_sum_loss(hh, y, tau, "sum").backward()
        torch.testing.assert_close(hh.grad.sum(1), torch.zeros(32, dtype=torch.float64), rtol=0, atol=1e-12)
        mask = F.one_hot(y, 10).bool()
        assert (hh.grad[mask] < 0).all() and (hh.grad[~mask] > 0).all()


def test_bounded_above_one_and_ordering_in_tau():
    h, y = _data(B=200, scale=8.0)
    for tau in (1.2, 1.5, 2.0, 3.0):
        v = comp_sum_loss(h, y, tau, "none")
        assert (v >= 0).all() and (v <= 1 / (tau - 1) + 1e-12).all()
    wrong = torch.tensor([[-30.0, 30.0]], dtype=torch.float64)
    assert comp_sum_loss(wrong, torch.tensor([0]), 0.5).item() > 1e10  # unbounded for tau <= 1
    vals = torch.stack([comp_sum_loss(h, y, t, "none") for t in TAUS])
    assert (vals[1:] <= vals[:-1] + 1e-12).all()


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 1.5, 2.0])
def test_bounded_score_minimum_eq_5(tau):
    n, lam = 5, 1.2
    h = torch.zeros(1, n, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([h], lr=0.5)
    for _ in range(500):
        opt.zero_grad()
        comp_sum_loss(h, torch.tensor([3]), tau).backward()
        opt.step()
        with torch.no_grad():
            h.clamp_(-lam, lam)
    want = _phi((n - 1) * math.exp(-2 * lam), tau)
    assert comp_sum_loss(h, torch.tensor([3]), tau).item() == pytest.approx(want, abs=1e-7)


def test_large_logits_stay_finite_for_bounded_and_ce():
    h, y = _data(B=16, scale=1e4, dtype=torch.float32)
    for tau in (1.0, 1.5, 2.0, 3.0):
        v = comp_sum_loss(h.clone().requires_grad_(True), y, tau)
        assert torch.isfinite(v)


# ---------------------------------------------------------------- reductions, modules, dtypes, devices
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_reductions_and_default(tau):
    h, y = _data()
    none = comp_sum_loss(h, y, tau, reduction="none")
    assert none.shape == (16,)
    torch.testing.assert_close(comp_sum_loss(h, y, tau), none.mean())
    torch.testing.assert_close(comp_sum_loss(h, y, tau, "sum"), none.sum())


def test_defaults_are_pinned():
    h, y = _data()
    adv = h + 0.3
    assert torch.equal(comp_sum_loss(h, y), comp_sum_loss(h, y, 1.0, "mean"))
    assert not torch.equal(comp_sum_loss(h, y), comp_sum_loss(h, y, 1.5))
    assert torch.equal(adv_comp_sum_loss(h, adv, y), adv_comp_sum_loss(h, adv, y, 1.0, 6.0, "mean"))
    assert not torch.equal(adv_comp_sum_loss(h, adv, y), adv_comp_sum_loss(h, adv, y, 1.0, 5.0))
    assert not torch.equal(adv_comp_sum_loss(h, adv, y), adv_comp_sum_loss(h, adv, y, 1.5, 6.0))
    assert torch.equal(CompSumLoss()(h, y), comp_sum_loss(h, y))
    assert torch.equal(AdvCompSumLoss()(h, adv, y), adv_comp_sum_loss(h, adv, y))
    assert repr(CompSumLoss()) == "CompSumLoss(tau=1.0, reduction='mean')"
    assert repr(AdvCompSumLoss(0.5, 2.0, "sum")) == "AdvCompSumLoss(tau=0.5, nu=2.0, reduction='sum')"


def test_modules_pass_every_setting():
    h, y = _data()
    adv = h + 0.2 * torch.randn_like(h)
    torch.testing.assert_close(CompSumLoss(0.5, "none")(h, y), comp_sum_loss(h, y, 0.5, "none"))
    torch.testing.assert_close(CompSumLoss(tau=2.0, reduction="sum")(h, y), comp_sum_loss(h, y, 2.0, "sum"))
    torch.testing.assert_close(AdvCompSumLoss(1.5, 0.7, "none")(h, adv, y), adv_comp_sum_loss(h, adv, y, 1.5, 0.7, "none"))
    torch.testing.assert_close(AdvCompSumLoss(nu=3.0, reduction="sum")(h, adv, y), adv_comp_sum_loss(h, adv, y, nu=3.0, reduction="sum"))


def test_adv_comp_sum_loss_against_formula():
    h, y = _data()
    adv = h + 0.5 * torch.randn(h.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for tau, nu in ((1.0, 6.0), (0.0, 0.5), (2.0, 0.0), (1.5, 2.0)):
        want = []
        ref = _loop_loss(h, y, tau).tolist()
        for r, a, b in zip(ref, h.tolist(), adv.tolist()):
            want.append(r + nu * math.sqrt(math.fsum((u - v) ** 2 for u, v in zip(a, b))))
        torch.testing.assert_close(adv_comp_sum_loss(h, adv, y, tau, nu, "none"), torch.tensor(want, dtype=torch.float64),
                                   rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(adv_comp_sum_loss(h, h, y, 1.5, 6.0, "none"), comp_sum_loss(h, y, 1.5, "none"))
    hh, aa = h.clone().requires_grad_(True), h.clone().requires_grad_(True)
    adv_comp_sum_loss(hh, aa, y).backward()  # a zero difference: finite (zero) gradient of the smooth term
    assert torch.isfinite(hh.grad).all() and torch.equal(aa.grad, torch.zeros_like(aa))


def test_adv_gradcheck():
    h, y = _data(B=4, n=3, scale=1.0)
    adv = (h + 0.4).requires_grad_(True)
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: adv_comp_sum_loss(a, b, y, 1.5, 2.0, "none"), (h, adv))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_devices(dtype, device):
    h64, y = _data(device=device)
    h = h64.to(dtype).requires_grad_(True)
    for tau in (0.0, 1.0, 1.5):
        v = comp_sum_loss(h, y, tau)
        assert v.dtype == dtype and v.device.type == device
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(v.double(), comp_sum_loss(h64, y, tau), rtol=tol, atol=tol)
    v = adv_comp_sum_loss(h, h + 0.1, y)
    assert v.dtype == dtype and v.device.type == device


# ---------------------------------------------------------------- the attack and the model-level loss
def test_smooth_loss_limits_nu_0_and_eps_0():
    net = _net()
    x, y = _inputs()
    clean = comp_sum_loss(net(x), y, 1.5)
    torch.testing.assert_close(smooth_adv_comp_sum_loss(net, x, y, tau=1.5, nu=0.0, eps=0.1, steps=3), clean)
    torch.testing.assert_close(smooth_adv_comp_sum_loss(net, x, y, tau=1.5, nu=6.0, eps=0.0, steps=3), clean)
    torch.testing.assert_close(smooth_adv_comp_sum_loss(net, x, y, tau=1.5, nu=6.0, eps=0.0, steps=0), clean)


def test_smooth_loss_equals_its_definition_at_the_attack_point(monkeypatch):
    net = _net()
    x, y = _inputs()
    seen = {}
    real = csl._pgd

    def spy(model, x_, objective, eps, steps, step_size, norm, clamp, start):
        seen.update(eps=eps, steps=steps, step_size=step_size, norm=norm, clamp=clamp, start=start)
        seen["x_adv"] = real(model, x_, objective, eps, steps, step_size, norm, clamp, start)
        seen["obj_adv"] = objective(model(seen["x_adv"])).item()
        seen["obj_x"] = objective(model(x_)).item()
        return seen["x_adv"]

    monkeypatch.setattr(csl, "_pgd", spy)
    torch.manual_seed(0)
    v = smooth_adv_comp_sum_loss(net, x, y, tau=0.5, nu=2.0, eps=0.05, steps=4, reduction="none")
    want = adv_comp_sum_loss(net(x), net(seen["x_adv"]), y, 0.5, 2.0, "none")
    torch.testing.assert_close(v, want)
    assert seen["eps"] == 0.05 and seen["steps"] == 4 and seen["step_size"] == pytest.approx(2.5 * 0.05 / 4)
    assert seen["norm"] == "linf" and seen["clamp"] == (0.0, 1.0)
    assert seen["start"].shape == x.shape and 0 < seen["start"].abs().max() < 0.01  # x + 0.001 N(0, I)
    assert seen["obj_x"] == pytest.approx(0.0, abs=1e-12) and seen["obj_adv"] > 0  # the term it maximises
    smooth_adv_comp_sum_loss(net, x, y)  # the defaults reach the attack
    assert seen["eps"] == 0.1 and seen["steps"] == 10 and seen["step_size"] == pytest.approx(0.025)
    assert seen["norm"] == "linf" and seen["clamp"] == (0.0, 1.0)
    smooth_adv_comp_sum_loss(net, x, y, step_size=0.01, norm="l2", clamp=None)
    assert seen["step_size"] == 0.01 and seen["norm"] == "l2" and seen["clamp"] is None


def test_smooth_loss_defaults_and_reductions():
    net = _net()
    x, y = _inputs()
    torch.manual_seed(3)
    a = smooth_adv_comp_sum_loss(net, x, y)
    torch.manual_seed(3)
    b = smooth_adv_comp_sum_loss(net, x, y, 1.0, 6.0, 0.1, 10, None, "linf", (0.0, 1.0), "mean")
    assert torch.equal(a, b)
    torch.manual_seed(3)
    none = smooth_adv_comp_sum_loss(net, x, y, reduction="none")
    torch.manual_seed(3)
    s = smooth_adv_comp_sum_loss(net, x, y, reduction="sum")
    assert none.shape == (8,)
    torch.testing.assert_close(a, none.mean())
    torch.testing.assert_close(s, none.sum())
    for kw in ({"tau": 2.0}, {"nu": 1.0}, {"eps": 0.3}, {"steps": 1}):
        torch.manual_seed(3)
        assert not torch.equal(smooth_adv_comp_sum_loss(net, x, y, **kw), a), kw


def test_smooth_loss_keeps_mode_and_trains_parameters():
    net = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 4)).double()
    x, y = _inputs()
    net.train()
    smooth_adv_comp_sum_loss(net, x, y, nu=1.0, steps=2).backward()
    assert net.training and all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    net.eval()
    smooth_adv_comp_sum_loss(net, x, y, nu=1.0, steps=2)
    assert not net.training


def test_pgd_attack_stays_in_ball_and_range_and_increases_loss():
    net = _net()
    x, y = _inputs(B=64)
    torch.manual_seed(0)
    for loss in ("ce", "margin"):
        xa = pgd_attack(net, x, y, 0.1, 10, loss=loss)
        assert (xa - x).abs().max() <= 0.1 + 1e-12 and xa.min() >= 0 and xa.max() <= 1
        assert F.cross_entropy(net(xa), y) > F.cross_entropy(net(x), y)
    xa = pgd_attack(net, x, y, 0.5, 10, norm="l2")
    assert (xa - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-9 and xa.min() >= 0 and xa.max() <= 1
    assert F.cross_entropy(net(xa), y) > F.cross_entropy(net(x), y)
    xb = pgd_attack(net, 2 * x - 0.5, y, 0.1, 3, clamp=None)  # no range: values may leave [0, 1]
    assert (xb - (2 * x - 0.5)).abs().max() <= 0.1 + 1e-12
    assert torch.equal(pgd_attack(net, x, y, 0.0, 5), x)  # radius 0: x itself
    assert torch.equal(pgd_attack(net, x, y, 0.1, 0, random_start=False), x)


def test_pgd_attack_on_batchnorm_model_in_train_mode_leaves_state_alone():
    # the label-range check used to run model(x[:1]) in the model's own mode: a BatchNorm1d in train mode fails on a
    # batch of 1, and on a larger batch it would update the running statistics
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 4)).double()
    with torch.no_grad():  # non-trivial running statistics
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    net.train()
    x, y = _inputs(B=32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for loss in ("ce", "margin"):
        xa = pgd_attack(net, x, y, 0.1, 3, loss=loss)
        assert xa.shape == x.shape and (xa - x).abs().max() <= 0.1 + 1e-12
    assert net.training and all(m.training for m in net.modules())  # the mode is restored
    after = net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # running stats and num_batches_tracked unchanged
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(ValueError, match="y"):  # the label check still works in train mode
        pgd_attack(net, x, torch.full_like(y, 4), 0.1, 1)
    assert net.training and all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    net.eval()
    pgd_attack(net, x, y, 0.1, 2)
    assert not net.training


def test_pgd_attack_defaults_and_objectives(monkeypatch):
    net = _net()
    x, y = _inputs()
    seen = {}
    real = csl._pgd

    def spy(model, x_, objective, eps, steps, step_size, norm, clamp, start):
        seen.update(eps=eps, steps=steps, step_size=step_size, norm=norm, clamp=clamp, start=start, objective=objective)
        return real(model, x_, objective, eps, steps, step_size, norm, clamp, start)

    monkeypatch.setattr(csl, "_pgd", spy)
    pgd_attack(net, x, y, 0.2, 4)
    assert seen["step_size"] == pytest.approx(2.5 * 0.2 / 4) and seen["norm"] == "linf" and seen["clamp"] == (0.0, 1.0)
    assert seen["start"].abs().max() <= 0.2 and seen["start"].abs().max() > 0.1  # uniform in the l_inf ball
    h = net(x)
    torch.testing.assert_close(seen["objective"](h), F.cross_entropy(h, y, reduction="sum"))  # loss='ce' by default
    pgd_attack(net, x, y, 0.2, 4, loss="margin", random_start=False, step_size=0.05)
    other = h.masked_fill(F.one_hot(y, 4).bool(), float("-inf")).amax(1)
    torch.testing.assert_close(seen["objective"](h), (other - h.gather(1, y[:, None]).squeeze(1)).sum())
    assert seen["start"] is None and seen["step_size"] == 0.05
    pgd_attack(net, x, y, 0.3, 2, norm="l2")
    assert seen["norm"] == "l2" and (seen["start"].flatten(1).norm(dim=1) <= 0.3 + 1e-12).all()
    pgd_attack(net, x, y, 0.3, 0)
    assert seen["step_size"] == pytest.approx(0.75)  # steps = 0: 2.5 eps / max(steps, 1)


def test_pgd_internals_projection_and_mode():
    d = torch.tensor([[3.0, -4.0], [0.1, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(csl._project(d, 1.0, "l2"), torch.tensor([[0.6, -0.8], [0.1, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(csl._project(d, 0.5, "linf"), torch.tensor([[0.5, -0.5], [0.1, 0.0]], dtype=torch.float64))
    net = _net()
    x, y = _inputs()
    net.train()
    modes = []
    hook = net[0].register_forward_hook(lambda m, i, o: modes.append(m.training))
    csl._pgd(net, x, lambda h: h.sum(), 0.1, 2, 0.05, "linf", (0.0, 1.0), None)
    hook.remove()
    assert modes == [False, False] and net.training  # eval inside, restored after
    assert all(p.grad is None for p in net.parameters())  # gradients reach x' only
    xa = csl._pgd(net, x, lambda h: h[:, 0].sum(), 0.1, 1, 0.05, "linf", None, None)
    torch.testing.assert_close(xa - x, 0.05 * torch.autograd.grad(net(x.requires_grad_())[:, 0].sum(), x)[0].sign())


# ---------------------------------------------------------------- bad inputs
BAD = [  # (call, the argument the message must start with)
    (lambda h, y: comp_sum_loss(h[0], y), "logits"),
    (lambda h, y: comp_sum_loss(h.long(), y), "logits"),
    (lambda h, y: comp_sum_loss(h[:, :1], y.clamp(max=0)), "logits"),
    (lambda h, y: comp_sum_loss(h[:0], y[:0]), "logits"),
    (lambda h, y: comp_sum_loss(torch.where(h > 1, float("nan"), h), y), "logits"),
    (lambda h, y: comp_sum_loss(h, y[:3]), "target"),
    (lambda h, y: comp_sum_loss(h, y.double()), "target"),
    (lambda h, y: comp_sum_loss(h, torch.full_like(y, 10)), "target"),
    (lambda h, y: comp_sum_loss(h, torch.full_like(y, -1)), "target"),
    (lambda h, y: comp_sum_loss(h, y, tau=-0.5), "tau"),
    (lambda h, y: comp_sum_loss(h, y, tau=float("inf")), "tau"),
    (lambda h, y: comp_sum_loss(h, y, reduction="avg"), "reduction"),
    (lambda h, y: CompSumLoss(tau=-1.0), "tau"),
    (lambda h, y: CompSumLoss(reduction="max"), "reduction"),
    (lambda h, y: comp_sum_phi(-h.abs() - 1.0), "u"),
    (lambda h, y: comp_sum_phi(h.abs(), tau=float("nan")), "tau"),
    (lambda h, y: comp_sum_phi(h.abs().long()), "u"),
    (lambda h, y: adv_comp_sum_loss(h, h[:, :5], y), "logits and adv_logits"),
    (lambda h, y: adv_comp_sum_loss(h, h[:4], y), "logits and adv_logits"),
    (lambda h, y: adv_comp_sum_loss(h, h.long(), y), "adv_logits"),
    (lambda h, y: adv_comp_sum_loss(h, h * float("inf"), y), "adv_logits"),
    (lambda h, y: adv_comp_sum_loss(h, h, y, nu=-1.0), "nu"),
    (lambda h, y: adv_comp_sum_loss(h, h, y, tau=-1.0), "tau"),
    (lambda h, y: adv_comp_sum_loss(h, h, y[:2]), "target"),
    (lambda h, y: adv_comp_sum_loss(h, h, y, reduction="mean "), "reduction"),
    (lambda h, y: AdvCompSumLoss(nu=-1.0), "nu"),
    (lambda h, y: AdvCompSumLoss(tau=-1.0), "tau"),
    (lambda h, y: AdvCompSumLoss(reduction=None), "reduction"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_input_names_the_argument(i):
    h, y = _data()
    call, name = BAD[i]
    with pytest.raises(ValueError, match=rf"^{name}(:| must)"):
        call(h, y)


BAD_ATTACK = [
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x[0], y), "x"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x.long(), y), "x"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x * float("nan"), y), "x"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x[:0], y[:0]), "x"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x + 1.5, y), "x"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x - 0.5, y), "x"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y[:3]), "y"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y.double()), "y"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, torch.full_like(y, 4)), "y"),
    (lambda net, x, y: pgd_attack(net, x, torch.full_like(y, -1), 0.1, 1), "y"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, eps=-0.1), "eps"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, steps=-1), "steps"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, steps=2.0), "steps"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, steps=True), "steps"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, step_size=0.0), "step_size"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, norm="l1"), "norm"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, clamp=(1.0, 0.0)), "clamp"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, clamp=(0.5, 0.5)), "clamp"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, clamp=1.0), "clamp"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, clamp=("a", "b")), "clamp"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, tau=-1.0), "tau"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, nu=-1.0), "nu"),
    (lambda net, x, y: smooth_adv_comp_sum_loss(net, x, y, reduction="avg"), "reduction"),
    (lambda net, x, y: pgd_attack(net, x, y, 0.1, 2, loss="kl"), "loss"),
    (lambda net, x, y: pgd_attack(net, x, y[:2], 0.1, 2), "y"),
    (lambda net, x, y: pgd_attack(net, x, y, -0.1, 2), "eps"),
    (lambda net, x, y: pgd_attack(net, x, y, 0.1, -2), "steps"),
    (lambda net, x, y: pgd_attack(net, x, y, 0.1, 2, norm="inf"), "norm"),
    (lambda net, x, y: pgd_attack(net, x + 2, y, 0.1, 2), "x"),
    (lambda net, x, y: pgd_attack(net, x[0], y, 0.1, 2), "x"),
]


@pytest.mark.parametrize("i", range(len(BAD_ATTACK)))
def test_bad_attack_input_names_the_argument(i):
    net = _net()
    x, y = _inputs()
    call, name = BAD_ATTACK[i]
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call(net, x, y)


def test_clamp_range_message_and_edges():
    net = _net()
    x, y = _inputs()
    with pytest.raises(ValueError, match=r"^x: expected values in the clamp range \[0, 1\], got values from"):
        pgd_attack(net, x + 1.0 + 1e-9, y, 0.1, 1)
    lo_hi = torch.zeros_like(x)
    lo_hi[0] = 1.0  # exactly at the edges is legal
    pgd_attack(net, lo_hi, y, 0.1, 1)
    pgd_attack(net, x * 2 - 1, y, 0.1, 1, clamp=(-1, 1))  # another range
    with pytest.raises(ValueError, match=r"^x: expected values in the clamp range \[-1, 1\]"):
        pgd_attack(net, x * 2 - 1.5, y, 0.1, 1, clamp=(-1, 1))
    with pytest.raises(ValueError, match=r"^clamp: expected low < high, got \(1\.0, 0\.0\)$"):
        pgd_attack(net, x, y, 0.1, 1, clamp=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"^clamp: expected None or a pair \(low, high\), got \(0, 1, 2\)$"):
        pgd_attack(net, x, y, 0.1, 1, clamp=(0, 1, 2))
    with pytest.raises(ValueError, match=r"^steps: expected an integer >= 0, got -1$"):
        pgd_attack(net, x, y, 0.1, -1)
    with pytest.raises(ValueError, match=r"^x: expected a batch of inputs with at least 2 dimensions, got shape \(12,\)$"):
        pgd_attack(net, x[0], y, 0.1, 1)
    with pytest.raises(ValueError, match=r"^u: expected values >= 0 \(a sum of exponentials\), got a minimum of -1$"):
        comp_sum_phi(torch.tensor([0.5, -1.0]))
    with pytest.raises(ValueError, match=r"^logits: expected at least 2 classes in dimension 1, got shape \(3, 1\)$"):
        comp_sum_loss(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^adv_logits: expected at least 2 classes in dimension 1, got shape \(3, 1\)$"):
        adv_comp_sum_loss(torch.zeros(3, 2), torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))


def test_smallest_legal_inputs():
    h = torch.tensor([[0.3, -0.2]], dtype=torch.float64)  # one sample, two classes
    y = torch.tensor([1])
    p = torch.softmax(h, 1)[0, 1]
    assert comp_sum_loss(h, y, 2.0).item() == pytest.approx(1 - p.item(), abs=1e-15)
    assert adv_comp_sum_loss(h, h, y, 2.0, 1.0).item() == pytest.approx(1 - p.item(), abs=1e-15)
    net = nn.Linear(3, 2).double()
    x = torch.rand(1, 3, dtype=torch.float64)
    assert torch.isfinite(smooth_adv_comp_sum_loss(net, x, y, steps=1))


def test_registry_examples_are_valid():
    (h, y), kw = csl._logits_example(5, torch.float32, "cpu", 1)
    assert h.shape == (5, 10) and h.dtype == torch.float32 and y.shape == (5,) and kw == {}
    (h, a, y), kw = csl._adv_example(5, torch.float64, "cpu", 1)
    assert h.shape == a.shape == (5, 10) and not torch.equal(h, a) and torch.isfinite(adv_comp_sum_loss(h, a, y))


# ---------------------------------------------------------------- mutation pass (#7): the gaps its survivors showed
def test_zero_tau_and_nu_are_legal_in_every_entry_point():
    h, y = _data()
    adv = h + 0.3
    assert CompSumLoss(tau=0.0).tau == 0.0 and AdvCompSumLoss(tau=0.0, nu=0.0).tau == 0.0
    assert AdvCompSumLoss(tau=0.0, nu=0.0).nu == 0.0
    torch.testing.assert_close(AdvCompSumLoss(tau=0.0, nu=0.0)(h, adv, y), comp_sum_loss(h, y, 0.0), rtol=0, atol=0)
    torch.testing.assert_close(CompSumLoss(tau=0.0)(h, y), comp_sum_loss(h, y, 0.0), rtol=0, atol=0)
    net = _net()
    x, yy = _inputs()
    torch.manual_seed(0)
    v = smooth_adv_comp_sum_loss(net, x, yy, tau=0.0, nu=0.0, steps=1)
    torch.testing.assert_close(v, comp_sum_loss(net(x), yy, 0.0))


def test_adv_loss_rejects_labels_out_of_range_by_name():
    h, y = _data()
    for bad in (torch.full_like(y, 10), torch.full_like(y, -1)):
        with pytest.raises(ValueError, match=r"^target: labels must lie in \[0, 9\]"):
            adv_comp_sum_loss(h, h + 0.1, bad)


def test_no_warning_on_valid_inputs():
    import warnings
    h, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        comp_sum_loss(h, y, 1.5)
        adv_comp_sum_loss(h, h + 0.1, y, 0.5, 2.0)


def test_l2_projection_of_a_short_step_and_of_a_long_one():
    d = torch.tensor([[0.3, 0.4], [0.03, 0.04]], dtype=torch.float64)  # norms 0.5 and 0.05, both below 1
    torch.testing.assert_close(csl._project(d, 0.1, "l2"), torch.tensor([[0.06, 0.08], [0.03, 0.04]], dtype=torch.float64),
                               rtol=1e-12, atol=1e-15)


def test_pgd_start_is_added_and_projected_with_the_attack_norm():
    net = _net()
    x, _ = _inputs()
    start = torch.full_like(x, 0.15)
    start[:, ::2] = -0.15  # inside the l_inf ball of radius 0.2, far outside its l_2 ball (norm 0.52)
    got = csl._pgd(net, x, lambda h: h.sum(), 0.2, 0, 0.05, "linf", None, start)
    torch.testing.assert_close(got, x + start, rtol=0, atol=1e-15)
    got = csl._pgd(net, x, lambda h: h.sum(), 0.2, 0, 0.05, "l2", None, start)
    torch.testing.assert_close(got, x + start * (0.2 / start.flatten(1).norm(dim=1))[:, None], rtol=1e-12, atol=1e-15)


def test_pgd_l2_step_is_the_per_sample_normalised_gradient():
    torch.manual_seed(0)
    net = nn.Linear(12, 4).double()
    x, _ = _inputs()
    w = torch.arange(1.0, 9.0, dtype=torch.float64)  # per-sample weights: gradients of different sizes, all below 1
    objective = lambda h: 0.01 * (w * h[:, 0]).sum()
    got = csl._pgd(net, x, objective, 10.0, 1, 0.05, "l2", None, None)
    g = 0.01 * w[:, None] * net.weight[0].detach()[None, :]
    assert (g.norm(dim=1) < 1).all()
    torch.testing.assert_close(got, x + 0.05 * g / g.norm(dim=1, keepdim=True), rtol=1e-12, atol=1e-14)


def test_pgd_attack_random_starts_are_the_documented_draws(monkeypatch):
    seen = {}
    real = csl._pgd

    def spy(model, x_, objective, eps, steps, step_size, norm, clamp, start):
        seen["start"] = start
        return real(model, x_, objective, eps, steps, step_size, norm, clamp, start)

    monkeypatch.setattr(csl, "_pgd", spy)
    net = nn.Linear(1, 3).double()  # one feature: many Gaussian directions are shorter than 1
    x = torch.rand(16, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.zeros(16, dtype=torch.long)
    torch.manual_seed(5)
    pgd_attack(net, x, y, 0.3, 1, norm="l2")
    torch.manual_seed(5)
    direction = torch.randn_like(x)
    radius = 0.3 * torch.rand(16, dtype=torch.float64)
    assert (direction.abs() < 1).any()
    torch.testing.assert_close(seen["start"], direction * (radius / direction.abs().squeeze(1))[:, None],
                               rtol=1e-12, atol=1e-15)
    net12, (x12, y12) = _net(), _inputs()
    torch.manual_seed(6)
    pgd_attack(net12, x12, y12, 0.2, 1)  # l_inf: uniform in the cube, so most starts lie outside the l_2 ball
    torch.manual_seed(6)
    torch.testing.assert_close(seen["start"], (2 * torch.rand_like(x12) - 1) * 0.2, rtol=0, atol=0)
    assert (seen["start"].flatten(1).norm(dim=1) > 0.2).all()


def test_margin_objective_with_labels_below_the_last_class(monkeypatch):
    seen = {}
    real = csl._pgd

    def spy(model, x_, objective, eps, steps, step_size, norm, clamp, start):
        seen["objective"] = objective
        return real(model, x_, objective, eps, steps, step_size, norm, clamp, start)

    monkeypatch.setattr(csl, "_pgd", spy)
    net = _net()
    x, _ = _inputs()
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])  # class 3 of 4 never a label
    pgd_attack(net, x, y, 0.1, 1, loss="margin")
    h = net(x)
    other = h.masked_fill(F.one_hot(y, 4).bool(), float("-inf")).amax(1)
    torch.testing.assert_close(seen["objective"](h), (other - h.gather(1, y[:, None]).squeeze(1)).sum())


def test_registry_example_casts_every_tensor():
    (h, a, y), _ = csl._adv_example(4, torch.float32, "cpu", 0)
    assert h.dtype == a.dtype == torch.float32 and y.dtype == torch.long
