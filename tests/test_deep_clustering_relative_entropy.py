"""Tests for lossbook.ssl.deep_clustering_relative_entropy (Dizaji et al. 2017, DEPICT).

There is no PyPI implementation of DEPICT. The references are (a) float64 loops transcribed from the equations
(tests/references.py: the theta-step loss, the three targets, the objective J), (b) PyTorch's cross-entropy with
probability targets, (c) a numerical minimiser of J (scipy's L-BFGS over softmax-parametrised Q) for the exact
target, and (d) the card's identities: rows on the simplex, balanced columns, permutation equivariance, the ordering
J(fixed point) <= J(paper) <= J(P), the gradient p - q. The multi-process Q-step is checked on two gloo processes.
"""
import inspect

import pytest
import torch
import torch.nn.functional as F
from ddp_utils import run_distributed
from references import depict_loss_ref, depict_objective_ref, depict_targets_ref

from lossbook.ssl.deep_clustering_relative_entropy import (FORMS, TARGETS, DEPICTLoss, _depict_loss_example,
                                                           depict_loss, depict_objective, depict_targets)


def _probs(n=20, k=4, seed=0, skew=(1.5, 0.0, 0.0, -1.0), scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, k, generator=g, dtype=torch.float64)
    if skew is not None:
        logits = logits + torch.tensor(list(skew)[:k] + [0.0] * max(0, k - len(skew)), dtype=torch.float64)
    return torch.softmax(logits, 1).to(dtype)


def _logits_q(n=7, k=5, seed=0, dtype=torch.float64):
    (x, q), _ = _depict_loss_example(n, dtype, "cpu", seed, n_clusters=k)
    return x, q


# --- the theta-step loss: references, oracle, gradients --------------------------------------------------------------------
@pytest.mark.parametrize("n,k,seed", [(1, 2, 0), (5, 3, 1), (11, 5, 2), (32, 10, 3)])
@pytest.mark.parametrize("form", FORMS)
def test_loss_equals_loop(n, k, seed, form):
    x, q = _logits_q(n, k, seed)
    torch.testing.assert_close(depict_loss(x, q, form=form), depict_loss_ref(x, q, form=form), rtol=1e-12, atol=1e-12)
    p = torch.softmax(x, 1)
    torch.testing.assert_close(depict_loss(p, q, from_logits=False, form=form),
                               depict_loss_ref(p, q, from_logits=False, form=form), rtol=1e-12, atol=1e-12)


