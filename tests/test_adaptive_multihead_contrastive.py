"""Tests for lossbook.ssl.adaptive_multihead_contrastive (Wang et al. 2024, AMCL; the official release amcl/losses.py).

No library implements AMCL, so the references are (a) a float64 brute-force loop in Python floats transcribed from the
release's AMCLNTXentLoss (tests/references.py, also the shared battery's pinned value), checked at B = 4, H = 2, D = 3
with every top-k, (b) a per-anchor torch loop for the gradients (of the views and of the temperature network), and
(c) the card's properties: tau inside its bounds, Omega's minimum at 2/d', the constant-temperature reduction and its
closed-form gradient, top-k >= 2B-2 uses every negative, view symmetry, head additivity, gradcheck. The 2-process DDP
equivalence of the views' gradients is in tests/test_battery.py; the temperature network's gradients are checked here.
"""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from ddp_utils import run_distributed
from references import amcl_ntxent_ref

from lossbook.ssl.adaptive_multihead_contrastive import (AMCLNTXentLoss, MultiHeadProjector, PairTemperature,
                                                         _amcl_ntxent_example, _example_temperature_net,
                                                         amcl_ntxent_loss, temperature_regularizer)


def _views(n=4, h=2, d=3, seed=0, noise=0.5, dtype=torch.float64, grad=True):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, h, d, generator=g, dtype=torch.float64)
    z1 = z + noise * torch.randn(n, h, d, generator=g, dtype=torch.float64)
    z2 = z + noise * torch.randn(n, h, d, generator=g, dtype=torch.float64)
    z1, z2 = z1.to(dtype), z2.to(dtype)
    return (z1.requires_grad_(), z2.requires_grad_()) if grad else (z1, z2)


def _net(d=3, seed=7, scale=0.4, hidden=None):
    torch.manual_seed(seed)
    net = PairTemperature(d, hidden).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return net


def _const(c):
    "A 'network' that gives every pair the temperature c (broadcasting form, no `pairwise`)."
    return lambda za, zb: torch.full(torch.broadcast_shapes(za.shape, zb.shape)[:-1], c, dtype=za.dtype)


def _torch_loop(z1, z2, net, beta=0.01, topk=100):
    "Eq. (4)-(5) anchor by anchor with torch scalars (differentiable in the views and in the network)."
    n, H, D = z1.shape
    total = 0
    for h in range(H):
        U = [v / v.norm() for v in list(z1[:, h]) + list(z2[:, h])]
        P = [net.embed(u) for u in U]
        tau = lambda a, b: net.tau_min + (net.tau_max - net.tau_min) * torch.sigmoid(-(P[a] @ P[b]))
        for a in range(2 * n):
            p = (a + n) % (2 * n)
            negs = sorted((b for b in range(2 * n) if b not in (a, p)), key=lambda b: -float(U[a].detach() @ U[b].detach()))
            K = negs[:min(topk, 2 * n - 2)]
            tp = tau(a, p)
            total = total + (-(U[a] @ U[p]) / tp + sum((U[a] @ U[b]) / tau(a, b) for b in K) / len(K)
                             + beta * (D / 2 * torch.log(tp) + 1 / tp)
                             - beta * sum(torch.log(tau(a, b)) + 1 / tau(a, b) for b in K))
    return total / (2 * n)


