"The factored output layer of the Z-loss (issue #12): exact against autograd SGD on W, its statistics, bad input."
import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.classification.z_loss import log_spherical_softmax_loss, log_taylor_softmax_loss, z_loss
from lossbook.classification.z_loss_factored import (SPHERICAL_LOSSES, FactoredSphericalLayer, spherical_loss_from_stats,
                                                     spherical_loss_kwargs)

LOGITS_FORMS = {  # the logits forms of the Z-loss notebook, per example
    "z": lambda o, y, **kw: z_loss(o, y, reduction="none", **kw),
    "mse": lambda o, y: (o - F.one_hot(y, o.shape[1]).to(o)).pow(2).sum(1),
    "log_taylor": lambda o, y: log_taylor_softmax_loss(o, y, reduction="none"),
    "log_spherical": lambda o, y, **kw: log_spherical_softmax_loss(o, y, reduction="none", **kw),
}
LR = {"z": 0.5, "mse": 0.01, "log_taylor": 0.1, "log_spherical": 0.05}


def _stats(o, y):
    return o.gather(1, y[:, None]).squeeze(1), o.sum(1), o.pow(2).sum(1)


def _loop_reference(name, o, y, a=1.0, b=None, eps=None):
    "A plain float64 loop over examples and classes, transcribed from the formulas."
    out = []
    for i in range(o.shape[0]):
        row, c, D = o[i].tolist(), int(y[i]), o.shape[1]
        S1, S2 = sum(row), sum(v * v for v in row)
        if name == "z":
            mu = S1 / D
            sd = math.sqrt(S2 / D - mu * mu + (1e-8 if eps is None else eps))
            bb = math.sqrt(D - 1) / 2 if b is None else b
            out.append(math.log1p(math.exp(a * (bb - (row[c] - mu) / sd))) / a)
        elif name == "mse":
            out.append(sum((v - (k == c)) ** 2 for k, v in enumerate(row)))
        elif name == "log_taylor":
            out.append(-math.log((1 + row[c] + row[c] ** 2 / 2) / sum(1 + v + v * v / 2 for v in row)))
        else:
            e = 1e-2 if eps is None else eps
            out.append(-math.log((row[c] ** 2 + e) / sum(v * v + e for v in row)))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("name", SPHERICAL_LOSSES)
def test_stats_form_equals_the_loop_reference_at_defaults(name):
    g = torch.Generator().manual_seed(0)
    o = torch.randn(6, 9, generator=g, dtype=torch.float64)
    y = torch.randint(0, 9, (6,), generator=g)
    got = spherical_loss_from_stats(*_stats(o, y), 9, name, reduction="none")
    torch.testing.assert_close(got, _loop_reference(name, o, y), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got, LOGITS_FORMS[name](o, y), rtol=1e-10, atol=1e-12)


def test_stats_form_hyper_parameters_pass_through():
    g = torch.Generator().manual_seed(1)
    o = torch.randn(5, 7, generator=g, dtype=torch.float64)
    y = torch.randint(0, 7, (5,), generator=g)
    st = _stats(o, y)
    torch.testing.assert_close(spherical_loss_from_stats(*st, 7, "z", reduction="none", a=2.0, b=0.5, eps=1e-3),
                               _loop_reference("z", o, y, a=2.0, b=0.5, eps=1e-3))
    torch.testing.assert_close(spherical_loss_from_stats(*st, 7, "log_spherical", reduction="none", eps=0.3),
                               _loop_reference("log_spherical", o, y, eps=0.3))


def test_defaults_are_pinned():
    assert spherical_loss_kwargs("z") == {"a": 1.0, "b": None, "eps": 1e-8}
    assert spherical_loss_kwargs("log_spherical") == {"eps": 1e-2}
    assert spherical_loss_kwargs("mse") == {} and spherical_loss_kwargs("log_taylor") == {}
    W = torch.randn(5, 3, dtype=torch.float64)
    lay = FactoredSphericalLayer(W)
    assert lay.loss_name == "z" and lay.loss_kwargs == {"a": 1.0, "b": None, "eps": 1e-8}
    assert (lay.check_every, lay.max_cond, lay.unfactorize_every) == (100, 1e3, None)
    o, y = torch.randn(4, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 4])
    assert spherical_loss_from_stats(*_stats(o, y), 5) == spherical_loss_from_stats(*_stats(o, y), 5, "z", "mean")


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_reductions(reduction):
    o, y = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 5, 5])
    per = spherical_loss_from_stats(*_stats(o, y), 6, "log_taylor", reduction="none")
    want = {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]
    torch.testing.assert_close(spherical_loss_from_stats(*_stats(o, y), 6, "log_taylor", reduction=reduction), want)
    lay = FactoredSphericalLayer(torch.randn(6, 3, dtype=torch.float64), "mse")
    h = torch.randn(4, 3, dtype=torch.float64)
    per_l = LOGITS_FORMS["mse"](h @ lay.weight().T, y)
    torch.testing.assert_close(lay.loss(h, y, reduction=reduction), {"none": per_l, "sum": per_l.sum(),
                                                                     "mean": per_l.mean()}[reduction])