def test_loss_defaults_are_logits_cross_entropy_mean():
    x, q = _logits_q(9, 4, 5)
    torch.testing.assert_close(depict_loss(x, q), F.cross_entropy(x, q), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(depict_loss(x, q), depict_loss(x, q, True, "cross_entropy", "mean"), rtol=0, atol=0)
    assert depict_loss(x, q).ndim == 0
    sig = inspect.signature(depict_loss).parameters
    assert (sig["from_logits"].default, sig["form"].default, sig["reduction"].default) == (True, "cross_entropy", "mean")
    m = DEPICTLoss()
    assert (m.from_logits, m.form, m.reduction) == (True, "cross_entropy", "mean")
    assert "from_logits=True" in repr(m) and "'cross_entropy'" in repr(m) and "'mean'" in repr(m)


def test_kl_form_is_cross_entropy_minus_entropy_and_zero_at_q():
    x, q = _logits_q(8, 4, 1)
    ent = -(q * q.log()).sum(1)
    torch.testing.assert_close(depict_loss(x, q, form="kl", reduction="none"),
                               depict_loss(x, q, reduction="none") - ent, rtol=1e-12, atol=1e-12)
    assert (depict_loss(x, q, form="kl", reduction="none") >= 0).all()
    torch.testing.assert_close(depict_loss(q.log(), q, form="kl"), torch.tensor(0.0, dtype=torch.float64), atol=1e-12,
                               rtol=0)
    # 0 log 0 = 0 in the KL form: a one-hot target row
    oh = torch.eye(4, dtype=torch.float64)[[0, 2]]
    z = torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(depict_loss(z, oh, form="kl"), depict_loss(z, oh), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_gradient_is_p_minus_q(form):
    x, q = _logits_q(6, 5, 2)
    x = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(depict_loss(x, q, form=form), x)
    torch.testing.assert_close(gx, (torch.softmax(x.detach(), 1) - q) / 6, rtol=1e-10, atol=1e-12)
    (gs,) = torch.autograd.grad(depict_loss(x, q, form=form, reduction="sum"), x)
    torch.testing.assert_close(gs, torch.softmax(x.detach(), 1) - q, rtol=1e-10, atol=1e-12)


def test_gradient_in_q_is_that_of_the_formula():
    x, q = _logits_q(5, 3, 0)
    q = q.clone().requires_grad_()
    (gq,) = torch.autograd.grad(depict_loss(x, q, reduction="sum"), q)
    torch.testing.assert_close(gq, -torch.log_softmax(x, 1), rtol=1e-12, atol=1e-12)
    (gq,) = torch.autograd.grad(depict_loss(x, q, form="kl", reduction="sum"), q)
    torch.testing.assert_close(gq, q.detach().log() + 1 - torch.log_softmax(x, 1), rtol=1e-10, atol=1e-12)
    assert not depict_targets(torch.softmax(x, 1).requires_grad_()).requires_grad  # DEPICT's targets: no gradient


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("from_logits", [True, False])
def test_gradcheck(form, from_logits):
    x, q = _logits_q(4, 3, 3)
    inp = (x if from_logits else torch.softmax(x, 1)).clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: depict_loss(a, q, from_logits=from_logits, form=form), (inp,))


def test_reductions_and_module():
    x, q = _logits_q(7, 4, 4)
    none = depict_loss(x, q, reduction="none")
    assert none.shape == (7,)
    torch.testing.assert_close(depict_loss(x, q, reduction="sum"), none.sum())
    torch.testing.assert_close(depict_loss(x, q, reduction="mean"), none.mean())
    for form in FORMS:
        for red in ("mean", "sum", "none"):
            for fl in (True, False):
                inp = x if fl else torch.softmax(x, 1)
                torch.testing.assert_close(DEPICTLoss(fl, form, red)(inp, q), depict_loss(inp, q, fl, form, red),
                                           rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_dtypes(dtype):
    x, q = _logits_q(6, 4, 0, dtype)
    v = depict_loss(x, q)
    assert v.dtype == dtype
    torch.testing.assert_close(v.double(), depict_loss(x.double(), q.double()), rtol=1e-5, atol=1e-6)


def test_loss_bad_inputs():
    x, q = _logits_q(5, 4, 0)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^input:"):
        depict_loss(bad, q)
    badq = q.clone()
    badq[1, 1] = float("inf")
    with pytest.raises(ValueError, match=r"^q:"):
        depict_loss(x, badq)
    with pytest.raises(ValueError, match=r"^input and q must have the same shape"):
        depict_loss(x, q[:4])
    with pytest.raises(ValueError, match=r"^input and q must have the same shape"):
        depict_loss(x[:, :3], q)
    with pytest.raises(ValueError, match=r"^input:"):
        depict_loss(x[:0], q[:0])
    with pytest.raises(ValueError, match=r"^input: expected at least 2 clusters"):
        depict_loss(x[:, :1], q[:, :1])
    with pytest.raises(ValueError, match=r"^q: expected non-negative"):
        depict_loss(x, -q)
    with pytest.raises(ValueError, match=r"^input:"):
        depict_loss(x.long(), q)
    with pytest.raises(ValueError, match=r"^q:"):
        depict_loss(x, (q * 3).long())
    with pytest.raises(ValueError, match=r"^input: expected 2 dimensions"):
        depict_loss(x[0], q[0])
    with pytest.raises(ValueError, match=r"^input: with from_logits=False, expected probabilities in \(0, 1\]"):
        depict_loss(torch.softmax(x, 1) * 2, q, from_logits=False)
    with pytest.raises(ValueError, match=r"^input: with from_logits=False, expected probabilities in \(0, 1\]"):
        depict_loss(torch.softmax(x, 1) * torch.tensor([0.0, 1, 1, 1], dtype=torch.float64), q, from_logits=False)
    with pytest.raises(ValueError, match=r"^form:"):
        depict_loss(x, q, form="ce")
    with pytest.raises(ValueError, match=r"^reduction:"):
        depict_loss(x, q, reduction="avg")
    with pytest.raises(ValueError, match=r"^form:"):
        DEPICTLoss(form="entropy")
    with pytest.raises(ValueError, match=r"^reduction:"):
        DEPICTLoss(reduction="batchmean")


def test_example_gives_valid_inputs():
    (x, q), kw = _depict_loss_example(6, torch.float32, "cpu", 1)
    assert kw == {} and x.shape == q.shape == (6, 5) and x.dtype == q.dtype == torch.float32
    torch.testing.assert_close(q.sum(1), torch.ones(6))
    (x64, q64), _ = _depict_loss_example(6, seed=1)
    torch.testing.assert_close(x64.float(), x)


# --- the targets ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_targets_equal_loops(target, seed):
    p = _probs(25, 4, seed)
    torch.testing.assert_close(depict_targets(p, target), depict_targets_ref(p, target), rtol=1e-10, atol=1e-12)


def test_targets_default_is_the_papers_sqrt():
    p = _probs(30, 4, 7)
    q = depict_targets(p)
    torch.testing.assert_close(q, depict_targets(p, "paper_sqrt"), rtol=0, atol=0)
    w = p / p.sum(0).sqrt()
    torch.testing.assert_close(q, w / w.sum(1, keepdim=True), rtol=1e-12, atol=1e-12)
    for other in ("fixed_point", "dec_square"):
        assert not torch.allclose(q, depict_targets(p, other), atol=1e-6)
    sig = inspect.signature(depict_targets).parameters
    assert sig["target"].default == "paper_sqrt" and sig["prior"].default is None
    assert sig["gather_distributed"].default is False


def test_dec_square_is_the_official_codes_formula():
    p = _probs(30, 5, 3)
    y = p.numpy() ** 2 / p.numpy().sum(0)  # functions.py, train_depict
    y = (y.T / y.sum(1)).T
    torch.testing.assert_close(depict_targets(p, "dec_square"), torch.from_numpy(y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_point_minimises_the_objective(seed):
    from scipy.optimize import minimize
    p = _probs(50, 4, seed)
    N, K = p.shape

    def fun(a):
        A = torch.tensor(a.reshape(N, K), requires_grad=True)
        v = depict_objective(p, torch.softmax(A, 1))
        v.backward()
        return v.item(), A.grad.numpy().ravel()

    r = minimize(fun, p.log().numpy().ravel(), jac=True, method="L-BFGS-B",
                 options=dict(maxiter=5000, gtol=1e-12, ftol=1e-16))
    q_num = torch.softmax(torch.tensor(r.x.reshape(N, K)), 1)
    q = depict_targets(p, "fixed_point")
    torch.testing.assert_close(q, q_num, rtol=0, atol=1e-6)
    assert depict_objective(p, q).item() <= r.fun + 1e-12


def test_fixed_point_satisfies_eq5_at_default_iterations():
    p = _probs(40, 6, 4, skew=(3.0, 1.0, 0.0, 0.0, -2.0, -3.0), scale=1.0)  # very unequal clusters: slow convergence
    q = depict_targets(p, "fixed_point")
    w = p / q.mean(0)
    torch.testing.assert_close(q, w / w.sum(1, keepdim=True), rtol=0, atol=1e-10)
    assert inspect.signature(depict_targets).parameters["n_iter"].default == 100


def test_fixed_point_iterations_and_tolerance():
    p = _probs(30, 4, 1)
    one = depict_targets(p, "fixed_point", n_iter=1)
    torch.testing.assert_close(one, depict_targets(p, "paper_sqrt"), rtol=1e-12, atol=1e-12)  # the first damped step
    two = depict_targets(p, "fixed_point", n_iter=2)
    a = 0.25 * (0.25 / p.mean(0)).log() + 0.5 * (0.25 / one.mean(0)).log()
    torch.testing.assert_close(two, p * a.exp() / (p * a.exp()).sum(1, keepdim=True), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(depict_targets(p, "fixed_point", n_iter=3), depict_targets_ref(p, "fixed_point", n_iter=3),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(depict_targets(p, "fixed_point", tol=1.0), one, rtol=0, atol=0)  # stops after one round
    assert not torch.allclose(depict_targets(p, "fixed_point"), one, atol=1e-6)
    # the default tolerance stops only once converged: the result equals many more iterations
    torch.testing.assert_close(depict_targets(p, "fixed_point"), depict_targets(p, "fixed_point", n_iter=2000, tol=0.0),
                               rtol=0, atol=1e-11)


@pytest.mark.parametrize("seed", range(12))
def test_objective_ordering(seed):
    p = _probs(40, 4, seed)
    J = {t: depict_objective(p, depict_targets(p, t)).item() for t in TARGETS}
    assert J["fixed_point"] <= J["paper_sqrt"] + 1e-12
    assert J["paper_sqrt"] <= depict_objective(p, p).item()
    assert J["dec_square"] > J["fixed_point"]


@pytest.mark.parametrize("target", TARGETS)
def test_targets_rows_simplex_and_equivariance(target):
    p = _probs(30, 5, 2)
    q = depict_targets(p, target)
    torch.testing.assert_close(q.sum(1), torch.ones(30, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (q > 0).all()
    cp = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(depict_targets(p[:, cp], target), q[:, cp], rtol=1e-10, atol=1e-12)
    rp = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(depict_targets(p[rp], target), q[rp], rtol=1e-10, atol=1e-12)


def test_balanced_columns():
    P = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.7, 0.2], [0.2, 0.1, 0.7]], dtype=torch.float64)
    torch.testing.assert_close(depict_targets(P), P, rtol=0, atol=1e-12)
    torch.testing.assert_close(depict_targets(P, "fixed_point"), P, rtol=0, atol=1e-12)
    torch.testing.assert_close(depict_targets(P, "dec_square"), P**2 / (P**2).sum(1, keepdim=True), rtol=0, atol=1e-12)


def test_targets_prior():
    p = _probs(30, 4, 5)
    u = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    for t in ("paper_sqrt", "fixed_point"):
        torch.testing.assert_close(depict_targets(p, t, prior=u), depict_targets_ref(p, t, prior=u), rtol=1e-10,
                                   atol=1e-12)
        torch.testing.assert_close(depict_targets(p, t, prior=torch.full((4,), 0.25, dtype=torch.float64)),
                                   depict_targets(p, t), rtol=1e-12, atol=1e-12)
    # the exact target with a prior: cluster frequencies are pulled towards u
    fq = depict_targets(p, "fixed_point", prior=u).mean(0)
    assert (fq - u).abs().sum() < (p.mean(0) - u).abs().sum()
    # and it minimises J with that prior (stationarity, Eq. 5)
    q = depict_targets(p, "fixed_point", prior=u)
    w = p * u / q.mean(0)
    torch.testing.assert_close(q, w / w.sum(1, keepdim=True), rtol=0, atol=1e-10)


def test_targets_empty_cluster_and_eps():
    p = _probs(10, 4, 0)
    p = torch.cat([p, torch.zeros(10, 1, dtype=torch.float64)], 1)  # a fifth cluster that nobody uses
    for t in TARGETS:
        q = depict_targets(p, t)
        assert torch.isfinite(q).all() and (q[:, 4] == 0).all()
    # a nearly empty cluster: its frequency (mean 1e-14) is floored at eps = 1e-12 by default
    p2 = _probs(10, 3, 1)
    tiny = torch.full((10, 1), 1e-14, dtype=torch.float64)
    p2 = torch.cat([p2 * (1 - 1e-14), tiny], 1)
    torch.testing.assert_close(depict_targets(p2), depict_targets_ref(p2, eps=1e-12), rtol=1e-10, atol=1e-15)
    assert not torch.allclose(depict_targets(p2), depict_targets_ref(p2, eps=1e-16), rtol=1e-6, atol=0)
    torch.testing.assert_close(depict_targets(p2, eps=1e-16), depict_targets_ref(p2, eps=1e-16), rtol=1e-10, atol=1e-15)
    assert inspect.signature(depict_targets).parameters["eps"].default == 1e-12
    assert inspect.signature(depict_targets).parameters["tol"].default == 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_targets_dtype_and_no_grad(dtype):
    p = _probs(12, 3, 0, dtype=dtype).requires_grad_()
    for t in TARGETS:
        q = depict_targets(p, t)
        assert q.dtype == dtype and not q.requires_grad
        torch.testing.assert_close(q.double(), depict_targets(p.detach().double(), t), rtol=1e-4, atol=1e-6)


def test_targets_bad_inputs():
    p = _probs(10, 4, 0)
    bad = p.clone()
    bad[0, 0] = float("nan")
    for x, match in [(bad, r"^p:"), (p * 2, r"^p: expected rows that sum to 1"), (p.long(), r"^p: expected a floating"),
                     (p[0], r"^p: expected 2 dimensions"), (p[:0], r"^p:"),
                     (torch.ones(5, 1, dtype=torch.float64), r"^p: expected at least 2 clusters")]:
        with pytest.raises(ValueError, match=match):
            depict_targets(x)
    neg = p.clone()
    neg[0, :2] = torch.tensor([-0.1, neg[0, 1] + neg[0, 0] + 0.1])
    with pytest.raises(ValueError, match=r"^p: expected non-negative"):
        depict_targets(neg)
    with pytest.raises(ValueError, match=r"^target:"):
        depict_targets(p, "square")
    u = torch.full((4,), 0.25, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^prior:"):
        depict_targets(p, "dec_square", prior=u)
    for badu in (torch.full((3,), 1 / 3, dtype=torch.float64), torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64),
                 torch.full((4,), 0.3, dtype=torch.float64)):
        with pytest.raises(ValueError, match=r"^prior:"):
            depict_targets(p, "fixed_point", prior=badu)
    for n in (0, 1.5, True):
        with pytest.raises(ValueError, match=r"^n_iter:"):
            depict_targets(p, "fixed_point", n_iter=n)


# --- the objective -------------------------------------------------------------------------------------------------------------
def test_objective_equals_loop_and_is_non_negative():
    p = _probs(20, 4, 3)
    u = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    for q in (p, depict_targets(p), depict_targets(p, "dec_square")):
        torch.testing.assert_close(depict_objective(p, q), depict_objective_ref(p, q), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(depict_objective(p, q, u), depict_objective_ref(p, q, u), rtol=1e-12, atol=1e-12)
        assert depict_objective(p, q).item() >= 0
    P = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.7, 0.2], [0.2, 0.1, 0.7]], dtype=torch.float64)
    torch.testing.assert_close(depict_objective(P, P), torch.tensor(0.0, dtype=torch.float64), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=r"^p and q must have the same shape"):
        depict_objective(p, p[:5])
    with pytest.raises(ValueError, match=r"^q: expected rows that sum to 1"):
        depict_objective(p, p * 0.5)


def test_objective_gradcheck():
    p = _probs(6, 3, 0).requires_grad_()
    q = depict_targets(p.detach())
    assert torch.autograd.gradcheck(lambda a: depict_objective(a, q), (p,))


# --- two processes: the Q-step's column sums are all-reduced -------------------------------------------------------------------
def _ddp_targets(rank, world, sizes):
    p = _probs(sum(sizes), 4, 11)
    start = sum(sizes[:rank])
    local = p[start:start + sizes[rank]]
    return {t: depict_targets(local, t, gather_distributed=True) for t in TARGETS}, \
        {t: depict_targets(local, t) for t in TARGETS}


@pytest.mark.parametrize("sizes", [(6, 6), (9, 3)], ids=["even", "uneven"])
def test_targets_two_processes_equal_one_process(sizes):
    p = _probs(sum(sizes), 4, 11)
    full = {t: depict_targets(p, t, gather_distributed=True) for t in TARGETS}  # no process group: a no-op
    for t in TARGETS:
        torch.testing.assert_close(full[t], depict_targets(p, t), rtol=0, atol=0)
    results = run_distributed(_ddp_targets, 2, (sizes,))
    for rank, (gathered, local) in enumerate(results):
        rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
        for t in TARGETS:
            torch.testing.assert_close(gathered[t], full[t][rows], rtol=1e-9, atol=1e-12)
            assert not torch.allclose(local[t], full[t][rows], atol=1e-6), "the local Q-step should differ"



def test_objective_names_p_and_promotes_mixed_dtypes():
    p = _probs(10, 4, 0)
    with pytest.raises(ValueError, match=r"^p: expected rows that sum to 1"):
        depict_objective(p * 2, p)
    q = depict_targets(p)
    want = depict_objective(p, q)
    for a, b in ((p.float(), q), (p, q.float())):
        got = depict_objective(a, b)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, depict_objective(a.double(), b.double()), rtol=1e-14, atol=1e-14)
    assert not torch.equal(want, depict_objective(p.float().double(), q))  # float32 inputs do change the value


def test_loss_checks_q_promotes_and_names_the_softmax_dim():
    import warnings
    x, q = _logits_q(5, 4, 0)
    with pytest.raises(ValueError, match=r"^q: expected 2 dimensions"):
        depict_loss(x, q[0])
    for a, b in ((x.float(), q), (x, q.float())):
        for form in ("cross_entropy", "kl"):
            got = depict_loss(a, b, form=form, reduction="none")
            assert got.dtype == torch.float64
            torch.testing.assert_close(got, depict_loss(a.double(), b.double(), form=form, reduction="none"), rtol=1e-14,
                                       atol=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log_softmax over dim 1, named: no implicit-dimension warning
        depict_loss(x, q)
    probs = torch.softmax(x, 1)
    probs[0] = torch.tensor([1.0, 0.3, 0.2, 0.1], dtype=torch.float64)  # a probability of exactly 1 is in (0, 1]
    assert torch.isfinite(depict_loss(probs, q, from_logits=False))


def test_prior_checks_and_precision():
    p = _probs(10, 4, 0)
    u = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    for bad in (u.clone().index_fill_(0, torch.tensor([0]), float("nan")), u[:, None]):
        with pytest.raises(ValueError, match=r"^prior:"):
            depict_targets(p, "fixed_point", prior=bad)
    u32 = u.float()
    q = depict_targets(p)
    torch.testing.assert_close(depict_objective(p, q, u32), depict_objective(p, q, u32.double()), rtol=1e-15, atol=1e-15)
