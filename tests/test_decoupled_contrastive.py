"""Tests for lossbook.ssl.decoupled_contrastive (Yeh et al. 2022, DCL / DCLW).

The card's reference library (lightly's DCLLoss / DCLWLoss) cannot be installed here (importing `lightly.loss` needs
torchvision), so the references are (a) float64 loops transcribed from the paper's Eq. 6 and the DCLW weighting, one in
Python floats (tests/references.py, also used by the shared battery) and one in per-anchor torch operations for the
gradients, and (b) the card's identities: L_NCE - L_DC = -log q per anchor, grad L_NCE = q grad L_DC per anchor (on the
logits and through the whole loss), DCLW = DCL when every positive similarity is equal, invariance to a common rotation
and to positive rescaling. The 2-process DDP equivalence of both losses is checked by tests/test_battery.py.
"""
import math

import pytest
import torch
from references import dcl_ref, dclw_ref

from lossbook.contrastive import nt_xent_loss
from lossbook.ssl.decoupled_contrastive import (DCLLoss, DCLWLoss, dcl_loss, dclw_loss, npc_multiplier,
                                                vmf_weights)


def _views(n=8, d=6, seed=0, noise=0.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    z1 = z + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = z + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z1.to(dtype).requires_grad_(), z2.to(dtype).requires_grad_()


def _torch_loop(z1, z2, tau, sigma=None):
    "Eq. 6 (and DCLW) anchor by anchor with torch scalars, differentiable; the vMF weights without gradient."
    n = z1.shape[0]
    A = [z1[i] / z1[i].norm() for i in range(n)]
    B = [z2[i] / z2[i].norm() for i in range(n)]
    if sigma is None:
        w = [1.0] * n
    else:
        e = [math.exp(float(A[i].detach() @ B[i].detach()) / sigma) for i in range(n)]
        w = [2 - ei * n / sum(e) for ei in e]
    total = 0
    for i in range(n):
        for anchor in (A[i], B[i]):
            neg = torch.stack([anchor @ V[j] / tau for j in range(n) if j != i for V in (A, B)])
            total = total - w[i] * (A[i] @ B[i]) / tau + torch.logsumexp(neg, 0)
    return total / (2 * n)


def _grads(value, *xs):
    return torch.autograd.grad(value, xs, retain_graph=True)


# --- the references: values and gradients, float64 ----------------------------------------------------------------------
@pytest.mark.parametrize("n,d,tau", [(2, 3, 0.1), (5, 4, 0.5), (9, 16, 0.07), (16, 8, 1.0)])
def test_dcl_equals_loops(n, d, tau):
    z1, z2 = _views(n, d, seed=n)
    ours = dcl_loss(z1, z2, tau)
    torch.testing.assert_close(ours, dcl_ref(z1, z2, tau).double(), rtol=1e-12, atol=1e-12)
    ref = _torch_loop(z1, z2, tau)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(_grads(ours, z1, z2), _grads(ref, z1, z2)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n,d,tau,sigma", [(2, 3, 0.1, 0.5), (5, 4, 0.5, 0.5), (9, 16, 0.07, 0.2), (16, 8, 0.1, 2.0)])
def test_dclw_equals_loops(n, d, tau, sigma):
    z1, z2 = _views(n, d, seed=100 + n, noise=1.0)
    ours = dclw_loss(z1, z2, tau, sigma)
    torch.testing.assert_close(ours, dclw_ref(z1, z2, tau, sigma).double(), rtol=1e-12, atol=1e-12)
    ref = _torch_loop(z1, z2, tau, sigma)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(_grads(ours, z1, z2), _grads(ref, z1, z2)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_one_pooled_logsumexp_not_two():
    "The paper's Eq. 6 pools both views' negatives in one logsumexp; an older lightly version added two."
    z1, z2 = _views(6, 5, seed=3)
    h1, h2 = torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
    off = ~torch.eye(6, dtype=torch.bool)
    two = 0
    for a, b in ((h1, h2), (h2, h1)):
        s_aa, s_ab = a @ a.T / 0.1, a @ b.T / 0.1
        two = two + (-s_ab.diag() + s_aa[off].view(6, 5).logsumexp(1) + s_ab[off].view(6, 5).logsumexp(1)).mean()
    assert abs(dcl_loss(z1, z2).item() - (two / 2).item()) > 0.1


def test_vmf_weights():
    z1, z2 = _views(7, 5, seed=4, noise=1.0)
    w = vmf_weights(z1, z2, 0.5)
    assert w.shape == (7,) and not w.requires_grad
    s = torch.nn.functional.cosine_similarity(z1, z2).detach()
    e = torch.exp(s / 0.5)
    torch.testing.assert_close(w, 2 - e / e.mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0, dtype=torch.float64))
    assert w[s.argmin()] == w.max() and w[s.argmax()] == w.min()  # the hardest positive weighs most
    # one dominant pair: weights can be negative (2 - N softmax < 0), by definition
    a = torch.eye(4, dtype=torch.float64)
    b = -a.clone()
    b[0] = a[0]
    assert vmf_weights(a, b, 0.1)[0] < 0


# --- the card's identities ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5])
def test_nce_minus_dcl_is_minus_log_q(tau):
    z1, z2 = _views(10, 6, seed=5)
    nce = nt_xent_loss(z1, z2, tau, reduction="none")
    dc = dcl_loss(z1, z2, tau, reduction="none")
    q = npc_multiplier(z1, z2, tau)
    assert q.shape == (20,) and ((q > 0) & (q < 1)).all()
    torch.testing.assert_close(nce - dc, -q.log(), rtol=1e-10, atol=1e-10)
    assert (dc < nce).all()


def test_logit_gradient_identity():
    "For one anchor's logits s (positive first): grad_s L_NCE = q grad_s L_DC, q = 1 - softmax(s)_0."
    g = torch.Generator().manual_seed(6)
    for _ in range(5):
        s = (3 * torch.randn(9, generator=g, dtype=torch.float64)).requires_grad_()
        l_nce = -s[0] + s.logsumexp(0)
        l_dc = -s[0] + s[1:].logsumexp(0)
        q = 1 - torch.softmax(s.detach(), 0)[0]
        torch.testing.assert_close(_grads(l_nce, s)[0], q * _grads(l_dc, s)[0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(l_nce - l_dc, -q.log(), rtol=1e-12, atol=1e-12)


def test_gradient_identity_through_the_loss():
    "Every anchor term: grad_(z1, z2) L_NCE,i = q_i grad_(z1, z2) L_DC,i (the chain from the logits is linear)."
    z1, z2 = _views(6, 5, seed=7)
    nce = nt_xent_loss(z1, z2, 0.2, reduction="none")
    dc = dcl_loss(z1, z2, 0.2, reduction="none")
    q = npc_multiplier(z1, z2, 0.2).detach()
    for i in range(12):
        for a, b in zip(_grads(nce[i], z1, z2), _grads(dc[i], z1, z2)):
            torch.testing.assert_close(a, q[i] * b, rtol=1e-9, atol=1e-12)


def test_dclw_equals_dcl_when_positive_similarities_are_equal():
    g = torch.Generator().manual_seed(8)
    z1 = torch.nn.functional.normalize(torch.randn(9, 6, generator=g, dtype=torch.float64), dim=1)
    u = torch.randn(9, 6, generator=g, dtype=torch.float64)
    u = torch.nn.functional.normalize(u - (u * z1).sum(1, keepdim=True) * z1, dim=1)  # unit, orthogonal to z1
    z2 = math.cos(0.7) * z1 + math.sin(0.7) * u  # <z1_i, z2_i> = cos 0.7 for every i
    torch.testing.assert_close(vmf_weights(z1, z2), torch.ones(9, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dclw_loss(z1, z2, 0.1, 0.5), dcl_loss(z1, z2, 0.1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dclw_loss(z1, z2, reduction="none"), dcl_loss(z1, z2, reduction="none"))
    # and it differs when they are not equal
    z1r, z2r = _views(9, 6, seed=9, noise=1.0)
    assert abs((dclw_loss(z1r, z2r) - dcl_loss(z1r, z2r)).item()) > 1e-3


@pytest.mark.parametrize("fn", [dcl_loss, dclw_loss, npc_multiplier])
def test_rotation_and_scale_invariance(fn):
    z1, z2 = _views(8, 6, seed=10, noise=1.0)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(11), dtype=torch.float64))
    torch.testing.assert_close(fn(z1 @ Q, z2 @ Q), fn(z1, z2), rtol=1e-12, atol=1e-12)
    scale = torch.rand(8, 1, generator=torch.Generator().manual_seed(12), dtype=torch.float64) * 10 + 0.1
    torch.testing.assert_close(fn(z1 * scale, z2 * scale.flip(0)), fn(z1, z2), rtol=1e-12, atol=1e-12)


def test_q_grows_with_the_batch_for_random_embeddings():
    "More negatives against the same kind of positive: the mean NPC multiplier grows with N (Eq. 4)."
    qs = []
    for n in (4, 32, 256):
        z1, z2 = _views(n, 32, seed=13, noise=0.5)
        qs.append(npc_multiplier(z1, z2, 0.1).mean().item())
    assert qs[0] < qs[1] < qs[2] < 1


# --- gradcheck, reductions, modules, dtypes ---------------------------------------------------------------------------
def test_gradcheck():
    z1, z2 = _views(5, 4, seed=14)
    assert torch.autograd.gradcheck(lambda a, b: dcl_loss(a, b, 0.3), (z1, z2))
    assert torch.autograd.gradcheck(lambda a, b: dcl_loss(a, b, 0.3, reduction="none"), (z1, z2))
    assert torch.autograd.gradcheck(lambda a, b: npc_multiplier(a, b, 0.3), (z1, z2))
    assert torch.autograd.gradgradcheck(lambda a, b: dcl_loss(a, b, 0.3), (z1, z2))


def test_gradcheck_dclw_with_frozen_weights():
    "DCLW's weights carry no gradient: its gradient is that of DCL plus the positive term with the weights frozen."
    z1, z2 = _views(5, 4, seed=15, noise=1.0)
    w0 = vmf_weights(z1, z2, 0.5)

    def frozen(a, b):
        s_p = torch.nn.functional.cosine_similarity(a, b) / 0.3
        return dcl_loss(a, b, 0.3) + ((1 - w0) * s_p).sum() / a.shape[0]

    assert torch.autograd.gradcheck(frozen, (z1, z2))
    torch.testing.assert_close(dclw_loss(z1, z2, 0.3, 0.5), frozen(z1, z2), rtol=1e-12, atol=1e-12)
    for a, b in zip(_grads(dclw_loss(z1, z2, 0.3, 0.5), z1, z2), _grads(frozen(z1, z2), z1, z2)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fn,module", [(dcl_loss, DCLLoss), (dclw_loss, DCLWLoss)])
def test_reductions_modules_and_dtypes(fn, module):
    z1, z2 = _views(7, 5, seed=16)
    none = fn(z1, z2, reduction="none")
    assert none.shape == (14,)
    torch.testing.assert_close(fn(z1, z2), none.mean())
    torch.testing.assert_close(fn(z1, z2, reduction="sum"), none.sum())
    assert module()(z1, z2) == fn(z1, z2)  # the defaults are pinned: tau 0.1 (and sigma 0.5)
    assert module(temperature=0.3, reduction="sum")(z1, z2) == fn(z1, z2, temperature=0.3, reduction="sum")
    v32 = fn(z1.float(), z2.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), fn(z1, z2), rtol=1e-5, atol=1e-5)
    v16 = fn(z1.half(), z2.half())  # half inputs are computed in float32
    assert v16.dtype == torch.float32 and torch.isfinite(v16)


# --- bad inputs ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [dcl_loss, dclw_loss, npc_multiplier])
def test_bad_inputs_raise(fn):
    z1, z2 = _views(4, 3)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        fn(z1[:1], z2[:1])
    with pytest.raises(ValueError, match="same shape"):
        fn(z1, z2[:3])
    with pytest.raises(ValueError, match="z1"):
        fn(z1[:0], z2[:0])
    bad = z2.detach().clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="z2"):
        fn(z1, bad)
    with pytest.raises(ValueError, match="z1"):
        fn(z1[0], z2[0])  # 1-D
    with pytest.raises(ValueError, match="z1"):
        fn(torch.ones(4, 3, dtype=torch.long), z2)
    with pytest.raises(ValueError, match="temperature"):
        fn(z1, z2, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        fn(z1, z2, float("nan"))


def test_bad_hyperparameters_raise():
    z1, z2 = _views(4, 3)
    with pytest.raises(ValueError, match="sigma"):
        dclw_loss(z1, z2, sigma=0.0)
    with pytest.raises(ValueError, match="sigma"):
        vmf_weights(z1, z2, -1.0)
    with pytest.raises(ValueError, match="reduction"):
        dcl_loss(z1, z2, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        DCLWLoss(reduction="batchmean")
    with pytest.raises(ValueError, match="temperature"):
        DCLLoss(temperature=-0.1)


# --- what mutation testing asked for (benchmarks/mutation_score.py) ----------------------------------------------------
def test_error_messages_start_with_the_argument_name():
    "Each message starts with the argument's name, exactly (`name: ...`), in the functions and the modules."
    z1, z2 = _views(4, 3)
    for call, name in [(lambda: dclw_loss(z1, z2, sigma=0.0), "sigma"), (lambda: vmf_weights(z1, z2, -1.0), "sigma"),
                       (lambda: vmf_weights(z1, z2, float("nan")), "sigma"),
                       (lambda: dcl_loss(z1, z2, temperature=-1.0), "temperature"),
                       (lambda: dclw_loss(z1, z2, temperature=0.0), "temperature"),
                       (lambda: npc_multiplier(z1, z2, temperature=0.0), "temperature"),
                       (lambda: DCLLoss(temperature=0.0), "temperature"), (lambda: DCLWLoss(temperature=0.0), "temperature"),
                       (lambda: DCLWLoss(sigma=0.0), "sigma"), (lambda: DCLWLoss(sigma=float("inf")), "sigma"),
                       (lambda: DCLLoss(reduction="avg"), "reduction"), (lambda: DCLWLoss(reduction="avg"), "reduction"),
                       (lambda: dclw_loss(z1, z2, reduction="avg"), "reduction"),
                       (lambda: vmf_weights(z1[0], z2[0]), "z1"), (lambda: vmf_weights(z1, z2.long()), "z2"),
                       (lambda: dcl_loss(z1, z2[0]), "z2: expected 2 dimensions"),
                       (lambda: npc_multiplier(z1, z2[None]), "z2: expected 2 dimensions"),
                       (lambda: vmf_weights(z1, z2[:3]), "z1 and z2")]:
        # a bare argument name must be followed by ':' (a shape check naming two arguments does not count)
        with pytest.raises(ValueError, match=rf"^{name}:" if name.isidentifier() else rf"^{name}(?:[:, ]|$)"):
            call()


@pytest.mark.parametrize("fn,who", [(dcl_loss, "DCL"), (dclw_loss, "DCLW"), (npc_multiplier, "the NPC multiplier")])
def test_two_pairs_are_enough(fn, who):
    "N = 2 is the smallest legal batch (2N-2 = 2 negatives per anchor), N = 1 is not: the message names the loss."
    z1, z2 = _views(2, 3, seed=17)
    v = fn(z1, z2)
    assert torch.isfinite(v).all()
    with pytest.raises(ValueError, match=rf"^z1, z2: {who} needs at least 2 pairs.*N = 1"):
        fn(z1[:1], z2[:1])


def test_defaults_are_pinned():
    "Every default: the value with the defaults equals the value with the explicit default, and differs from another."
    z1, z2 = _views(6, 5, seed=18, noise=1.0)
    assert torch.equal(npc_multiplier(z1, z2), npc_multiplier(z1, z2, 0.1))
    assert not torch.allclose(npc_multiplier(z1, z2), npc_multiplier(z1, z2, 0.5))
    assert torch.equal(vmf_weights(z1, z2), vmf_weights(z1, z2, 0.5))
    assert not torch.allclose(vmf_weights(z1, z2), vmf_weights(z1, z2, 1.5))
    assert dcl_loss(z1, z2) == dcl_loss(z1, z2, 0.1, "mean", False)
    assert dclw_loss(z1, z2) == dclw_loss(z1, z2, 0.1, 0.5, "mean", False)
    assert dclw_loss(z1, z2) != dclw_loss(z1, z2, 0.1, 1.5)
    assert DCLWLoss()(z1, z2) == dclw_loss(z1, z2, 0.1, 0.5)
    assert DCLWLoss(sigma=1.5)(z1, z2) == dclw_loss(z1, z2, 0.1, 1.5)
    assert DCLWLoss(0.3, 1.5, "sum")(z1, z2) == dclw_loss(z1, z2, 0.3, 1.5, "sum")
    m = DCLWLoss(0.3, 1.5, "none", True)
    assert (m.temperature, m.sigma, m.reduction, m.gather_distributed) == (0.3, 1.5, "none", True)
    m = DCLLoss(0.3, "none", True)
    assert (m.temperature, m.reduction, m.gather_distributed) == (0.3, "none", True)
    assert DCLLoss().gather_distributed is False and DCLWLoss().gather_distributed is False


@pytest.mark.parametrize("call,expected", [
    (lambda z1, z2: dcl_loss(z1, z2), False), (lambda z1, z2: dclw_loss(z1, z2), False),
    (lambda z1, z2: dcl_loss(z1, z2, gather_distributed=True), True),
    (lambda z1, z2: dclw_loss(z1, z2, gather_distributed=True), True),
    (lambda z1, z2: DCLLoss()(z1, z2), False), (lambda z1, z2: DCLWLoss()(z1, z2), False),
    (lambda z1, z2: DCLLoss(gather_distributed=True)(z1, z2), True),
    (lambda z1, z2: DCLWLoss(gather_distributed=True)(z1, z2), True),
    (lambda z1, z2: DCLLoss(gather_distributed=1)(z1, z2), True),
])
def test_gather_distributed_reaches_ddp_active(monkeypatch, call, expected):
    "The option (default False) reaches `ddp_active` as a bool, from the functions and the modules (one process)."
    import lossbook.ssl.decoupled_contrastive as mod
    seen = []
    real = mod.ddp_active
    monkeypatch.setattr(mod, "ddp_active", lambda g: seen.append(g) or real(g))
    z1, z2 = _views(4, 3)
    call(z1, z2)
    assert seen == [expected] and type(seen[0]) is bool


@pytest.mark.parametrize("fn", [dcl_loss, dclw_loss])
def test_gathers_only_when_ddp_is_active(monkeypatch, fn):
    "Without DDP (or with gather_distributed=False under DDP) nothing is gathered; with it, both views and the rows."
    import lossbook.ssl.decoupled_contrastive as mod
    calls = []
    monkeypatch.setattr(mod, "gather", lambda t: calls.append("gather") or t)
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append("slice") or slice(0, n))
    z1, z2 = _views(5, 4, seed=19)
    ref = fn(z1, z2, reduction="none")
    assert calls == []
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))  # as if under torch.distributed with one rank's view
    torch.testing.assert_close(fn(z1, z2, reduction="none", gather_distributed=False), ref, rtol=0, atol=0)
    assert calls == []
    torch.testing.assert_close(fn(z1, z2, reduction="none", gather_distributed=True), ref, rtol=0, atol=0)
    assert sorted(calls) == ["gather", "gather", "slice"]


@pytest.mark.parametrize("fn", [dcl_loss, dclw_loss, npc_multiplier, vmf_weights])
def test_mixed_dtypes_are_promoted(fn):
    "A float64 view and a float32 view are computed in float64 (the promoted dtype), whichever comes first."
    z1, z2 = _views(6, 4, seed=20)
    a, b = z1.detach(), z2.detach().float()
    assert fn(a, b).dtype == fn(b, a).dtype == torch.float64
    torch.testing.assert_close(fn(a, b), fn(a, b.double()), rtol=0, atol=0)
    torch.testing.assert_close(fn(b, a), fn(b.double(), a), rtol=0, atol=0)
