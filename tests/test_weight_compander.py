"""Tests for lossbook.classification.weight_compander (Cakaj et al. 2023, a WC-style weight reparameterisation).

There is no official code and the paper's Eq. (1) could not be read: the references are plain float64 transcriptions of
the card's family (Eqs. 3-4), the properties every admissible compander has (odd, increasing, bounded, slope alpha*beta
at 0), the chain rule (Eq. 2), a manual functional forward with F.linear / F.conv2d (the parametrize oracle), the
identity limit (Eq. 6) and the inverse used by rescale_init (Eq. 8).
"""

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from lossbook.classification.weight_compander import (
    COMPANDERS,
    WeightCompander,
    apply_weight_compander,
    effective_weights,
    wc,
    wc_inverse,
    wc_slope,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _w(shape=(7, 5), seed=0, dtype=torch.float64, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)


def _ref_wc(w, alpha, beta, fn):
    "Eqs. (3)/(4) element by element in Python floats."
    out = []
    for v in w.flatten().tolist():
        if fn == "tanh":
            out.append(alpha * math.tanh(beta * v))
        else:
            out.append(alpha * math.copysign(1.0, v) * (1 - math.exp(-beta * abs(v))) if v != 0 else 0.0)
    return torch.tensor(out, dtype=torch.float64).view(w.shape)


def _ref_slope(w, alpha, beta, fn):
    out = []
    for v in w.flatten().tolist():
        out.append(alpha * beta * (1 - math.tanh(beta * v) ** 2) if fn == "tanh" else alpha * beta * math.exp(-beta * abs(v)))
    return torch.tensor(out, dtype=torch.float64).view(w.shape)


# ---------------------------------------------------------------- the function, Eqs. (3)-(5)
@pytest.mark.parametrize("fn", COMPANDERS)
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.3, 4.0), (2.5, 0.2)])
def test_matches_float64_formula(fn, alpha, beta):
    w = _w()
    torch.testing.assert_close(wc(w, alpha, beta, fn), _ref_wc(w, alpha, beta, fn), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(wc_slope(w, alpha, beta, fn), _ref_slope(w, alpha, beta, fn), rtol=1e-12, atol=1e-14)


def test_defaults():
    w = _w()
    torch.testing.assert_close(wc(w), wc(w, 1.0, 1.0, "tanh"), rtol=0, atol=0)
    torch.testing.assert_close(wc(w), torch.tanh(w), rtol=1e-15, atol=1e-15)
    assert not torch.allclose(wc(w), wc(w, fn="exp"))
    torch.testing.assert_close(wc_slope(w), 1 - torch.tanh(w) ** 2, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(wc_inverse(0.5 * torch.tanh(w)), torch.atanh(0.5 * torch.tanh(w)), rtol=1e-12, atol=1e-14)
    # the default clip is 0.99 alpha
    torch.testing.assert_close(wc_inverse(torch.tensor([5.0, -5.0], dtype=torch.float64)),
                               torch.atanh(torch.tensor([0.99, -0.99], dtype=torch.float64)))
    assert COMPANDERS == ("tanh", "exp")


@pytest.mark.parametrize("fn", COMPANDERS)
def test_properties_odd_increasing_bounded_slope(fn):
    w = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    alpha, beta = 0.7, 2.0
    y = wc(w, alpha, beta, fn)
    torch.testing.assert_close(wc(-w, alpha, beta, fn), -y, rtol=0, atol=1e-15)
    assert bool((y.diff() > 0).all())
    assert float(y.abs().max()) < alpha
    assert float(y.abs().max()) > 0.99 * alpha  # the bound is approached
    zero = torch.zeros(1, dtype=torch.float64)
    torch.testing.assert_close(wc_slope(zero, alpha, beta, fn), torch.tensor([alpha * beta], dtype=torch.float64))
    torch.testing.assert_close(wc(zero, alpha, beta, fn), zero)
    # expansion near zero: |wc(w)| > |w| for small w when alpha*beta > 1
    small = torch.tensor([1e-3, -1e-3], dtype=torch.float64)
    assert bool((wc(small, alpha, beta, fn).abs() > small.abs()).all())


@pytest.mark.parametrize("fn", COMPANDERS)
def test_chain_rule_eq2(fn):
    w = _w().requires_grad_(True)
    g_out = _w(seed=3)
    (wc(w, 0.8, 1.7, fn) * g_out).sum().backward()
    torch.testing.assert_close(w.grad, g_out * _ref_slope(w.detach(), 0.8, 1.7, fn), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fn", COMPANDERS)
def test_identity_limit_eq6(fn):
    w = _w()
    torch.testing.assert_close(wc(w, 1e4, 1e-4, fn), w, rtol=0, atol=2e-3)
    torch.testing.assert_close(wc(w, 1e6, 1e-6, fn), w, rtol=0, atol=2e-5)


@pytest.mark.parametrize("fn", COMPANDERS)
def test_inverse_and_clip(fn):
    alpha, beta = 0.9, 1.3
    target = 0.8 * alpha * torch.tanh(_w())
    torch.testing.assert_close(wc(wc_inverse(target, alpha, beta, fn), alpha, beta, fn), target, rtol=1e-12, atol=1e-13)
    big = torch.tensor([10.0, -10.0, 0.0], dtype=torch.float64)
    back = wc(wc_inverse(big, alpha, beta, fn), alpha, beta, fn)
    torch.testing.assert_close(back, torch.tensor([0.99 * alpha, -0.99 * alpha, 0.0], dtype=torch.float64))
    back = wc(wc_inverse(big, alpha, beta, fn, clip=0.5), alpha, beta, fn)
    torch.testing.assert_close(back, torch.tensor([0.5 * alpha, -0.5 * alpha, 0.0], dtype=torch.float64))


def test_tensor_hyperparameters_broadcast():
    w = _w((3, 4, 5))
    alpha = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)[:, None, None]
    beta = torch.tensor([3.0, 1.0, 0.25], dtype=torch.float64)[:, None, None]
    got = wc(w, alpha, beta)
    for i in range(3):
        torch.testing.assert_close(got[i], wc(w[i], float(alpha[i]), float(beta[i])))
    torch.testing.assert_close(wc_slope(w, alpha, beta)[1], wc_slope(w[1], 1.0, 1.0))
    torch.testing.assert_close(wc(wc_inverse(0.3 * torch.tanh(w), alpha, beta), alpha, beta), 0.3 * torch.tanh(w))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_dtypes_devices(dtype, device):
    w = _w(dtype=dtype).to(device)
    for fn in COMPANDERS:
        y = wc(w, 0.5, 2.0, fn)
        assert y.dtype == dtype and y.device.type == device
        torch.testing.assert_close(y.double().cpu(), _ref_wc(w.double().cpu(), 0.5, 2.0, fn),
                                   rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6)


def test_gradcheck_function():
    w = _w((4, 3)).requires_grad_(True)
    alpha = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(1.9, dtype=torch.float64, requires_grad=True)
    for fn in COMPANDERS:
        assert torch.autograd.gradcheck(lambda w_, a_, b_: wc(w_, a_, b_, fn), (w, alpha, beta))


def test_gradcheck_learnable_module():
    comp = WeightCompander(0.7, 1.9, learnable=True).double()
    w = _w((4, 3)).requires_grad_(True)
    f = lambda w_, a_, b_: torch.func.functional_call(comp, {"a": a_, "b": b_}, (w_,))
    assert torch.autograd.gradcheck(f, (w, comp.a.detach().clone().requires_grad_(True),
                                        comp.b.detach().clone().requires_grad_(True)))
    # the module's own gradient w.r.t. a, b equals that formula's
    comp = WeightCompander(0.7, 1.9, learnable=True).double()
    (comp(w.detach()) * _w((4, 3), seed=5)).sum().backward()
    a = comp.a.detach().clone().requires_grad_(True)
    b = comp.b.detach().clone().requires_grad_(True)
    (F.softplus(a) * torch.tanh(F.softplus(b) * w.detach()) * _w((4, 3), seed=5)).sum().backward()
    torch.testing.assert_close(comp.a.grad, a.grad)
    torch.testing.assert_close(comp.b.grad, b.grad)


# ---------------------------------------------------------------- the module
@pytest.mark.parametrize("fn", COMPANDERS)
@pytest.mark.parametrize("learnable", [False, True])
def test_module_equals_function(fn, learnable):
    comp = WeightCompander(0.6, 2.5, fn, learnable)
    w = _w()
    torch.testing.assert_close(comp(w), wc(w, 0.6, 2.5, fn), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(comp.alpha.double(), torch.tensor(0.6, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(comp.beta.double(), torch.tensor(2.5, dtype=torch.float64), rtol=1e-12, atol=0)
    assert comp.fn == fn and comp.learnable is learnable
    names = {n for n, _ in comp.named_parameters()}
    assert names == ({"a", "b"} if learnable else set())
    if learnable:  # softplus parameterisation, Eq. (9)
        torch.testing.assert_close(F.softplus(comp.a), comp.alpha)
        torch.testing.assert_close(comp.a.double(), torch.tensor(0.6 + math.log(-math.expm1(-0.6)), dtype=torch.float64))
    else:
        assert {n for n, _ in comp.named_buffers()} == {"a", "b", "scale"}
        torch.testing.assert_close(comp.a.double(), torch.tensor(0.6, dtype=torch.float64))


def test_module_defaults():
    comp = WeightCompander()
    assert comp.fn == "tanh" and comp.learnable is False
    assert float(comp.alpha) == 1.0 and float(comp.beta) == 1.0 and float(comp.scale) == 1.0
    w = _w()
    torch.testing.assert_close(comp(w), torch.tanh(w))
    assert "alpha=1" in repr(comp) and "learnable=False" in repr(comp) and "scale=1" in repr(comp)


@pytest.mark.parametrize("learnable", [False, True])
def test_module_scale_eq9(learnable):
    "Eq. (9): a, b hold alpha/scale and beta*scale (through a softplus when learnable); alpha, beta are unchanged."
    comp = WeightCompander(0.06, 25.0, learnable=learnable, scale=0.04)
    torch.testing.assert_close(comp.alpha.double(), torch.tensor(0.06, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(comp.beta.double(), torch.tensor(25.0, dtype=torch.float64), rtol=1e-12, atol=0)
    w = _w(scale=0.05)
    torch.testing.assert_close(comp(w), _ref_wc(w, 0.06, 25.0, "tanh"), rtol=1e-12, atol=1e-14)
    a_rel, b_rel = 0.06 / 0.04, 25.0 * 0.04
    if learnable:
        torch.testing.assert_close(F.softplus(comp.a), torch.tensor(a_rel, dtype=torch.float64))
        torch.testing.assert_close(F.softplus(comp.b), torch.tensor(b_rel, dtype=torch.float64))
        torch.testing.assert_close(comp.alpha, 0.04 * F.softplus(comp.a))
        torch.testing.assert_close(comp.beta, F.softplus(comp.b) / 0.04)
        # the gradient w.r.t. a, b is that of the formula sigma*softplus(a)*tanh(softplus(b)/sigma*w)
        g = _w(seed=5)
        (comp(w) * g).sum().backward()
        a = comp.a.detach().clone().requires_grad_(True)
        b = comp.b.detach().clone().requires_grad_(True)
        (0.04 * F.softplus(a) * torch.tanh(F.softplus(b) / 0.04 * w) * g).sum().backward()
        torch.testing.assert_close(comp.a.grad, a.grad)
        torch.testing.assert_close(comp.b.grad, b.grad)
    else:
        torch.testing.assert_close(comp.a, torch.tensor(a_rel, dtype=torch.float64))
        torch.testing.assert_close(comp.b, torch.tensor(b_rel, dtype=torch.float64))


def test_module_float32_input_float64_hyper():
    comp = WeightCompander(0.6, 2.5)
    w = _w(dtype=torch.float32)
    assert comp(w).dtype == torch.float32


# ---------------------------------------------------------------- apply_weight_compander: the parametrize oracle
def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 6), nn.ReLU(),
                         nn.Linear(6, 3)).double()


def _manual_forward(net, x):
    "F.conv2d / F.linear with wc of the latent weights (Eq. 1), written out by hand."
    def eff(m):
        c = m.parametrizations.weight[0]
        return wc(m.parametrizations.weight.original, c.alpha, c.beta, c.fn)
    h = F.relu(F.conv2d(x, eff(net[0]), net[0].bias))
    h = F.relu(F.linear(h.flatten(1), eff(net[3]), net[3].bias))
    return F.linear(h, eff(net[5]), net[5].bias)


@pytest.mark.parametrize("fn", COMPANDERS)
@pytest.mark.parametrize("learnable", [False, True])
def test_parametrized_model_equals_manual_forward_and_gradients(fn, learnable):
    x = _w((5, 1, 6, 6), seed=2)
    net = apply_weight_compander(_net(), fn=fn, learnable=learnable)
    net2 = copy.deepcopy(net)
    y1 = net(x)
    y2 = _manual_forward(net2, x)
    torch.testing.assert_close(y1, y2, rtol=1e-13, atol=1e-14)
    y1.pow(2).sum().backward()
    y2.pow(2).sum().backward()
    for (n1, p1), (n2, p2) in zip(net.named_parameters(), net2.named_parameters()):
        assert n1 == n2
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fn", COMPANDERS)
def test_rescale_init_reproduces_function(fn):
    x = _w((5, 1, 6, 6), seed=2)
    plain = _net()
    y0 = plain(x)
    net = apply_weight_compander(_net(), fn=fn)
    torch.testing.assert_close(net(x), y0, rtol=1e-12, atol=1e-13)
    for (name, W), W0 in zip(effective_weights(net).items(), effective_weights(plain).values()):
        torch.testing.assert_close(W, W0, rtol=1e-12, atol=1e-14)
    # without rescale_init the latent weights are the original ones, and the function changes
    net = apply_weight_compander(_net(), fn=fn, rescale_init=False)
    torch.testing.assert_close(net[3].parametrizations.weight.original, plain[3].weight)
    assert not torch.allclose(net(x), y0)


def test_apply_defaults_relative_scale():
    net = _net()
    stds = [float(net[i].weight.detach().std()) for i in (0, 3, 5)]
    apply_weight_compander(net)
    for i, s in zip((0, 3, 5), stds):
        c = net[i].parametrizations.weight[0]
        assert c.fn == "tanh" and c.learnable is False
        assert math.isclose(float(c.alpha), 2.0 * s, rel_tol=1e-12)  # Eq. (7): c = 2
        assert math.isclose(float(c.alpha * c.beta), 1.5, rel_tol=1e-12)  # s = 1.5
        assert math.isclose(float(c.scale), s, rel_tol=1e-12)  # Eq. (9): the unit is the layer's std
    # learnable, relative: the parameters are c = softplus(a) = 2 and s/c = softplus(b) = 0.75 (Eq. 9)
    net = _net()
    apply_weight_compander(net, learnable=True)
    for i, s in zip((0, 3, 5), stds):
        c = net[i].parametrizations.weight[0]
        assert math.isclose(float(F.softplus(c.a.detach())), 2.0, rel_tol=1e-12)
        assert math.isclose(float(F.softplus(c.b.detach())), 0.75, rel_tol=1e-12)
        assert math.isclose(float(c.alpha.detach()), 2.0 * s, rel_tol=1e-12)
    # the default layer types: Linear and Conv2d, nothing else
    assert sum(parametrize.is_parametrized(m) for m in net.modules()) == 3


def test_apply_absolute_and_passes_settings():
    net = apply_weight_compander(_net(), alpha=0.3, beta=5.0, fn="exp", learnable=True, relative=False,
                                 layer_types=(nn.Linear,))
    assert not parametrize.is_parametrized(net[0])
    for i in (3, 5):
        c = net[i].parametrizations.weight[0]
        assert c.fn == "exp" and c.learnable is True
        assert math.isclose(float(c.alpha.detach()), 0.3, rel_tol=1e-12)
        assert math.isclose(float(c.beta.detach()), 5.0, rel_tol=1e-12)
        assert c.a.dtype == torch.float64  # the layer's dtype
        assert float(c.scale) == 1.0  # absolute values: no unit
    net = apply_weight_compander(_net(), alpha=3.0, beta=1.0)
    c = net[5].parametrizations.weight[0]
    assert math.isclose(float(c.alpha * c.beta), 3.0, rel_tol=1e-12)
    assert math.isclose(float(c.alpha), 3.0 * float(_net()[5].weight.detach().std()), rel_tol=1e-12)


def test_apply_float32_layer_gets_float32_compander():
    torch.manual_seed(0)
    lin = apply_weight_compander(nn.Linear(4, 3), learnable=True)
    c = lin.parametrizations.weight[0]
    assert c.a.dtype == torch.float32 and lin.weight.dtype == torch.float32


def test_identity_limit_one_training_step_equals_plain():
    x, y = _w((16, 1, 6, 6), seed=4), torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(0))
    plain, comp = _net(), apply_weight_compander(_net(), alpha=1e4, beta=1e-4, relative=False)
    for net in (plain, comp):
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    for W, W0 in zip(effective_weights(comp).values(), effective_weights(plain).values()):
        torch.testing.assert_close(W, W0, rtol=0, atol=1e-6)
    torch.testing.assert_close(comp(x), plain(x), rtol=0, atol=1e-6)


def test_remove_parametrizations_keeps_function():
    x = _w((5, 1, 6, 6), seed=2)
    net = apply_weight_compander(_net(), learnable=True)
    with torch.no_grad():
        for m in net.modules():
            if parametrize.is_parametrized(m):
                m.parametrizations.weight.original.mul_(3.0)  # move away from the init
    y = net(x).detach()
    eff = effective_weights(net)
    for m in net.modules():
        if parametrize.is_parametrized(m):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    torch.testing.assert_close(net(x), y, rtol=1e-13, atol=1e-14)
    for (k, W), W2 in zip(eff.items(), effective_weights(net).values()):
        torch.testing.assert_close(W, W2)


def test_effective_weights_bounded_and_named():
    net = apply_weight_compander(_net())
    with torch.no_grad():
        net[3].parametrizations.weight.original.mul_(100.0)
    eff = effective_weights(net)
    assert list(eff) == ["0", "3", "5"]
    c = net[3].parametrizations.weight[0]
    assert float(eff["3"].abs().max()) <= float(c.alpha)  # saturated: tanh rounds to 1 in float64
    assert float(eff["3"].abs().max()) > 0.999 * float(c.alpha)
    assert not eff["3"].requires_grad
    assert list(effective_weights(net, layer_types=(nn.Conv2d,))) == ["0"]


def test_learnable_hyperparameters_train():
    x, y = _w((32, 1, 6, 6), seed=4), torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(0))
    net = apply_weight_compander(_net(), learnable=True)
    before = [float(m.parametrizations.weight[0].alpha.detach()) for m in (net[0], net[3], net[5])]
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    after = [float(m.parametrizations.weight[0].alpha.detach()) for m in (net[0], net[3], net[5])]
    assert all(abs(a - b) > 1e-4 for a, b in zip(after, before))
    assert all(a > 0 for a in after)


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_function():
    w = _w()
    with pytest.raises(ValueError, match=r"^w:"):
        wc(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"^w:"):
        wc(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"^w:"):
        wc_slope(torch.tensor([float("inf")]))
    with pytest.raises(ValueError, match=r"^w:"):
        wc_inverse(torch.tensor([float("inf")]))
    for f in (wc, wc_slope, wc_inverse):
        with pytest.raises(ValueError, match=r"^alpha:"):
            f(w, 0.0)
        with pytest.raises(ValueError, match=r"^alpha:"):
            f(w, float("nan"))
        with pytest.raises(ValueError, match=r"^beta:"):
            f(w, 1.0, -1.0)
        with pytest.raises(ValueError, match=r"^alpha:"):
            f(w, torch.tensor([1.0, 0.0], dtype=torch.float64)[:, None, None])
        with pytest.raises(ValueError, match=r"^beta:"):
            f(w, 1.0, torch.tensor(float("nan"), dtype=torch.float64))
        with pytest.raises(ValueError, match=r"^fn:"):
            f(w, 1.0, 1.0, "atan")
    with pytest.raises(TypeError, match=r"^w:"):
        wc([1.0, 2.0])
    for bad in (0.0, 1.0, -0.5, "0.9"):
        with pytest.raises(ValueError, match=r"^clip:"):
            wc_inverse(w, clip=bad)
    # the smallest legal input: an empty tensor gives an empty result
    assert wc(torch.zeros(0, dtype=torch.float64)).shape == (0,)


def test_bad_inputs_module_and_apply():
    with pytest.raises(ValueError, match=r"^alpha:"):
        WeightCompander(alpha=0.0)
    with pytest.raises(ValueError, match=r"^beta:"):
        WeightCompander(beta=-2.0)
    with pytest.raises(ValueError, match=r"^fn:"):
        WeightCompander(fn="atan")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"^scale:"):
            WeightCompander(scale=bad)
    with pytest.raises(ValueError, match=r"^W:"):
        WeightCompander()(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match=r"^W:"):
        WeightCompander()(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match=r"^model:"):
        apply_weight_compander(torch.zeros(3))
    with pytest.raises(ValueError, match=r"^model: no layer"):
        apply_weight_compander(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match=r"^alpha:"):
        apply_weight_compander(_net(), alpha=-1.0)
    with pytest.raises(ValueError, match=r"^beta:"):
        apply_weight_compander(_net(), beta=0.0)
    with pytest.raises(ValueError, match=r"^fn:"):
        apply_weight_compander(_net(), fn="atan")
    net = apply_weight_compander(_net())
    with pytest.raises(ValueError, match=r"^model: layer '0' already"):
        apply_weight_compander(net)
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.fill_(0.5)
    with pytest.raises(ValueError, match=r"^model: layer '' has constant weights"):
        apply_weight_compander(lin)
    apply_weight_compander(lin, relative=False)  # absolute hyperparameters need no scale
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^model\.weight:"):
        apply_weight_compander(lin)


# ---------------------------------------------------------------- tests asked for by mutation testing (issue #7)
def test_empty_and_zero_dim_inputs_and_integer_tensors():
    "min_batch=0 everywhere: empty tensors (and empty tensor hyperparameters) give empty results; integers are refused."
    e = torch.zeros(0, 3, dtype=torch.float64)
    for f in (wc, wc_slope, wc_inverse):
        assert f(e).shape == (0, 3)
        assert f(e, alpha=torch.ones(0, 1, dtype=torch.float64)).shape == (0, 3)
        with pytest.raises(ValueError, match=r"^w: expected a floating-point tensor"):
            f(torch.tensor([1, 2]))
        with pytest.raises(ValueError, match=r"^alpha: expected a floating-point tensor"):
            f(e, alpha=torch.tensor([1, 2]))
        with pytest.raises(ValueError, match=r"^beta: expected a floating-point tensor"):
            f(e, beta=torch.tensor([1]))
    assert WeightCompander()(torch.zeros(0, 3)).shape == (0, 3)
    # a 0-d float32 weight stays float32 (the float64 alpha and beta are cast to its dtype, not promoted to)
    for fn in COMPANDERS:
        out = WeightCompander(alpha=0.7, beta=1.3, fn=fn)(torch.tensor(0.5))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, wc(torch.tensor(0.5), 0.7, 1.3, fn))


def test_apply_messages_sizes_and_other_parametrisations():
    with pytest.raises(TypeError, match=r"^model: expected a torch.nn.Module, got Tensor$"):
        apply_weight_compander(torch.zeros(3))
    # relative scale: two different weights have a std; one weight has none
    apply_weight_compander(nn.Linear(1, 2))
    with pytest.raises(ValueError, match=r"^model: layer '' has constant weights \(std 0\), so the relative scale of "
                                         r"Eq\. \(7\) is undefined; pass relative=False$"):
        apply_weight_compander(nn.Linear(1, 1))
    # a parametrisation on another tensor of the layer (its bias) is not one on its weight
    lin = nn.Linear(3, 2)
    parametrize.register_parametrization(lin, "bias", nn.Identity())
    apply_weight_compander(lin)
    assert parametrize.is_parametrized(lin, "weight")
    # the layer's name is in the message; integer weights are refused by name
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    with torch.no_grad():
        net[1].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^model\.1\.weight: expected finite values"):
        apply_weight_compander(net)
    lin = nn.Linear(2, 2)
    lin.weight = nn.Parameter(torch.ones(2, 2, dtype=torch.long), requires_grad=False)
    with pytest.raises(ValueError, match=r"^model\.weight: expected a floating-point tensor"):
        apply_weight_compander(lin)