def _run_both(name, steps=200, D=60, d=6, B=12, dtype=torch.float64, seed=0, **kw):
    "(factored layer, W of plain autograd SGD on W) after `steps` steps on the same batches (duplicated targets)."
    g = torch.Generator().manual_seed(seed)
    W = (0.1 * torch.randn(D, d, generator=g, dtype=torch.float64)).to(dtype)  # drawn in float64, then cast
    lay = FactoredSphericalLayer(W, name, **kw)
    lk = {k: v for k, v in kw.items() if k in ("a", "b", "eps")}
    for _ in range(steps):
        h = torch.randn(B, d, generator=g, dtype=torch.float64).to(dtype)
        y = torch.randint(0, D, (B,), generator=g)
        y[: B // 3] = y[-1]
        Wr = W.clone().requires_grad_()
        L = LOGITS_FORMS[name](h @ Wr.T, y, **lk).mean()
        (G,) = torch.autograd.grad(L, Wr)
        got = lay.step(h, y, LR[name])
        tol = 1e-9 if dtype == torch.float64 else 1e-5
        assert got == pytest.approx(float(L.detach()), rel=tol, abs=tol)  # the loss before the step
        W = W - LR[name] * G
    return lay, W


@pytest.mark.parametrize("name", SPHERICAL_LOSSES)
def test_factored_update_equals_autograd_sgd_on_W(name):
    lay, W = _run_both(name)
    rel = float((lay.weight() - W).norm() / W.norm())
    assert rel < 1e-8, rel
    torch.testing.assert_close(lay.Q, W.T @ W, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(lay.s, W.sum(0), rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(lay.U @ lay.U_inv, torch.eye(W.shape[1], dtype=W.dtype), rtol=0, atol=1e-9)
    assert lay.steps == 200


def test_factored_update_with_hyper_parameters():
    lay, W = _run_both("z", steps=60, a=3.0, b=1.0, eps=1e-4)
    assert float((lay.weight() - W).norm() / W.norm()) < 1e-8
    lay, W = _run_both("log_spherical", steps=60, eps=0.5)
    assert float((lay.weight() - W).norm() / W.norm()) < 1e-8


def test_exact_through_unfactorizations_and_checks():
    for kw in ({"unfactorize_every": 7}, {"check_every": 1}, {"check_every": 5, "max_cond": 1.0001}):
        lay, W = _run_both("z", steps=60, **kw)
        assert float((lay.weight() - W).norm() / W.norm()) < 1e-8, kw
    assert lay.unfactorizations == 60  # max_cond ~ 1: every step's M counts as ill-conditioned -> the exact dense step
    lay, _ = _run_both("z", steps=60, unfactorize_every=7)
    assert lay.unfactorizations == 8
    lay, _ = _run_both("z", steps=60, check_every=1)
    assert lay.unfactorizations == 0  # well conditioned: U^-1 recomputed, no unfactorization


@pytest.mark.parametrize("lr", [0.5, 0.5 * (1 - 1e-12)])
def test_singular_step_factor_is_applied_exactly_to_W(lr):
    # MSE, d = 2, h = (1, 0): A = diag(2, 0), so M = diag(1 - 2 lr, 1) is singular or has condition number 1e12
    W0 = torch.tensor([[0.5, 0.3], [-0.2, 0.1], [0.1, -0.4]], dtype=torch.float64)
    lay = FactoredSphericalLayer(W0, "mse")
    h, y = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([1])
    lay.step(h, y, lr)
    onehot = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    want = W0 - lr * 2 * torch.outer(W0 @ h[0] - onehot, h[0])  # grad_W of sum_k (o_k - [k = c])^2
    torch.testing.assert_close(lay.weight(), want, rtol=1e-12, atol=1e-14)
    assert lay.unfactorizations == 1 and torch.equal(lay.U, torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(lay.Q, want.T @ want)
    torch.testing.assert_close(lay.s, want.sum(0))
    lay.step(h, y, 0.1)  # and it goes on factored
    assert lay.unfactorizations == 1


def test_loss_that_is_not_finite_raises():
    lay = FactoredSphericalLayer(torch.zeros(4, 2, dtype=torch.float64), "log_spherical")
    lay.Q.fill_(-1.0)  # a drifted Q with S2 + D eps < 0: log of a negative number
    with pytest.raises(ValueError, match=r"^h: the 'log_spherical' loss"):
        lay.loss(torch.ones(2, 2, dtype=torch.float64), torch.tensor([0, 1]))


def test_check_recomputes_the_inverse_and_unfactorize_keeps_W():
    lay, _ = _run_both("z", steps=9, check_every=1000)
    lay.U_inv.mul_(1.01)  # a drifted inverse ...
    lay._condition()  # ... is recomputed by the check
    torch.testing.assert_close(lay.U @ lay.U_inv, torch.eye(6, dtype=torch.float64), rtol=0, atol=1e-12)
    W = lay.weight()
    lay.Q.add_(1.0)  # a drifted Q is recomputed by an unfactorization, W is unchanged
    lay.unfactorize()
    torch.testing.assert_close(lay.weight(), W, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lay.Q, W.T @ W)
    torch.testing.assert_close(lay.s, W.sum(0))
    assert torch.equal(lay.U, torch.eye(6, dtype=torch.float64)) and not lay.w.any()


def test_gradient_for_the_layer_below_is_the_full_layers():
    g = torch.Generator().manual_seed(3)
    lay, _ = _run_both("log_taylor", steps=5)
    h = torch.randn(7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 60, (7,), generator=g)
    (gh,) = torch.autograd.grad(lay(h, y), h)
    (gref,) = torch.autograd.grad(log_taylor_softmax_loss(h @ lay.weight().T, y), h)
    torch.testing.assert_close(gh, gref, rtol=1e-10, atol=1e-12)
    assert all(not b.requires_grad for b in lay.buffers())


def test_float32_tracks_float64():
    lay32, W32 = _run_both("z", steps=50, dtype=torch.float32)
    lay64, W64 = _run_both("z", steps=50, dtype=torch.float64)
    assert lay32.V.dtype == torch.float32
    torch.testing.assert_close(lay32.weight().double(), W64, rtol=1e-4, atol=1e-5)


def test_smallest_legal_layer_and_state_dict():
    lay = FactoredSphericalLayer(torch.tensor([[0.5], [-0.2]], dtype=torch.float64), "mse")
    W = lay.weight().clone()
    L = lay.step(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([1]), 0.1)
    assert L == pytest.approx((0.5 ** 2) + (-0.2 - 1) ** 2)
    # one MSE step by hand: grad_W = 2 (o - e_c) h^T
    torch.testing.assert_close(lay.weight(), W - 0.1 * 2 * (W - torch.tensor([[0.0], [1.0]], dtype=torch.float64)))
    assert set(lay.state_dict()) == {"V", "U", "U_inv", "w", "Q", "s"}
    assert "D=2, d=1, loss='mse'" in repr(lay)


def test_non_finite_loss_raises_and_leaves_the_layer_unchanged(monkeypatch):
    lay = FactoredSphericalLayer(torch.randn(10, 3, dtype=torch.float64))
    before = {k: v.clone() for k, v in lay.state_dict().items()}
    with pytest.raises(ValueError, match=r"^h: the statistics"):
        lay.step(torch.full((2, 3), 1e200, dtype=torch.float64), torch.tensor([0, 1]), 0.1)  # S2 overflows
    with pytest.raises(ValueError, match=r"^h: the statistics"):
        lay.loss(torch.full((2, 3), 1e200, dtype=torch.float64), torch.tensor([0, 1]))
    import lossbook.classification.z_loss_factored as zf
    monkeypatch.setattr(zf, "spherical_loss_from_stats", lambda o_c, *args, **kw: (o_c * float("inf")).mean())
    with pytest.raises(ValueError, match=r"^h: the loss is not finite"):  # finite statistics, infinite loss
        lay.step(torch.ones(2, 3, dtype=torch.float64), torch.tensor([0, 1]), 0.1)
    assert all(torch.equal(before[k], v) for k, v in lay.state_dict().items()) and lay.steps == 0


def test_float32_layer_keeps_its_bookkeeping_in_float64():
    # (8)-(9) multiply rounding by D: with a float32 Q and s this run ended with drifts of about 5e-6 (Q) and 3e-4 (s);
    # with float64 ones but without the correction for the rounding of the stored rows of V, about 7e-7 and 2e-5
    g = torch.Generator().manual_seed(5)
    D, d = 20000, 16
    lay = FactoredSphericalLayer((0.01 * torch.randn(D, d, generator=g, dtype=torch.float64)).float())
    assert lay.V.dtype == torch.float32 and {lay.U.dtype, lay.U_inv.dtype, lay.w.dtype, lay.Q.dtype, lay.s.dtype} == {torch.float64}
    p = (torch.arange(D) + 1.0) ** -1.1  # Zipfian targets
    for _ in range(600):
        h = torch.cat([torch.tanh(2 * torch.randn(64, d - 1, generator=g, dtype=torch.float64)),
                       torch.ones(64, 1, dtype=torch.float64)], 1).float()
        lay.step(h, torch.multinomial(p, 64, replacement=True, generator=g), 1.0)
    W = lay.V.double() @ lay.U + lay.w
    assert float((lay.Q - W.T @ W).norm() / (W.T @ W).norm()) < 1e-9  # follows the stored (rounded) V
    assert float((lay.s - W.sum(0)).norm() / W.sum(0).norm()) < 1e-9
    assert lay.weight().dtype == torch.float32 and lay.loss(h, torch.zeros(64, dtype=torch.long)).dtype == torch.float32


@pytest.mark.parametrize("make, match", [
    (lambda lay, h, y: lay.step(h, torch.tensor([0, 10]), 0.1), r"^target"),
    (lambda lay, h, y: lay.step(h, torch.tensor([-1, 0]), 0.1), r"^target"),
    (lambda lay, h, y: lay.step(h, torch.tensor([0, 1, 2]), 0.1), r"^target"),
    (lambda lay, h, y: lay.step(h, y.float(), 0.1), r"^target"),
    (lambda lay, h, y: lay.step(h.float(), y, 0.1), r"^h:"),
    (lambda lay, h, y: lay.step(h[:, :2], y, 0.1), r"^h:"),
    (lambda lay, h, y: lay.step(h[0], y, 0.1), r"^h"),
    (lambda lay, h, y: lay.step(h * float("nan"), y, 0.1), r"^h"),
    (lambda lay, h, y: lay.step(h * float("inf"), y, 0.1), r"^h"),
    (lambda lay, h, y: lay.step(h[:0], y[:0], 0.1), r"^h"),
    (lambda lay, h, y: lay.step(h, y, 0.0), r"^lr"),
    (lambda lay, h, y: lay.step(h, y, float("nan")), r"^lr"),
    (lambda lay, h, y: lay.loss(h, torch.tensor([0, 10])), r"^target"),
    (lambda lay, h, y: lay.loss(h[:, :2], y), r"^h:"),
    (lambda lay, h, y: lay.loss(h, y, reduction="max"), r"reduction"),
])
def test_bad_input_raises(make, match):
    lay = FactoredSphericalLayer(torch.randn(10, 3, dtype=torch.float64))
    h, y = torch.randn(2, 3, dtype=torch.float64), torch.tensor([0, 9])
    with pytest.raises(ValueError, match=match):
        make(lay, h, y)
    assert lay.steps == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "softmax"}, r"^loss"),
    ({"loss": "mse", "a": 2.0}, r"^loss_kwargs"),
    ({"loss": "z", "eps": -1.0}, r"^eps"),
    ({"loss": "z", "a": 0.0}, r"^a"),
    ({"loss": "z", "b": float("nan")}, r"^b"),
    ({"loss": "log_spherical", "eps": 0.0}, r"^eps"),
    ({"check_every": 0}, r"^check_every"),
    ({"check_every": 1.5}, r"^check_every"),
    ({"max_cond": 1.0}, r"^max_cond"),
    ({"max_cond": -3.0}, r"^max_cond"),
    ({"unfactorize_every": 0}, r"^unfactorize_every"),
])
def test_bad_construction_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FactoredSphericalLayer(torch.randn(10, 3), **kwargs)


