"""Tests for lossbook.ssl.contrastive_temperature (Wang & Liu 2021): the hard contrastive loss, uniformity, tolerance.

No official code and no library implements the paper's hard contrastive loss, so the references are float64 loops
transcribed from the equations: one in Python floats (tests/references.py, also used by the shared battery) and one
with per-anchor torch operations for the gradients; plus the paper's identities (alpha = 1 is NT-Xent, K = 1 is the
soft hinge on the hardest negative, the tau -> 0 and tau -> infinity limits of the plain loss), and the closed forms of
uniformity (0 when collapsed, -4 + log I0(4) on the circle) and tolerance (1 when every class collapses). The 2-process
DDP equivalence is checked by tests/test_battery.py.
"""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from references import hard_contrastive_ref

from lossbook.contrastive import nt_xent_loss
from lossbook.ssl.contrastive_temperature import (HardContrastiveLoss, hard_contrastive_loss, n_hard_negatives,
                                                  tolerance, uniformity)


def _views(n=8, d=6, seed=0, noise=0.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    z1 = z + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = z + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z1.to(dtype).requires_grad_(), z2.to(dtype).requires_grad_()


def _torch_terms(z1, z2, tau, alpha):
    "Eq. 6 anchor by anchor with torch scalars (differentiable): the 2N per-anchor terms, z1 anchors first."
    n = z1.shape[0]
    V = [z1[i] / z1[i].norm() for i in range(n)] + [z2[i] / z2[i].norm() for i in range(n)]
    k = max(1, math.ceil(alpha * (2 * n - 2) - 1e-9))
    terms = []
    for a in range(2 * n):
        p = (a + n) % (2 * n)
        negs = torch.stack([V[a] @ V[b] for b in range(2 * n) if b not in (a, p)])
        kept = negs.sort(descending=True).values[:k]
        pos = V[a] @ V[p] / tau
        terms.append(torch.logsumexp(torch.cat([pos[None], kept / tau]), 0) - pos)
    return torch.stack(terms)


def _grads(value, *xs):
    return torch.autograd.grad(value, xs, retain_graph=True)


# --- the references: values and gradients, float64 ----------------------------------------------------------------------
@pytest.mark.parametrize("n,d,tau,alpha", [(2, 3, 0.1, 0.25), (5, 4, 0.5, 0.25), (9, 16, 0.07, 0.1), (16, 8, 1.0, 0.5),
                                           (7, 5, 0.7, 1.0), (6, 4, 0.3, 0.01)])
def test_equals_loops(n, d, tau, alpha):
    z1, z2 = _views(n, d, seed=n)
    ours = hard_contrastive_loss(z1, z2, tau, alpha)
    torch.testing.assert_close(ours, hard_contrastive_ref(z1, z2, tau, alpha), rtol=1e-12, atol=1e-12)
    terms = _torch_terms(z1, z2, tau, alpha)
    torch.testing.assert_close(hard_contrastive_loss(z1, z2, tau, alpha, reduction="none"), terms, rtol=1e-12,
                               atol=1e-12)
    for a, b in zip(_grads(ours, z1, z2), _grads(terms.mean(), z1, z2)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_defaults():
    "temperature = 0.7, hard_fraction = 0.25, reduction = 'mean', in the function and the module."
    sig = inspect.signature(hard_contrastive_loss).parameters
    assert (sig["temperature"].default, sig["hard_fraction"].default, sig["reduction"].default,
            sig["gather_distributed"].default) == (0.7, 0.25, "mean", False)
    z1, z2 = _views(10, 6, seed=1)
    v = hard_contrastive_loss(z1, z2)
    torch.testing.assert_close(v, hard_contrastive_ref(z1, z2, 0.7, 0.25), rtol=1e-12, atol=1e-12)
    assert v.ndim == 0
    for other in ((0.5, 0.25), (0.7, 0.5), (0.7, 0.2), (1.0, 0.25)):
        assert abs(v.item() - hard_contrastive_loss(z1, z2, *other).item()) > 1e-6, other
    m = HardContrastiveLoss()
    assert (m.temperature, m.hard_fraction, m.reduction, m.gather_distributed) == (0.7, 0.25, "mean", False)
    torch.testing.assert_close(m(z1, z2), v, rtol=0, atol=0)
    assert "temperature=0.7" in repr(m) and "hard_fraction=0.25" in repr(m)


def test_module_equals_function_for_every_option():
    z1, z2 = _views(7, 5, seed=2)
    for tau, alpha, red in ((0.2, 0.5, "sum"), (1.0, 1.0, "none"), (0.07, 0.1, "mean")):
        torch.testing.assert_close(HardContrastiveLoss(tau, alpha, red)(z1, z2),
                                   hard_contrastive_loss(z1, z2, tau, alpha, red), rtol=0, atol=0)


def test_reductions_and_order():
    z1, z2 = _views(6, 5, seed=3)
    none = hard_contrastive_loss(z1, z2, 0.3, reduction="none")
    assert none.shape == (12,)
    torch.testing.assert_close(hard_contrastive_loss(z1, z2, 0.3, reduction="mean"), none.mean())
    torch.testing.assert_close(hard_contrastive_loss(z1, z2, 0.3, reduction="sum"), none.sum())
    # the z1 anchors first: swapping the views swaps the two halves
    swapped = hard_contrastive_loss(z2, z1, 0.3, reduction="none")
    torch.testing.assert_close(swapped, torch.cat([none[6:], none[:6]]))


def test_gradcheck():
    z1, z2 = _views(5, 4, seed=4)
    assert torch.autograd.gradcheck(lambda a, b: hard_contrastive_loss(a, b, 0.5, 0.25), (z1, z2))
    assert torch.autograd.gradcheck(lambda a, b: hard_contrastive_loss(a, b, 0.2, 0.5, reduction="none"), (z1, z2))


def test_float32_close_to_float64():
    z1, z2 = _views(12, 8, seed=5)
    v64 = hard_contrastive_loss(z1, z2, 0.1)
    v32 = hard_contrastive_loss(z1.float(), z2.float(), 0.1)
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, rtol=1e-5, atol=1e-6)
    # half inputs are computed in float32
    assert hard_contrastive_loss(z1.bfloat16(), z2.bfloat16(), 0.1).dtype == torch.float32


# --- the paper's identities ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.05, 0.2, 1.0])
def test_alpha_one_is_nt_xent(tau):
    z1, z2 = _views(9, 6, seed=6)
    ours = hard_contrastive_loss(z1, z2, tau, hard_fraction=1.0, reduction="none")
    ref = nt_xent_loss(z1, z2, tau, reduction="none")
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(_grads(ours.sum(), z1, z2), _grads(ref.sum(), z1, z2)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _sims(z1, z2):
    h = F.normalize(torch.cat([z1, z2]), dim=1).detach()
    n2 = h.shape[0]
    S = h @ h.T
    r = torch.arange(n2)
    partner = (r + n2 // 2) % n2
    s_pos = S[r, partner]
    S_neg = S.clone()
    S_neg[r, r] = -math.inf
    S_neg[r, partner] = -math.inf
    return s_pos, S_neg


def test_one_negative_is_the_soft_hinge():
    z1, z2 = _views(8, 5, seed=7)
    s_pos, S_neg = _sims(z1, z2)
    ours = hard_contrastive_loss(z1, z2, 0.2, hard_fraction=1e-3, reduction="none")
    torch.testing.assert_close(ours, F.softplus((S_neg.max(1).values - s_pos) / 0.2), rtol=1e-12, atol=1e-12)


def test_at_most_plain_and_increasing_in_alpha():
    z1, z2 = _views(10, 6, seed=8)
    vals = [hard_contrastive_loss(z1, z2, 0.5, a, reduction="none") for a in (0.05, 0.25, 0.5, 0.75, 1.0)]
    for lo, hi in zip(vals, vals[1:]):
        assert (lo <= hi + 1e-12).all()
    assert (vals[0] < vals[-1]).all()


def test_only_the_kept_negatives_get_gradient():
    "An anchor's term depends on its K most similar negatives, its positive and itself, nothing else."
    z1, z2 = _views(6, 5, seed=9)
    term0 = hard_contrastive_loss(z1, z2, 0.3, 0.25, reduction="none")[0]  # anchor z1[0], positive z2[0]
    g1, g2 = _grads(term0, z1, z2)
    _, S_neg = _sims(z1, z2)
    k = n_hard_negatives(10, 0.25)
    kept = set(S_neg[0].topk(k).indices.tolist()) | {0, 6}  # kept negatives, the anchor, its positive
    G = torch.cat([g1, g2])
    for row in range(12):
        assert (G[row].abs().max() > 0) == (row in kept), row


@pytest.mark.parametrize("tau", [0.05, 0.3, 1.0])
def test_logit_gradients_are_the_softmax_over_kept_candidates(tau):
    "Eq. 2 on the kept candidates: dL/ds_pos = -(1 - P_pos)/tau, dL/ds_j = P_j/tau for the kept negatives, 0 otherwise."
    g = torch.Generator().manual_seed(10)
    s = (2 * torch.rand(11, generator=g, dtype=torch.float64) - 1).requires_grad_()  # s[0] the positive, 10 negatives
    k = n_hard_negatives(10, 0.25)
    kept = s[1:].topk(k).values
    loss = torch.cat([s[:1], kept]).div(tau).logsumexp(0) - s[0] / tau
    grad = _grads(loss, s)[0]
    order = s[1:].detach().argsort(descending=True) + 1
    P = torch.softmax(torch.cat([s[:1], s[order[:k]]]).detach() / tau, 0)
    torch.testing.assert_close(grad[0], -(1 - P[0]) / tau)
    torch.testing.assert_close(grad[order[:k]], P[1:] / tau)
    assert (grad[order[k:]] == 0).all()


def test_invariances():
    z1, z2 = _views(9, 6, seed=11)
    v = hard_contrastive_loss(z1, z2, 0.2)
    torch.testing.assert_close(hard_contrastive_loss(3.0 * z1, 0.1 * z2, 0.2), v, rtol=1e-12, atol=1e-12)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(hard_contrastive_loss(z1[perm], z2[perm], 0.2), v, rtol=1e-12, atol=1e-12)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    torch.testing.assert_close(hard_contrastive_loss(z1 @ q, z2 @ q, 0.2), v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(hard_contrastive_loss(z2, z1, 0.2), v, rtol=1e-12, atol=1e-12)


def test_plain_loss_limits():
    "Eq. 4: tau L -> max(s_max - s_pos, 0) as tau -> 0; Eq. 5: the linear expansion as tau -> infinity (M negatives)."
    z1, z2 = _views(8, 5, seed=12)
    s_pos, S_neg = _sims(z1, z2)
    tau = 1e-3
    torch.testing.assert_close(tau * nt_xent_loss(z1, z2, tau, reduction="none").detach(),
                               (S_neg.max(1).values - s_pos).clamp_min(0), rtol=0, atol=1e-2)
    M, tau = 14, 1e3
    s_sum = torch.where(torch.isinf(S_neg), 0.0, S_neg).sum(1)
    lin = math.log(M + 1) - M / ((M + 1) * tau) * s_pos + s_sum / ((M + 1) * tau)
    torch.testing.assert_close(nt_xent_loss(z1, z2, tau, reduction="none").detach(), lin, rtol=0, atol=1e-6)
    # the hard loss at large tau: the same expansion over the K kept negatives
    k = n_hard_negatives(M, 0.25)
    top_sum = S_neg.topk(k, dim=1).values.sum(1)
    lin_hard = math.log(k + 1) - k / ((k + 1) * tau) * s_pos + top_sum / ((k + 1) * tau)
    torch.testing.assert_close(hard_contrastive_loss(z1, z2, tau, 0.25, reduction="none").detach(), lin_hard, rtol=0,
                               atol=1e-6)


def test_extreme_temperatures_stay_finite():
    z1, z2 = _views(8, 5, seed=13, dtype=torch.float32)
    for tau in (1e-4, 1e4):
        v = hard_contrastive_loss(z1, z2, tau)
        (g1, g2) = _grads(v, z1, z2)
        assert torch.isfinite(v) and torch.isfinite(g1).all() and torch.isfinite(g2).all()


def test_n_hard_negatives():
    assert [n_hard_negatives(20, a) for a in (0.01, 0.05, 0.25, 0.26, 0.5, 1.0)] == [1, 1, 5, 6, 10, 20]
    assert n_hard_negatives(30, 0.1) == 3  # 0.1 * 30 = 3.0000000000000004 in floating point: still 3
    assert n_hard_negatives(16382, 0.25) == 4096
    assert n_hard_negatives(7) == 2  # the default alpha = 0.25: ceil(1.75)
    assert n_hard_negatives(1, 0.25) == 1
    for bad in (0.0, -0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^hard_fraction:"):
            n_hard_negatives(10, bad)
    with pytest.raises(ValueError, match=r"^n_negatives:"):
        n_hard_negatives(0, 0.5)


# --- bad inputs -----------------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_naming_the_argument():
    z1, z2 = _views(6, 5, seed=14)
    z1, z2 = z1.detach(), z2.detach()
    bad = z1.clone()
    bad[0, 0] = float("nan")
    cases = [
        ((bad, z2), {}, r"^z1:"),
        ((z1, z2.clone().fill_(float("inf"))), {}, r"^z2:"),
        ((z1, z2[:, :4]), {}, r"^z1 and z2 must have the same shape"),
        ((z1, z2[:5]), {}, r"^z1 and z2 must have the same shape"),
        ((z1[0], z2[0]), {}, r"^z1:"),
        ((z1.long(), z2), {}, r"^z1:"),
        ((z1, z2.long()), {}, r"^z2:"),
        ((z1[:0], z2[:0]), {}, r"^z1:"),
        ((z1[:1], z2[:1]), {}, r"^z1, z2: the hard contrastive loss needs at least 2 pairs"),
        ((z1, z2), {"temperature": 0.0}, r"^temperature:"),
        ((z1, z2), {"temperature": -1.0}, r"^temperature:"),
        ((z1, z2), {"temperature": float("nan")}, r"^temperature:"),
        ((z1, z2), {"hard_fraction": 0.0}, r"^hard_fraction:"),
        ((z1, z2), {"hard_fraction": 1.01}, r"^hard_fraction:"),
        ((z1, z2), {"hard_fraction": float("nan")}, r"^hard_fraction:"),
        ((z1, z2), {"reduction": "avg"}, r"^reduction:"),
    ]
    for args, kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            hard_contrastive_loss(*args, **kwargs)
    for kwargs, msg in (({"temperature": 0.0}, r"^temperature:"), ({"hard_fraction": 2.0}, r"^hard_fraction:"),
                        ({"reduction": "avg"}, r"^reduction:")):
        with pytest.raises(ValueError, match=msg):
            HardContrastiveLoss(**kwargs)


# --- uniformity ---------------------------------------------------------------------------------------------------------
def _uniformity_loop(z, t):
    Z = F.normalize(z.detach().double(), dim=1).tolist()
    vals = [math.exp(-t * sum((a - b) ** 2 for a, b in zip(Z[i], Z[j])))
            for i in range(len(Z)) for j in range(i + 1, len(Z))]
    return math.log(sum(vals) / len(vals))


@pytest.mark.parametrize("n,d,t", [(2, 3, 2.0), (7, 4, 2.0), (20, 8, 0.5), (13, 3, 5.0)])
def test_uniformity_equals_loop(n, d, t):
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    assert abs(uniformity(z, t).item() - _uniformity_loop(z, t)) < 1e-12


def test_uniformity_default_t_is_two():
    assert inspect.signature(uniformity).parameters["t"].default == 2.0
    z = torch.randn(15, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(uniformity(z).item() - _uniformity_loop(z, 2.0)) < 1e-12
    assert abs(uniformity(z).item() - uniformity(z, 1.0).item()) > 1e-3


def test_uniformity_closed_forms():
    assert abs(uniformity(torch.ones(6, 3, dtype=torch.float64)).item()) < 1e-12  # collapsed: 0
    a = torch.arange(3000, dtype=torch.float64) * (2 * math.pi / 3000)
    circle = torch.stack([a.cos(), a.sin()], 1)
    i0_4 = sum(4.0 ** m / math.factorial(m) ** 2 for m in range(40))  # I_0(4) = sum (4/2)^(2m) / m!^2
    # n evenly spaced points: the mean over all n^2 ordered pairs is E = e^-4 I0(4) (the trapezoid rule is exact to
    # round-off for this periodic integrand); leaving out the n pairs x = y (each exp(0) = 1) gives (n E - 1) / (n - 1)
    E = math.exp(-4) * i0_4
    assert abs(uniformity(circle).item() - math.log((3000 * E - 1) / 2999)) < 1e-9
    assert abs(uniformity(circle).item() - (-4 + math.log(i0_4))) < 2e-3  # -> -1.5750 as n grows
    # two antipodal points: ||x - y||^2 = 4, log exp(-2 * 4) = -8
    assert abs(uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)).item() + 8) < 1e-12
    # scale invariant (normalised inside), and more spread means lower
    z = torch.randn(30, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert abs(uniformity(5 * z).item() - uniformity(z).item()) < 1e-12
    assert uniformity(z).item() < uniformity(z + 3.0).item()


def test_uniformity_dtypes_and_gradient():
    z = torch.randn(10, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64).requires_grad_()
    u = uniformity(z)
    (g,) = torch.autograd.grad(u, z)
    assert torch.isfinite(g).all() and g.abs().max() > 0
    assert uniformity(z.detach().float()).dtype == torch.float32
    assert uniformity(z.detach().bfloat16()).dtype == torch.float32
    assert abs(uniformity(z.detach().float()).item() - u.item()) < 1e-5


def test_uniformity_bad_inputs():
    z = torch.randn(5, 3)
    bad = z.clone()
    bad[1, 1] = float("nan")
    for args, msg in (((bad,), r"^z:"), ((z[0],), r"^z:"), ((z.long(),), r"^z:"), ((z[:1],), r"^z: uniformity needs at least 2"),
                      ((z[:0],), r"^z:"), ((z, 0.0), r"^t:"), ((z, -2.0), r"^t:"), ((z, float("inf")), r"^t:")):
        with pytest.raises(ValueError, match=msg):
            uniformity(*args)


# --- tolerance ----------------------------------------------------------------------------------------------------------
def test_tolerance_equals_loop():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(17, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (17,), generator=g)
    Z = F.normalize(z, dim=1).tolist()
    sims = [sum(a * b for a, b in zip(Z[i], Z[j])) for i in range(17) for j in range(17) if i != j and y[i] == y[j]]
    assert abs(tolerance(z, y).item() - sum(sims) / len(sims)) < 1e-12


def test_tolerance_closed_forms():
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    collapsed = F.one_hot(y, 3).double() * torch.tensor([1.0, 2.0, 3.0, 1.0, 4.0, 1.0], dtype=torch.float64)[:, None]
    assert abs(tolerance(collapsed, y).item() - 1.0) < 1e-12
    assert abs(tolerance(torch.tensor([[1.0, 0.0], [-3.0, 0.0]]), torch.tensor([0, 0])).item() + 1.0) < 1e-6
    # the diagonal is left out: two orthogonal same-class points have tolerance 0, not 1/2
    assert abs(tolerance(torch.eye(2, dtype=torch.float64), torch.tensor([1, 1])).item()) < 1e-12
    # a class that occurs once contributes nothing
    z = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(tolerance(z, torch.tensor([0, 0, 1])), F.cosine_similarity(z[:1], z[1:2])[0])
    assert tolerance(z.bfloat16(), torch.tensor([0, 0, 1])).dtype == torch.float32


def test_tolerance_bad_inputs():
    z = torch.randn(4, 3)
    bad = z.clone()
    bad[0, 0] = float("inf")
    y = torch.tensor([0, 0, 1, 1])
    for args, msg in (((bad, y), r"^z:"), ((z[0], y), r"^z:"), ((z.long(), y), r"^z:"), ((z, y[:3]), r"^labels:"),
                      ((z, y.float()), r"^labels:"), ((z, y[:, None]), r"^labels:"),
                      ((z, torch.arange(4)), r"^labels: no two embeddings share a label"), ((z[:0], y[:0]), r"^z:")):
        with pytest.raises(ValueError, match=msg):
            tolerance(*args)


def test_gathers_only_when_ddp_is_active(monkeypatch):
    import lossbook.ssl.contrastive_temperature as mod
    calls = []
    monkeypatch.setattr(mod, "gather", lambda t: calls.append(tuple(t.shape)) or t)
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append("slice") or slice(0, n))
    real = mod.reduce_over_ranks
    monkeypatch.setattr(mod, "reduce_over_ranks", lambda t, n, r, a: calls.append(("reduce", a)) or real(t, n, r, a))
    g = torch.Generator().manual_seed(40)
    z1, z2 = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    ref = hard_contrastive_loss(z1, z2)
    hard_contrastive_loss(z1, z2, gather_distributed=True)  # no process group: DDP is not active
    assert calls == [("reduce", False), ("reduce", False)]
    calls.clear()
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    torch.testing.assert_close(hard_contrastive_loss(z1, z2, gather_distributed=True), ref, rtol=1e-12, atol=1e-12)
    assert sorted(map(str, calls)) == sorted(map(str, [(6, 4), (6, 4), "slice", ("reduce", True)]))


def test_second_view_is_checked_by_its_own_name():
    z1 = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^z2: expected 2 dimensions"):
        hard_contrastive_loss(z1, z1[0])


def test_n_hard_negatives_rounds_to_nine_decimals():
    assert n_hard_negatives(30, 0.1 + 1.5e-11) == 3  # 3.00000000045 rounds to 3.0, then ceil: 3 (not 4)
    assert n_hard_negatives(30, 0.1 + 1e-8) == 4  # 3.0000003 is genuinely above 3


def test_mixed_precision_views_promote():
    z1 = torch.randn(5, 3, dtype=torch.float64)
    z2 = torch.randn(5, 3, dtype=torch.float64)
    assert hard_contrastive_loss(z1.float(), z2).dtype == torch.float64
    assert hard_contrastive_loss(z1, z2.float()).dtype == torch.float64


def test_half_precision_views_are_computed_in_float32():
    g = torch.Generator().manual_seed(41)
    z1, z2 = torch.randn(5, 3, generator=g).bfloat16(), torch.randn(5, 3, generator=g).bfloat16()
    got = hard_contrastive_loss(z1, z2, reduction="none")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, hard_contrastive_loss(z1.float(), z2.float(), reduction="none"), rtol=0, atol=0)