# --- the brute-force reference: B = 4, H = 2, D = 3 (the card's oracle) --------------------------------------------------
@pytest.mark.parametrize("topk", [1, 2, 3, 5, 6, 100])
@pytest.mark.parametrize("beta", [0.0, 0.01, 0.5])
def test_brute_force_reference_b4_h2_d3(topk, beta):
    z1, z2 = _views(4, 2, 3, seed=topk)
    net = _net(3)
    ours = amcl_ntxent_loss(z1, z2, net, beta=beta, topk=topk)
    torch.testing.assert_close(ours, amcl_ntxent_ref(z1, z2, net, beta=beta, topk=topk), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,h,d", [(2, 1, 2), (4, 2, 3), (7, 3, 5)])
def test_values_and_gradients_equal_torch_loop(n, h, d):
    z1, z2 = _views(n, h, d, seed=n)
    net = _net(d, hidden=4)
    ours, ref = amcl_ntxent_loss(z1, z2, net, topk=3), _torch_loop(z1, z2, net, topk=3)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    params = list(net.parameters())
    for a, b in zip(torch.autograd.grad(ours, [z1, z2, *params]), torch.autograd.grad(ref, [z1, z2, *params])):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_generic_callable_equals_pairwise_path():
    z1, z2 = _views(6, 2, 3)
    net = _net(3)
    generic = lambda za, zb: net(za, zb)  # no `pairwise`: the broadcasting form
    torch.testing.assert_close(amcl_ntxent_loss(z1, z2, generic), amcl_ntxent_loss(z1, z2, net), rtol=1e-12, atol=1e-13)


def test_gradcheck_views_and_network():
    z1, z2 = _views(4, 2, 3, seed=3)
    net = _net(3)
    params = [p.detach().clone().requires_grad_() for p in net.parameters()]
    names = [n for n, _ in net.named_parameters()]

    def f(a, b, *ps):
        return amcl_ntxent_loss(a, b, lambda x, y: torch.func.functional_call(net, dict(zip(names, ps)), (x, y)),
                                topk=3)

    assert torch.autograd.gradcheck(f, (z1, z2, *params), eps=1e-6, atol=1e-6)


# --- the temperatures and the regulariser ----------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e-3, 1.0, 10.0, 1e3])
def test_tau_inside_its_bounds(scale):
    net = _net(4, scale=1.0)
    g = torch.Generator().manual_seed(1)
    za, zb = scale * torch.randn(20, 4, generator=g, dtype=torch.float64), torch.randn(30, 4, generator=g,
                                                                                     dtype=torch.float64)
    with torch.no_grad():
        t = net(za[:, None], zb[None])
    assert t.shape == (20, 30)
    assert bool(((t >= net.tau_min) & (t <= net.tau_max)).all())
    with torch.no_grad():  # moderate scores (unit vectors, small weights): strictly inside
        t = _net(4)(F.normalize(za, dim=1)[:, None], F.normalize(zb, dim=1)[None])
    assert bool(((t > 1e-5) & (t < 2.0)).all())


def test_tau_map_is_decreasing_with_the_paper_constants():
    net = PairTemperature(3)
    r = torch.tensor([-50.0, -1.0, 0.0, 1.0, 50.0], dtype=torch.float64)
    t = net.score_to_temperature(r)
    assert bool((t[1:] < t[:-1]).all())
    torch.testing.assert_close(t[2], torch.tensor((1e-5 + 2.0) / 2, dtype=torch.float64))
    torch.testing.assert_close(t[0], torch.tensor(2.0, dtype=torch.float64))
    torch.testing.assert_close(t[-1], torch.tensor(1e-5, dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(t[3], torch.tensor(1e-5 + (2.0 - 1e-5) / (1 + math.e), dtype=torch.float64))


def test_pair_temperature_defaults_and_forms():
    sig = inspect.signature(PairTemperature)
    assert sig.parameters["hidden"].default is None
    assert sig.parameters["tau_min"].default == 1e-5 and sig.parameters["tau_max"].default == 2.0
    net = PairTemperature(6)
    assert net.phi[0].in_features == 6 and net.phi[0].out_features == 6 and net.phi[2].out_features == 6
    assert isinstance(net.phi[1], torch.nn.ReLU)
    assert net.tau_min == 1e-5 and net.tau_max == 2.0
    assert PairTemperature(6, hidden=9).phi[0].out_features == 9
    za, zb = torch.randn(5, 6), torch.randn(4, 6)
    T = net(za[:, None], zb[None])
    torch.testing.assert_close(net.pairwise(za, zb), T)
    torch.testing.assert_close(T[1, 2], net(za[1], zb[2]))
    torch.testing.assert_close(net(za[:, None], za[None]), net(za[:, None], za[None]).T)  # symmetric
    # the Eq. (2) formula by hand
    r = (net.phi(za[0]) * net.phi(zb[0])).sum()
    torch.testing.assert_close(T[0, 0], 1e-5 + (2.0 - 1e-5) * torch.sigmoid(-r))


def test_pair_temperature_runs_in_its_inputs_dtype_with_gradient():
    net = _net(3)  # float64 weights
    za = torch.randn(4, 3)
    t = net(za, za.flip(0))
    assert t.dtype == torch.float32
    t.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float64 and bool(p.grad.abs().sum() > 0)
               for p in net.parameters())


@pytest.mark.parametrize("d", [1, 2, 8, 32, 128])
def test_omega_minimum_at_two_over_d(d):
    t = torch.tensor(2.0 / d, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(temperature_regularizer(t, d), t)
    assert abs(float(g)) < 1e-9 * d * d
    for f in (0.9, 1.1):
        assert temperature_regularizer(torch.tensor(2.0 / d * f, dtype=torch.float64), d) > temperature_regularizer(
            t.detach(), d)


def test_omega_formula():
    tau = torch.tensor([0.1, 0.5, 1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(temperature_regularizer(tau, 10), 5 * torch.log(tau) + 1 / tau)
    assert temperature_regularizer(torch.tensor([0.5], dtype=torch.float16), 4).dtype == torch.float32


# --- the loss's properties ------------------------------------------------------------------------------------------------
def _closed_form_grad(z1, z2, c, k):
    "Eq. (6)'s gradient w.r.t. the views at constant temperature c: dL/ds is -1/(2Nc) for positives, 1/(2Nkc) for top-k."
    n, H, D = z1.shape
    g1, g2 = torch.zeros_like(z1), torch.zeros_like(z2)
    for h in range(H):
        Z = torch.cat([z1[:, h], z2[:, h]]).detach()
        nrm = Z.norm(dim=1, keepdim=True)
        U = Z / nrm
        S = U @ U.T
        W = torch.zeros_like(S)
        for a in range(2 * n):
            p = (a + n) % (2 * n)
            W[a, p] -= 1 / (2 * n * c)
            negs = sorted((b for b in range(2 * n) if b not in (a, p)), key=lambda b: -float(S[a, b]))[:k]
            for b in negs:
                W[a, b] += 1 / (2 * n * k * c)
        dU = (W + W.T) @ U  # s_ab = <u_a, u_b>
        dZ = (dU - (dU * U).sum(1, keepdim=True) * U) / nrm  # through the normalisation
        g1[:, h], g2[:, h] = dZ[:n], dZ[n:]
    return g1, g2


@pytest.mark.parametrize("beta", [0.0, 0.01, 0.3])
@pytest.mark.parametrize("topk", [2, 5, 100])
def test_constant_tau_reduction_and_its_gradient(beta, topk):
    n, H, D, c = 5, 2, 4, 0.3
    z1, z2 = _views(n, H, D, seed=topk)
    k = min(topk, 2 * n - 2)
    loss = amcl_ntxent_loss(z1, z2, _const(c), beta=beta, topk=topk)
    # Eq. (6): the similarity part plus beta * H * (Omega(c) - k (log c + 1/c))
    zero = amcl_ntxent_loss(z1, z2, _const(c), beta=0.0, topk=topk)
    const = beta * H * ((D / 2) * math.log(c) + 1 / c - k * (math.log(c) + 1 / c))
    torch.testing.assert_close(loss, zero + const, rtol=1e-12, atol=1e-12)
    g1, g2 = torch.autograd.grad(loss, (z1, z2))
    c1, c2 = _closed_form_grad(z1, z2, c, k)
    torch.testing.assert_close(g1, c1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g2, c2, rtol=1e-10, atol=1e-12)


def test_topk_at_least_2b_minus_2_uses_every_negative():
    z1, z2 = _views(6, 2, 3)
    net = _net(3)
    full = amcl_ntxent_loss(z1, z2, net, topk=10)  # 2B - 2 = 10
    torch.testing.assert_close(amcl_ntxent_loss(z1, z2, net, topk=11), full)
    torch.testing.assert_close(amcl_ntxent_loss(z1, z2, net, topk=1000), full)
    assert not torch.allclose(amcl_ntxent_loss(z1, z2, net, topk=9), full)


def test_default_topk_is_100_and_default_beta_is_001():
    sig = inspect.signature(amcl_ntxent_loss)
    assert sig.parameters["beta"].default == 0.01 and sig.parameters["topk"].default == 100
    assert sig.parameters["reduction"].default == "mean" and sig.parameters["gather_distributed"].default is False
    z1, z2 = _views(60, 1, 3, grad=False)  # 2B - 2 = 118 > 100 negatives
    net = _net(3)
    default = amcl_ntxent_loss(z1, z2, net)
    torch.testing.assert_close(default, amcl_ntxent_loss(z1, z2, net, beta=0.01, topk=100), rtol=0, atol=0)
    assert not torch.allclose(default, amcl_ntxent_loss(z1, z2, net, topk=99))
    assert not torch.allclose(default, amcl_ntxent_loss(z1, z2, net, topk=101))
    assert not torch.allclose(default, amcl_ntxent_loss(z1, z2, net, beta=0.02))


def test_view_symmetry_and_anchor_order():
    z1, z2 = _views(5, 3, 4, grad=False)
    net = _net(4)
    torch.testing.assert_close(amcl_ntxent_loss(z1, z2, net), amcl_ntxent_loss(z2, z1, net), rtol=1e-12, atol=1e-12)
    a, b = amcl_ntxent_loss(z1, z2, net, reduction="none"), amcl_ntxent_loss(z2, z1, net, reduction="none")
    assert a.shape == (10,)
    torch.testing.assert_close(a, b.roll(5), rtol=1e-12, atol=1e-12)  # the first views' anchors come first


def test_heads_add():
    z1, z2 = _views(6, 3, 4, grad=False)
    net = _net(4)
    parts = sum(amcl_ntxent_loss(z1[:, h:h + 1], z2[:, h:h + 1], net) for h in range(3))
    torch.testing.assert_close(amcl_ntxent_loss(z1, z2, net), parts, rtol=1e-12, atol=1e-12)


def test_reductions():
    z1, z2 = _views(5, 2, 3, grad=False)
    net = _net(3)
    none = amcl_ntxent_loss(z1, z2, net, reduction="none")
    torch.testing.assert_close(amcl_ntxent_loss(z1, z2, net, reduction="mean"), none.mean())
    torch.testing.assert_close(amcl_ntxent_loss(z1, z2, net, reduction="sum"), none.sum())


def test_scale_invariance_in_the_views():
    z1, z2 = _views(5, 2, 3, grad=False)
    net = _net(3)
    torch.testing.assert_close(amcl_ntxent_loss(3.0 * z1, 0.5 * z2, net), amcl_ntxent_loss(z1, z2, net))


def test_gradient_signs_at_constant_tau():
    "Raising s_ap lowers the anchor's term, raising its top-k s_an raises it (Eq. 6: -1/c and +1/(kc))."
    n, c = 4, 0.5
    z1, z2 = _views(n, 1, 3, grad=False)
    Z = torch.cat([z1[:, 0], z2[:, 0]]).requires_grad_()
    term0 = amcl_ntxent_loss(Z[:n, None], Z[n:, None], _const(c), beta=0.0, topk=1, reduction="none")[0]
    (g,) = torch.autograd.grad(term0, Z)
    U = F.normalize(Z.detach(), dim=1)
    towards = lambda b: U[0] - (U[0] @ U[b]) * U[b]  # moving z_b towards the anchor z_0 raises s_0b
    assert float(g[n] @ towards(n)) < 0  # the positive (the other view of image 0)
    S = U @ U[0]
    S[0], S[n] = -2, -2
    j = int(S.argmax())  # the hardest negative: the one top-1 keeps
    assert float(g[j] @ towards(j)) > 0
    others = [b for b in range(2 * n) if b not in (0, n, j)]
    assert all(float(g[b].abs().sum()) == 0 for b in others)  # the negatives left out of the top-k get no gradient


def test_temperature_network_receives_gradient_and_float32_works():
    z1, z2 = _views(6, 2, 3, dtype=torch.float32, grad=False)
    net = _net(3)
    loss = amcl_ntxent_loss(z1, z2, net)
    assert loss.dtype == torch.float32
    loss.backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) and bool(p.grad.abs().sum() > 0)
               for p in net.parameters())
    torch.testing.assert_close(loss.double(), amcl_ntxent_loss(z1.double(), z2.double(), net), rtol=1e-5, atol=1e-5)


def test_module_equals_function_and_owns_its_network():
    sig = inspect.signature(AMCLNTXentLoss)
    defaults = {k: v.default for k, v in sig.parameters.items()}
    assert defaults == {"dim": None, "hidden": None, "tau_min": 1e-5, "tau_max": 2.0, "beta": 0.01, "topk": 100,
                        "reduction": "mean", "gather_distributed": False}
    z1, z2 = _views(5, 2, 3, grad=False)
    m = AMCLNTXentLoss(3, beta=0.2, topk=4, reduction="sum")
    assert isinstance(m.temp_net, PairTemperature) and m.temp_net.dim == 3 and m.temp_net.tau_min == 1e-5
    assert m.temp_net.tau_max == 2.0 and m.temp_net.hidden == 3
    assert AMCLNTXentLoss(3, hidden=7, tau_min=0.01, tau_max=1.5).temp_net.hidden == 7
    torch.testing.assert_close(m(z1, z2), amcl_ntxent_loss(z1, z2, m.temp_net, beta=0.2, topk=4, reduction="sum"))
    other = _net(3)
    torch.testing.assert_close(m(z1, z2, other), amcl_ntxent_loss(z1, z2, other, beta=0.2, topk=4, reduction="sum"))
    assert {n for n, _ in m.named_parameters()} == {"temp_net.phi.0.weight", "temp_net.phi.0.bias",
                                                    "temp_net.phi.2.weight", "temp_net.phi.2.bias"}
    d = AMCLNTXentLoss()
    assert d.temp_net is None and d.beta == 0.01 and d.topk == 100 and d.reduction == "mean"
    assert d.gather_distributed is False
    torch.testing.assert_close(d(z1, z2, other), amcl_ntxent_loss(z1, z2, other), rtol=0, atol=0)


def test_multi_head_projector():
    sig = inspect.signature(MultiHeadProjector)
    assert sig.parameters["num_heads"].default == 3 and sig.parameters["hidden"].default == 512
    p = MultiHeadProjector(6, 4)
    assert len(p.heads) == 3 and p.heads[0][0].out_features == 512 and isinstance(p.heads[0][1], torch.nn.ReLU)
    x = torch.randn(5, 6)
    out = p(x)
    assert out.shape == (5, 3, 4)
    for h in range(3):
        torch.testing.assert_close(out[:, h], p.heads[h](x))
    assert MultiHeadProjector(6, 4, num_heads=2, hidden=8)(x).shape == (5, 2, 4)


def test_example_is_deterministic_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    (a1, a2, n1), _ = _amcl_ntxent_example(5, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    (b1, b2, n2), _ = _amcl_ntxent_example(5, torch.float32, seed=3)
    torch.testing.assert_close(a1.float(), b1)
    assert all(torch.equal(p, q) for p, q in zip(n1.parameters(), n2.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(n1.parameters(), _example_temperature_net().parameters()))


# --- bad inputs -------------------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_naming_the_argument():
    z1, z2 = _views(4, 2, 3, grad=False)
    net = _net(3)
    bad = z1.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^z1:"):
        amcl_ntxent_loss(bad, z2, net)
    bad = z2.clone()
    bad[1, 1, 1] = float("inf")
    with pytest.raises(ValueError, match=r"^z2:"):
        amcl_ntxent_loss(z1, bad, net)
    with pytest.raises(ValueError, match=r"^z1 and z2 must have the same shape"):
        amcl_ntxent_loss(z1, z2[:3], net)
    with pytest.raises(ValueError, match=r"^z1:"):
        amcl_ntxent_loss(z1[:, 0], z2[:, 0], net)  # (N, D): the heads' dimension is missing
    with pytest.raises(ValueError, match=r"^z1:"):
        amcl_ntxent_loss(z1[:0], z2[:0], net)
    with pytest.raises(ValueError, match=r"^z1:"):
        amcl_ntxent_loss(z1.long(), z2.long(), net)
    with pytest.raises(ValueError, match=r"^z1, z2: AMCL needs at least 2 pairs"):
        amcl_ntxent_loss(z1[:1], z2[:1], net)
    for b in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^beta:"):
            amcl_ntxent_loss(z1, z2, net, beta=b)
    for k in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"^topk:"):
            amcl_ntxent_loss(z1, z2, net, topk=k)
    with pytest.raises(ValueError, match=r"^reduction:"):
        amcl_ntxent_loss(z1, z2, net, reduction="avg")
    with pytest.raises(TypeError, match=r"^temp_net:"):
        amcl_ntxent_loss(z1, z2, "not a network")
    for broken in (_const(-1.0), _const(float("nan")), _const(0.0),
                   lambda za, zb: torch.ones(torch.broadcast_shapes(za.shape, zb.shape)[:-1])[:1]):
        with pytest.raises(ValueError, match=r"^temp_net:"):
            amcl_ntxent_loss(z1, z2, broken)
    with pytest.raises(ValueError, match=r"^temp_net:"):
        AMCLNTXentLoss()(z1, z2)
    with pytest.raises(ValueError, match=r"^beta:"):
        AMCLNTXentLoss(beta=-1.0)
    with pytest.raises(ValueError, match=r"^topk:"):
        AMCLNTXentLoss(topk=0)
    with pytest.raises(ValueError, match=r"^reduction:"):
        AMCLNTXentLoss(reduction="avg")


def test_bad_temperature_network_and_projector_arguments():
    for kw, name in [({"dim": 0}, "dim"), ({"dim": 2.0}, "dim"), ({"dim": 3, "hidden": 0}, "hidden"),
                     ({"dim": 3, "tau_min": 0.0}, "tau_min"), ({"dim": 3, "tau_min": 2.0, "tau_max": 1.0}, "tau_min, tau_max"),
                     ({"dim": 3, "tau_min": 1.0, "tau_max": 1.0}, "tau_min, tau_max"), ({"dim": 3, "tau_max": -1.0}, "tau_max")]:
        with pytest.raises(ValueError, match=rf"^{name}:"):
            PairTemperature(**kw)
    net = PairTemperature(3)
    with pytest.raises(ValueError, match=r"^za: expected a last dimension"):
        net(torch.randn(2, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"^zb:"):
        net(torch.randn(2, 3), torch.randn(2, 4))
    bad = torch.randn(2, 3)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^za:"):
        net(bad, torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"^zb:"):
        net(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.long))
    for kw, name in [({"in_dim": 0, "out_dim": 2}, "in_dim"), ({"in_dim": 2, "out_dim": 0}, "out_dim"),
                     ({"in_dim": 2, "out_dim": 2, "num_heads": 0}, "num_heads"),
                     ({"in_dim": 2, "out_dim": 2, "hidden": 0}, "hidden")]:
        with pytest.raises(ValueError, match=rf"^{name}:"):
            MultiHeadProjector(**kw)
    with pytest.raises(ValueError, match=r"^x: expected 4 features"):
        MultiHeadProjector(4, 2)(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"^x:"):
        MultiHeadProjector(4, 2)(torch.randn(3, 4, 1))


def test_bad_regulariser_inputs():
    with pytest.raises(ValueError, match=r"^tau:"):
        temperature_regularizer(torch.tensor([0.5, 0.0]), 4)
    with pytest.raises(ValueError, match=r"^tau:"):
        temperature_regularizer(torch.tensor([0.5, -1.0]), 4)
    with pytest.raises(ValueError, match=r"^tau:"):
        temperature_regularizer(torch.tensor([0.5, float("nan")]), 4)
    with pytest.raises(ValueError, match=r"^tau:"):
        temperature_regularizer(torch.tensor([1, 2]), 4)
    for d in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"^dim:"):
            temperature_regularizer(torch.tensor([0.5]), d)


# --- DDP: the temperature network's gradients (the views' are checked by the battery) -------------------------------------
def _ddp_net_worker(rank, world, sizes):
    (z1, z2, net), _ = _amcl_ntxent_example(sum(sizes), seed=5)
    start, stop = sum(sizes[:rank]), sum(sizes[: rank + 1])
    loss = amcl_ntxent_loss(z1[start:stop], z2[start:stop], net, topk=4, gather_distributed=True)
    loss.backward()
    return loss.detach(), [p.grad / world for p in net.parameters()]  # what DDP's averaging applies, per rank


def test_ddp_temperature_network_gradients_equal_one_process():
    sizes = (5, 3)
    (z1, z2, net), _ = _amcl_ntxent_example(sum(sizes), seed=5)
    loss = amcl_ntxent_loss(z1, z2, net, topk=4)
    loss.backward()
    results = run_distributed(_ddp_net_worker, 2, (sizes,))
    for v, _ in results:
        torch.testing.assert_close(v, loss.detach(), rtol=1e-10, atol=1e-12)
    for i, p in enumerate(net.parameters()):
        torch.testing.assert_close(sum(g[i] for _, g in results), p.grad, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- mutation pass (#7): the gaps its survivors showed
def test_empty_temperature_batches_are_legal():
    assert temperature_regularizer(torch.empty(0, dtype=torch.float64), 4).shape == (0,)
    net = _net(3)
    e = torch.empty(0, 3, dtype=torch.float64)
    assert net(e, e).shape == (0,) and net(e, torch.ones(1, 3, dtype=torch.float64)).shape == (0,)
    assert net(torch.ones(1, 3, dtype=torch.float64), e).shape == (0,)


def test_integer_features_are_refused_by_name():
    net = _net(3)
    z = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^za: expected a floating-point tensor"):
        net(z.long(), z)
    with pytest.raises(ValueError, match=r"^zb: expected a floating-point tensor"):
        net(z, z.long())
    with pytest.raises(ValueError, match=r"^x: expected a floating-point tensor"):
        MultiHeadProjector(3, 2, num_heads=1, hidden=4)(z.long())


def test_smallest_legal_sizes_and_module_settings():
    p = MultiHeadProjector(1, 1, num_heads=1, hidden=1)
    assert p(torch.ones(2, 1)).shape == (2, 1, 1)
    m = AMCLNTXentLoss(3, tau_min=0.01, tau_max=1.5, beta=0.0, topk=1)
    assert (m.temp_net.tau_min, m.temp_net.tau_max, m.beta, m.topk) == (0.01, 1.5, 0.0, 1)
    z1, z2 = _views(4, 2, 3, grad=False)
    torch.testing.assert_close(m(z1, z2), amcl_ntxent_loss(z1, z2, m.temp_net, beta=0.0, topk=1), rtol=0, atol=0)


def test_module_without_network_message():
    z1, z2 = _views(4, 2, 3, grad=False)
    with pytest.raises(ValueError, match=r"^temp_net: this AMCLNTXentLoss was built without `dim` and owns no temperature "
                                         r"network; build it with AMCLNTXentLoss\(dim=D\) or pass temp_net$"):
        AMCLNTXentLoss()(z1, z2)


def test_gathers_only_when_ddp_is_active(monkeypatch):
    import lossbook.ssl.adaptive_multihead_contrastive as mod
    calls = []
    monkeypatch.setattr(mod, "gather", lambda t: calls.append(tuple(t.shape)) or t)
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append("slice") or slice(0, n))
    real = mod.reduce_over_ranks
    monkeypatch.setattr(mod, "reduce_over_ranks", lambda t, n, r, a: calls.append(("reduce", a)) or real(t, n, r, a))
    z1, z2 = _views(5, 2, 3, grad=False)
    net = _net(3)
    ref = amcl_ntxent_loss(z1, z2, net, topk=4)
    amcl_ntxent_loss(z1, z2, net, topk=4, gather_distributed=True)  # no process group: DDP is not active
    assert calls == [("reduce", False), ("reduce", False)]
    calls.clear()
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    torch.testing.assert_close(amcl_ntxent_loss(z1, z2, net, topk=4, gather_distributed=True), ref, rtol=1e-12, atol=1e-12)
    assert sorted(map(str, calls)) == sorted(map(str, [(5, 2, 3), (5, 2, 3), "slice", ("reduce", True)]))


def test_one_dimensional_pair_temperature():
    net = PairTemperature(1, hidden=1)
    assert (net.dim, net.hidden) == (1, 1)
    assert net(torch.ones(3, 1), torch.ones(3, 1)).shape == (3,)


def test_a_network_with_pairwise_is_called_through_it_once_per_head():
    z1, z2 = _views(5, 3, 3, grad=False)
    net = _net(3)
    calls, forwards = [], []
    real = net.pairwise
    net.pairwise = lambda za, zb: calls.append((tuple(za.shape), tuple(zb.shape))) or real(za, zb)
    hook = net.register_forward_hook(lambda *_: forwards.append(1))
    amcl_ntxent_loss(z1, z2, net, topk=4)
    hook.remove()
    assert calls == [((10, 3), (10, 3))] * 3 and forwards == []


def test_second_view_and_bad_network_messages():
    z1, z2 = _views(4, 2, 3, grad=False)
    with pytest.raises(ValueError, match=r"^z2: expected 3 dimensions"):
        amcl_ntxent_loss(z1, z2[:, 0], _net(3))
    with pytest.raises(TypeError, match=r"^temp_net: expected a callable .*, got int$"):
        amcl_ntxent_loss(z1, z2, 3)


def test_mixed_and_half_precision_views():
    z1, z2 = _views(5, 2, 3, grad=False)
    net = _net(3)
    for a, b in ((z1.float(), z2), (z1, z2.float())):
        got = amcl_ntxent_loss(a, b, net, topk=4, reduction="none")
        assert got.dtype == torch.float64
        assert torch.equal(got, amcl_ntxent_loss(a.double(), b.double(), net, topk=4, reduction="none"))
    netf = _net(3).float()
    for a, b in ((z1.bfloat16(), z2.float()), (z1.float(), z2.bfloat16())):
        got = amcl_ntxent_loss(a, b, netf, topk=4, reduction="none")
        assert got.dtype == torch.float32
        assert torch.equal(got, amcl_ntxent_loss(a.float(), b.float(), netf, topk=4, reduction="none"))