@pytest.mark.parametrize("W0, match", [
    (torch.randn(10), r"^W0"), (torch.randn(1, 3), r"^W0"), (torch.full((4, 2), float("nan")), r"^W0"),
    (torch.ones(4, 2, dtype=torch.int64), r"^W0"),
])
def test_bad_initial_weights_raise(W0, match):
    with pytest.raises(ValueError, match=match):
        FactoredSphericalLayer(W0)


@pytest.mark.parametrize("args, match", [
    ((torch.zeros(3), torch.zeros(2), torch.zeros(3), 5, "mse"), r"^S1"),
    ((torch.zeros(3), torch.zeros(3), torch.zeros(2), 5, "log_taylor"), r"^S2"),
    ((torch.zeros(3), torch.zeros(3), torch.zeros(3), 1, "mse"), r"^n_classes"),
    ((torch.zeros(3), torch.zeros(3), torch.full((3,), float("nan")), 5, "mse"), r"^S2"),
    ((torch.zeros(3, 1), torch.zeros(3), torch.zeros(3), 5, "mse"), r"^o_c"),
])
def test_stats_form_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        spherical_loss_from_stats(*args)


def test_reexported_from_the_z_loss_module():
    import lossbook.classification.z_loss as zl
    from lossbook.classification.z_loss import FactoredSphericalLayer as F2
    assert F2 is FactoredSphericalLayer and zl.spherical_loss_from_stats is spherical_loss_from_stats
    with pytest.raises(AttributeError):
        zl.no_such_name  # noqa: B018


# ---------------------------------------------------------------- mutation pass (#7): the gaps its survivors showed
def test_unfactorize_every_step_is_legal():
    lay, W = _run_both("z", steps=5, unfactorize_every=1)
    assert lay.unfactorize_every == 1 and lay.unfactorizations == 5
    assert float((lay.weight() - W).norm() / W.norm()) < 1e-8


def test_loss_uses_the_layers_hyper_parameters_and_repr_lists_them():
    g = torch.Generator().manual_seed(8)
    W0 = torch.randn(6, 3, generator=g, dtype=torch.float64)
    h = torch.randn(4, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 5, 2, 2])
    lay = FactoredSphericalLayer(W0, "z", a=3.0, b=1.0, eps=1e-4)
    want = spherical_loss_from_stats(*_stats(h @ W0.T, y), 6, "z", "none", a=3.0, b=1.0, eps=1e-4)
    torch.testing.assert_close(lay.loss(h, y, "none"), want, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(want, spherical_loss_from_stats(*_stats(h @ W0.T, y), 6, "z", "none"))
    assert repr(lay) == "FactoredSphericalLayer(D=6, d=3, loss='z', a=3.0, b=1.0, eps=0.0001, check_every=100)"


def test_loss_name_and_statistics_are_checked_by_name():
    with pytest.raises(ValueError, match=r"^loss: expected one of"):
        spherical_loss_kwargs("hinge")
    with pytest.raises(ValueError, match=r"^loss_kwargs: \['a'\] are not hyper-parameters of the 'mse' loss \(it takes none\)$"):
        spherical_loss_kwargs("mse", a=1.0)
    assert spherical_loss_kwargs("z", eps=0.0)["eps"] == 0.0  # eps >= 0 for the Z-loss
    o = torch.randn(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    oc, S1, S2 = _stats(o, y)
    for name in ("mse", "log_taylor", "log_spherical"):
        with pytest.raises(ValueError, match=r"^o_c: expected a floating-point tensor"):
            spherical_loss_from_stats(oc.long(), S1, S2, 5, name)
        with pytest.raises(ValueError, match=r"^S1: expected a floating-point tensor"):
            spherical_loss_from_stats(oc, S1.long(), S2, 5, name)
        with pytest.raises(ValueError, match=r"^S2: expected 1 dimensions"):
            spherical_loss_from_stats(oc, S1, S2[:, None], 5, name)
        with pytest.raises(ValueError, match=r"^S1 and o_c must have the same shape"):
            spherical_loss_from_stats(oc, S1[:3], S2, 5, name)
