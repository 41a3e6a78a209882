"""Tests for lossbook.classification.decoupled_softmax_xmc (Gupta et al. 2024, DEXML: decoupled softmax, soft top-k).

No library implements these losses: the references are float64 loops transcribed from the paper's equations (2), (3),
(5)-(6) and the official code's algorithm (bisection bracket), the cross-entropy (one positive), autograd through a
differentiable fixed point and finite differences for the custom backward of Eq. (7), and loops for P@k and nDCG@k.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.classification.decoupled_softmax_xmc import (
    DecoupledSoftmaxLoss,
    DualEncoderScorer,
    XMCSoftmaxLoss,
    SoftTopKLoss,
    _find_threshold,
    _xmc_example,
    decoupled_softmax_loss,
    dual_encoder_scores,
    xmc_softmax_loss,
    ndcg_at_k,
    precision_at_k,
    soft_topk,
    soft_topk_loss,
)
from lossbook.registry import get

F64 = torch.float64


def _data(B=7, L=12, seed=0, dtype=F64, max_pos=4):
    g = torch.Generator().manual_seed(seed)
    s = (2 * torch.rand(B, L, generator=g, dtype=F64) - 1) / 0.05
    n_pos = torch.randint(1, max_pos + 1, (B, 1), generator=g)
    ranks = torch.rand(B, L, generator=g).argsort(1).argsort(1)
    return s.to(dtype), ranks < n_pos


def _lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _sig(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _ref_softmax(s, t):
    return torch.tensor([-sum(r[l] - _lse(r) for l in range(len(r)) if p[l]) for r, p in zip(s.tolist(), t.tolist())],
                        dtype=F64)


def _ref_decoupled(s, t):
    out = []
    for r, p in zip(s.tolist(), t.tolist()):
        neg = [v for v, q in zip(r, p) if not q]
        pos = [v for v, q in zip(r, p) if q]
        out.append(-sum(v - _lse([v] + neg) for v in pos) / len(pos))
    return torch.tensor(out, dtype=F64)


def _ref_topk(s, k, alpha, n_iter=200):
    "Eq. (5) solved to machine precision by bisection in Python floats; per row k may differ."
    rows = []
    ks = k if isinstance(k, list) else [k] * len(s)
    for r, kk in zip(s.tolist(), ks):
        lo, hi = -max(r) - 10 / alpha, -min(r) + 10 / alpha
        for _ in range(n_iter):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if sum(_sig(alpha * (v + mid)) for v in r) < kk else (lo, mid)
        t = (lo + hi) / 2
        rows.append([_sig(alpha * (v + t)) for v in r])
    return torch.tensor(rows, dtype=F64)


def _ref_topk_loss(s, t, k, alpha):
    p = _ref_topk(s, k, alpha)
    return torch.tensor([-sum(math.log(pv) for pv, q in zip(pr, tr) if q) / sum(tr)
                         for pr, tr in zip(p.tolist(), t.tolist())], dtype=F64)


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_softmax_matches_loop(seed):
    s, t = _data(seed=seed)
    torch.testing.assert_close(xmc_softmax_loss(s, t, reduction="none"), _ref_softmax(s, t), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decoupled_matches_loop(seed):
    s, t = _data(seed=seed)
    torch.testing.assert_close(decoupled_softmax_loss(s, t, reduction="none"), _ref_decoupled(s, t), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,alpha", [(5, 2.0), (1, 0.5), (3, 7.0), (11, 2.0)])
def test_soft_topk_loss_matches_loop(k, alpha):
    s, t = _data(seed=k)
    got = soft_topk_loss(s, t, k=k, alpha=alpha, n_iter=60, reduction="none")
    torch.testing.assert_close(got, _ref_topk_loss(s, t, k, alpha), rtol=1e-9, atol=1e-9)


def test_targets_dtypes_agree():
    s, t = _data()
    for fn in (xmc_softmax_loss, decoupled_softmax_loss, soft_topk_loss):
        ref = fn(s, t)
        for tt in (t.long(), t.int(), t.double(), t.float()):
            torch.testing.assert_close(fn(s, tt), ref, rtol=0, atol=0)


# ---------------------------------------------------------------- oracles and properties
def test_one_positive_is_cross_entropy():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(9, 15, generator=g, dtype=F64) * 4
    y = torch.randint(0, 15, (9,), generator=g)
    oh = F.one_hot(y, 15)
    ce = F.cross_entropy(s, y, reduction="none")
    torch.testing.assert_close(xmc_softmax_loss(s, oh, reduction="none"), ce, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(decoupled_softmax_loss(s, oh, reduction="none"), ce, rtol=1e-12, atol=1e-12)
    gs = torch.Generator().manual_seed(0)
    torch.testing.assert_close(decoupled_softmax_loss(s, oh, sample_positive=True, generator=gs, reduction="none"), ce,
                               rtol=1e-12, atol=1e-12)


def test_softmax_probability_cap_bound():
    s, t = _data(B=40, max_pos=6, seed=4)
    n = t.sum(1).double()
    assert (xmc_softmax_loss(s, t, reduction="none") >= n * n.log() - 1e-12).all()
    # the bound is reached by positives sharing the mass, negatives at -inf
    far = torch.where(t, 0.0, -1e4).double()
    torch.testing.assert_close(xmc_softmax_loss(far, t, reduction="none"), n * n.log(), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(decoupled_softmax_loss(far, t, reduction="none"), torch.zeros(40, dtype=F64),
                               rtol=0, atol=1e-12)


def test_decoupled_positive_ignores_other_positives():
    s, _ = _data(B=5, L=10)
    t = torch.zeros(5, 10, dtype=torch.bool)
    t[:, :3] = True
    s1 = s.clone().requires_grad_(True)
    s2 = s.clone()
    s2[:, 1:3] += 25.0
    s2.requires_grad_(True)
    g1 = torch.autograd.grad(decoupled_softmax_loss(s1, t, reduction="sum"), s1)[0]
    g2 = torch.autograd.grad(decoupled_softmax_loss(s2, t, reduction="sum"), s2)[0]
    torch.testing.assert_close(g1[:, 0], g2[:, 0], rtol=1e-12, atol=1e-14)
    assert (g1[:, :3] <= 0).all()  # no positive is pushed down
    # the softmax does push a dominant positive down
    top = torch.zeros(1, 10, dtype=F64)
    top[0, 0], top[0, 1] = 10.0, 0.0
    tt = torch.zeros(1, 10, dtype=torch.bool)
    tt[0, :2] = True
    ts = top.clone().requires_grad_(True)
    assert torch.autograd.grad(xmc_softmax_loss(ts, tt), ts)[0][0, 0] > 0


def test_decoupled_all_positive_row_is_zero_with_finite_grad():
    s, _ = _data(B=3, L=6)
    t = torch.ones(3, 6)
    t[0, 0] = 0  # one row with a negative, two rows without
    x = s.clone().requires_grad_(True)
    v = decoupled_softmax_loss(x, t, reduction="none")
    assert v[1].item() == 0.0 and v[2].item() == 0.0 and v[0].item() > 0
    v.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[1:] == 0).all()


def test_sample_positive_is_unbiased_and_seeded():
    s, t = _data(B=6, seed=5)
    gs = torch.Generator().manual_seed(0)
    draws = torch.stack([decoupled_softmax_loss(s, t, sample_positive=True, generator=gs, reduction="none")
                         for _ in range(3000)])
    torch.testing.assert_close(draws.mean(0), decoupled_softmax_loss(s, t, reduction="none"), rtol=0, atol=0.2)
    # each draw is exactly one positive's term
    per_label = -(s - torch.logaddexp(s, torch.logsumexp(s.masked_fill(t, -math.inf), 1, keepdim=True)))
    for d in draws[:50]:
        assert all(any(abs(d[i].item() - per_label[i, l].item()) < 1e-12 for l in range(12) if t[i, l]) for i in range(6))
    a = decoupled_softmax_loss(s, t, True, torch.Generator().manual_seed(7))
    b = decoupled_softmax_loss(s, t, True, torch.Generator().manual_seed(7))
    assert a.item() == b.item()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sample_positive_on_cuda_draws_on_the_generators_device():
    # issue #11: a CPU generator with CUDA scores raised in torch.multinomial; now it draws on the CPU (the same
    # positives as for CPU scores), as _keep_at_most_k does; a CUDA generator and no generator work too
    s, t = _data(B=6, seed=5)
    cpu = decoupled_softmax_loss(s, t, True, torch.Generator().manual_seed(7), reduction="none")
    gpu = decoupled_softmax_loss(s.cuda(), t.cuda(), True, torch.Generator().manual_seed(7), reduction="none")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu)
    for g in (torch.Generator("cuda").manual_seed(7), None):
        v = decoupled_softmax_loss(s.cuda(), t.cuda(), True, g, reduction="none")
        assert v.device.type == "cuda" and torch.isfinite(v).all()


def test_softmax_sums_but_decoupled_averages_over_positives():
    "The official code: softmax divides by the batch only; decoupled and top-k divide each term by |P|."
    s, t = _data(B=4, seed=6)
    n = t.sum(1).double()
    log_p = s - torch.logsumexp(s, 1, keepdim=True)
    torch.testing.assert_close(xmc_softmax_loss(s, t), -(log_p * t).sum(1).mean())
    assert not torch.allclose(xmc_softmax_loss(s, t), (-(log_p * t).sum(1) / n).mean())


# ---------------------------------------------------------------- soft top-k
def test_soft_topk_rows_sum_to_k_and_match_reference():
    s, _ = _data(B=5, L=20)
    p = soft_topk(s, 5, n_iter=60)
    torch.testing.assert_close(p.sum(1), torch.full((5,), 5.0, dtype=F64), rtol=0, atol=1e-9)
    torch.testing.assert_close(p, _ref_topk(s, 5, 2.0), rtol=1e-9, atol=1e-12)
    p32 = soft_topk(s.float(), 5)  # default 32 steps: rows sum to k within 1e-5 (the card's tolerance)
    assert (p32.sum(1) - 5).abs().max() < 1e-4 and p32.dtype == torch.float32


def test_soft_topk_defaults_pinned():
    s, _ = _data(B=4, L=20)
    d = soft_topk(s)
    torch.testing.assert_close(d, soft_topk(s, 5, 2.0, 32, False), rtol=0, atol=0)
    for other in (soft_topk(s, 4), soft_topk(s, alpha=1.0), soft_topk(s, n_iter=3), soft_topk(s, log=True)):
        assert not torch.allclose(d, other)
    torch.testing.assert_close(soft_topk(s, n_iter=32), soft_topk(s, n_iter=60), rtol=0, atol=1e-6)


def test_soft_topk_properties():
    s, _ = _data(B=6, L=25)
    p = soft_topk(s, 5, n_iter=60)
    # monotone: the order of p is the order of s
    order = s.argsort(1)
    assert (p.gather(1, order).diff(dim=1) >= 0).all()
    torch.testing.assert_close(soft_topk(s - 123.0, 5, n_iter=60), p, rtol=0, atol=1e-9)  # shift invariant
    hard = torch.zeros_like(s).scatter_(1, s.topk(5, 1).indices, 1.0)
    torch.testing.assert_close(soft_topk(s, 5, alpha=1000.0, n_iter=80), hard, rtol=0, atol=1e-3)
    torch.testing.assert_close(soft_topk(s, 5, n_iter=60, log=True), p.log(), rtol=1e-9, atol=1e-12)
    # per-row k, including the edges 1 and L - 1
    k = torch.tensor([1, 2, 5, 12, 23, 24])
    pk = soft_topk(s, k, n_iter=60)
    torch.testing.assert_close(pk.sum(1), k.double(), rtol=0, atol=1e-8)
    torch.testing.assert_close(pk, _ref_topk(s, k.tolist(), 2.0), rtol=1e-9, atol=1e-12)


def test_soft_topk_log_finite_where_p_underflows():
    s = torch.tensor([[0.0, 0.0, -500.0, 10.0]], dtype=torch.float32)
    lp = soft_topk(s, 1, alpha=2.0, log=True)
    assert torch.isfinite(lp).all() and lp[0, 2] < -500


def _newton_topk(s, k, alpha, log=False):
    "Eq. (5) with t from bisection (no grad) then Newton steps with grad: autograd then differentiates the fixed point."
    with torch.no_grad():
        t = _find_threshold(alpha * s, torch.full((s.shape[0], 1), float(k), dtype=s.dtype), 80) / alpha
    for _ in range(3):
        p = torch.sigmoid(alpha * (s + t))
        t = t - (p.sum(1, keepdim=True) - k) / (alpha * p * (1 - p)).sum(1, keepdim=True)
    a = alpha * (s + t)
    return F.logsigmoid(a) if log else torch.sigmoid(a)


@pytest.mark.parametrize("log", [False, True])
def test_custom_backward_equals_unrolled_autograd(log):
    s, _ = _data(B=4, L=15, seed=8)
    s = s * 0.05  # cosines
    w = torch.randn(4, 15, generator=torch.Generator().manual_seed(1), dtype=F64)
    a, b = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    (soft_topk(a, 4, alpha=10.0, n_iter=60, log=log) * w).sum().backward()
    (_newton_topk(b, 4, 10.0, log=log) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(a.grad.sum(1), torch.zeros(4, dtype=F64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("log", [False, True])
def test_soft_topk_gradcheck(log):
    s, _ = _data(B=3, L=8, seed=9)
    x = (s * 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: soft_topk(z, 3, alpha=3.0, n_iter=60, log=log), (x,), eps=1e-6, atol=1e-6)


def test_losses_gradcheck():
    s, t = _data(B=3, L=6, seed=10)
    x = (s * 0.1).requires_grad_(True)
    for fn in (xmc_softmax_loss, decoupled_softmax_loss,
               lambda z, y: soft_topk_loss(z, y, k=2, n_iter=60)):
        assert torch.autograd.gradcheck(lambda z: fn(z, t), (x,), eps=1e-6, atol=1e-6)


def test_soft_topk_saturated_rows_have_finite_grads():
    s = torch.tensor([[1e4, -1e4, 0.0, 5e3], [0.0, 1.0, 2.0, 3.0]], dtype=torch.float32, requires_grad=True)
    t = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]])
    v = soft_topk_loss(s, t, k=2)
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(s.grad).all()


def test_soft_topk_loss_defaults_pinned():
    s, t = _data(B=5, L=20)
    d = soft_topk_loss(s, t)
    torch.testing.assert_close(d, soft_topk_loss(s, t, 5, 2.0, 32, "mean", False, None), rtol=0, atol=0)
    # sample_positives defaults to False: with k = 2 < |P| for some rows, sampling changes the value
    assert (t.sum(1) > 2).any()
    assert not torch.allclose(soft_topk_loss(s, t, k=2),
                              soft_topk_loss(s, t, k=2, sample_positives=True, generator=torch.Generator().manual_seed(0)))
    for other in (soft_topk_loss(s, t, k=4), soft_topk_loss(s, t, alpha=1.0), soft_topk_loss(s, t, n_iter=3)):
        assert not torch.allclose(d, other)
    torch.testing.assert_close(soft_topk_loss(s, t, reduction="none"),
                               -(soft_topk(s, 5, log=True) * t).sum(1) / t.sum(1))


def _ref_topk_loss_subset(s, t, keep, k, alpha):
    "Eq. (6'): the dropped positives P \\ K masked to -100 (the official code's constant), the loss over K."
    masked = torch.where(t & ~keep, torch.full_like(s, -100.0), s)
    return _ref_topk_loss(masked, keep, k, alpha)


def test_soft_topk_sample_positives_is_a_subset_loss():
    "sample_positives=True: min(k, |P|) positives kept uniformly at random, the others out of the operator (Eq. 6')."
    from itertools import combinations
    s, _ = _data(B=1, L=12, seed=11)
    t = torch.zeros(1, 12, dtype=torch.bool)
    t[0, [1, 4, 6, 9]] = True
    subsets = list(combinations([1, 4, 6, 9], 2))
    refs = []
    for K in subsets:
        keep = torch.zeros_like(t)
        keep[0, list(K)] = True
        refs.append(_ref_topk_loss_subset(s, t, keep, 2, 2.0).item())
    g = torch.Generator().manual_seed(0)
    got = [soft_topk_loss(s, t, k=2, n_iter=60, sample_positives=True, generator=g).item() for _ in range(300)]
    which = [min(range(len(refs)), key=lambda i: abs(v - refs[i])) for v in got]
    assert all(abs(v - refs[i]) < 1e-9 for v, i in zip(got, which))
    counts = torch.bincount(torch.tensor(which), minlength=len(subsets))
    assert (counts > 25).all()  # every 2-subset drawn (uniform: 50 expected each)
    # seeded: the same generator state gives the same draw
    a = soft_topk_loss(s, t, 2, sample_positives=True, generator=torch.Generator().manual_seed(5))
    b = soft_topk_loss(s, t, 2, sample_positives=True, generator=torch.Generator().manual_seed(5))
    assert a.item() == b.item()


def test_soft_topk_sample_positives_keeps_all_when_few_and_no_grad_to_dropped():
    s, t = _data(B=7, L=12, seed=12)  # 1-4 positives per row
    g = torch.Generator().manual_seed(1)
    torch.testing.assert_close(soft_topk_loss(s, t, k=5, sample_positives=True, generator=g, reduction="none"),
                               soft_topk_loss(s, t, k=5, reduction="none"), rtol=0, atol=0)
    # per-row k: rows with |P| <= k_x unchanged, others averaged over exactly k_x kept positives
    k = torch.full((7,), 2)
    x = s.clone().requires_grad_(True)
    v = soft_topk_loss(x, t, k=k, n_iter=60, sample_positives=True, generator=torch.Generator().manual_seed(2),
                       reduction="sum")
    v.backward()
    on_pos = (x.grad != 0) & t
    assert (on_pos.sum(1) == t.sum(1).clamp_max(2)).all()  # a dropped positive gets no gradient (a constant)
    few = t.sum(1) <= 2
    torch.testing.assert_close(
        soft_topk_loss(s[few], t[few], k=2, n_iter=60, sample_positives=True, reduction="none",
                       generator=torch.Generator().manual_seed(3)),
        _ref_topk_loss(s[few], t[few], 2, 2.0), rtol=1e-9, atol=1e-9)


def test_decoupled_defaults_pinned():
    s, t = _data()
    d = decoupled_softmax_loss(s, t)
    torch.testing.assert_close(d, decoupled_softmax_loss(s, t, False, None, "mean"), rtol=0, atol=0)
    assert not torch.allclose(d, decoupled_softmax_loss(s, t, True, torch.Generator().manual_seed(0)))


# ---------------------------------------------------------------- reductions, modules, dtypes
@pytest.mark.parametrize("fn", [xmc_softmax_loss, decoupled_softmax_loss, soft_topk_loss])
def test_reductions(fn):
    s, t = _data()
    none = fn(s, t, reduction="none")
    assert none.shape == (7,)
    torch.testing.assert_close(fn(s, t), none.mean())
    torch.testing.assert_close(fn(s, t, reduction="sum"), none.sum())
    with pytest.raises(ValueError, match=r"^reduction:"):
        fn(s, t, reduction="avg")


def test_modules_pass_settings_through():
    s, t = _data(L=20)
    torch.testing.assert_close(XMCSoftmaxLoss()(s, t), xmc_softmax_loss(s, t))
    torch.testing.assert_close(XMCSoftmaxLoss("sum")(s, t), xmc_softmax_loss(s, t, reduction="sum"))
    torch.testing.assert_close(DecoupledSoftmaxLoss()(s, t), decoupled_softmax_loss(s, t))
    torch.testing.assert_close(DecoupledSoftmaxLoss(reduction="none")(s, t), decoupled_softmax_loss(s, t, reduction="none"))
    m = DecoupledSoftmaxLoss(sample_positive=True, reduction="sum")
    torch.testing.assert_close(m(s, t, torch.Generator().manual_seed(3)),
                               decoupled_softmax_loss(s, t, True, torch.Generator().manual_seed(3), "sum"))
    torch.testing.assert_close(SoftTopKLoss()(s, t), soft_topk_loss(s, t))
    torch.testing.assert_close(SoftTopKLoss(3, 0.5, 7, "none")(s, t), soft_topk_loss(s, t, 3, 0.5, 7, "none"))
    assert repr(SoftTopKLoss()) == "SoftTopKLoss(k=5, alpha=2.0, n_iter=32, reduction='mean', sample_positives=False)"
    ms = SoftTopKLoss(2, sample_positives=True, reduction="none")
    torch.testing.assert_close(ms(s, t, torch.Generator().manual_seed(4)),
                               soft_topk_loss(s, t, 2, reduction="none", sample_positives=True,
                                              generator=torch.Generator().manual_seed(4)), rtol=0, atol=0)
    assert repr(DecoupledSoftmaxLoss()) == "DecoupledSoftmaxLoss(sample_positive=False, reduction='mean')"
    assert repr(XMCSoftmaxLoss()) == "XMCSoftmaxLoss(reduction='mean')"
    assert repr(DualEncoderScorer()) == "DualEncoderScorer(tau=0.05, normalize=True)"


@pytest.mark.parametrize("fn", [xmc_softmax_loss, decoupled_softmax_loss, soft_topk_loss])
def test_float32_matches_float64(fn):
    s, t = _data()
    v32 = fn(s.float(), t)
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), fn(s, t), rtol=1e-4, atol=1e-5)


def test_registered_not_batch_coupled():
    for name in ("xmc_softmax_loss", "decoupled_softmax_loss", "soft_topk_loss"):
        spec = get(name)
        assert spec.card == 25 and spec.theme == "classification" and not spec.batch_coupled
    (s, t), kw = _xmc_example(11, torch.float32)
    assert s.shape == (11, 12) and t.dtype == torch.bool and kw == {} and s.dtype == torch.float32
    assert (t.sum(1) >= 1).all() and (t.sum(1) <= 4).all() and s.abs().max() <= 20


# ---------------------------------------------------------------- scores and metrics
def test_dual_encoder_scores():
    g = torch.Generator().manual_seed(0)
    q, e = torch.randn(5, 8, generator=g, dtype=F64), torch.randn(11, 8, generator=g, dtype=F64)
    cos = F.cosine_similarity(q[:, None], e[None], dim=2)
    torch.testing.assert_close(dual_encoder_scores(q, e), cos / 0.05)
    torch.testing.assert_close(dual_encoder_scores(q, e, tau=0.5), cos / 0.5)
    torch.testing.assert_close(dual_encoder_scores(q, e, 2.0, normalize=False), q @ e.T / 2.0)
    torch.testing.assert_close(DualEncoderScorer(0.1)(q, e), dual_encoder_scores(q, e, 0.1))
    torch.testing.assert_close(DualEncoderScorer(1.0, False)(q, e), q @ e.T)
    assert dual_encoder_scores(q, e).abs().max() <= 20 + 1e-9


def _ref_pk(s, t, k):
    out = []
    for r, p in zip(s.tolist(), t.tolist()):
        top = sorted(range(len(r)), key=lambda j: -r[j])[:k]
        out.append(sum(p[j] for j in top) / k)
    return torch.tensor(out, dtype=F64)


def _ref_ndcg(s, t, k):
    out = []
    for r, p in zip(s.tolist(), t.tolist()):
        top = sorted(range(len(r)), key=lambda j: -r[j])[:k]
        dcg = sum(p[j] / math.log2(i + 2) for i, j in enumerate(top))
        idcg = sum(1 / math.log2(i + 2) for i in range(min(k, sum(p))))
        out.append(dcg / idcg)
    return torch.tensor(out, dtype=F64)


@pytest.mark.parametrize("k", [1, 3, 5, 12])
def test_metrics_match_loops(k):
    s, t = _data(B=30, max_pos=8, seed=k)
    torch.testing.assert_close(precision_at_k(s, t, k, reduction="none"), _ref_pk(s, t, k))
    torch.testing.assert_close(ndcg_at_k(s, t, k, reduction="none"), _ref_ndcg(s, t, k))
    torch.testing.assert_close(precision_at_k(s, t, k), _ref_pk(s, t, k).mean())
    torch.testing.assert_close(ndcg_at_k(s, t, k, reduction="sum"), _ref_ndcg(s, t, k).sum())


def test_metric_defaults_and_hand_values():
    s = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0, -1.0]])
    t = torch.tensor([[1, 0, 0, 0, 1, 0]])
    assert precision_at_k(s, t).item() == pytest.approx(0.4)
    assert precision_at_k(s, t, 1).item() == 1.0
    assert ndcg_at_k(s, t).item() == pytest.approx((1 + 1 / math.log2(6)) / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(s, t, 1).item() == 1.0
    perfect = torch.tensor([[5.0, 4, 3, 2, 1, 0]])
    assert ndcg_at_k(perfect, torch.tensor([[1, 1, 1, 0, 0, 0]]), 5).item() == pytest.approx(1.0)


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("fn", [xmc_softmax_loss, decoupled_softmax_loss, soft_topk_loss,
                                lambda s, t: precision_at_k(s, t, 1), lambda s, t: ndcg_at_k(s, t, 1)])
def test_bad_inputs(fn):
    s, t = _data()
    with pytest.raises(ValueError, match=r"^scores:.*floating"):
        fn(s.long(), t)
    with pytest.raises(ValueError, match=r"^scores:.*2 dimensions"):
        fn(s[0], t)
    with pytest.raises(ValueError, match=r"^scores:.*at least 2 labels"):
        fn(s[:, :1], t[:, :1])
    bad = s.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^scores:.*finite"):
        fn(bad, t)
    with pytest.raises(ValueError, match=r"^scores:.*empty batch"):
        fn(s[:0], t[:0])
    with pytest.raises(ValueError, match=r"^targets: expected the shape"):
        fn(s, t[:-1])
    with pytest.raises(ValueError, match=r"^targets: expected the shape"):
        fn(s, t[:, :-1])
    with pytest.raises(ValueError, match=r"^targets:.*0/1 relevance"):
        fn(s, t * 2)
    with pytest.raises(ValueError, match=r"^targets:.*0/1 relevance"):
        fn(s, t.double() * 0.5)
    with pytest.raises(ValueError, match=r"^targets:.*0/1 relevance"):
        fn(s, -t.long())
    with pytest.raises(ValueError, match=r"^targets:.*0/1 relevance"):
        fn(s, t.to(torch.complex64))
    empty = t.clone()
    empty[2] = False
    with pytest.raises(ValueError, match=r"^targets: every row needs at least one positive label; rows \[2\]"):
        fn(s, empty)
    with pytest.raises(ValueError, match=r"^targets:.*2 dimensions"):
        fn(s, t[0])
    nan_t = t.double()
    nan_t[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^targets:.*finite"):
        fn(s, nan_t)
    with pytest.raises(TypeError, match=r"^targets:"):
        fn(s, t.tolist())


def test_bad_options():
    s, t = _data(L=12)
    with pytest.raises(ValueError, match=r"^sample_positive:"):
        decoupled_softmax_loss(s, t, sample_positive=1)
    with pytest.raises(ValueError, match=r"^sample_positive:"):
        DecoupledSoftmaxLoss(sample_positive="yes")
    with pytest.raises(ValueError, match=r"^reduction:"):
        DecoupledSoftmaxLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"^reduction:"):
        XMCSoftmaxLoss("avg")
    for k in (0, 12, -1, 2.0, True, None):
        with pytest.raises(ValueError, match=r"^k: expected an int in \[1, 11\]"):
            soft_topk(s, k)
    soft_topk(s, 1), soft_topk(s, 11)  # the edges are legal
    with pytest.raises(ValueError, match=r"^k: expected one k per row"):
        soft_topk(s, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"^k: expected values in \[1, 11\]"):
        soft_topk(s, torch.full((7,), 12))
    with pytest.raises(ValueError, match=r"^k: expected values in \[1, 11\]"):
        soft_topk(s, torch.zeros(7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^k:.*integer"):
        soft_topk(s, torch.full((7,), 2.0))
    with pytest.raises(ValueError, match=r"^k:.*1 dimensions"):
        soft_topk(s, torch.full((7, 1), 2))
    for a in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"^alpha:"):
            soft_topk(s, 3, alpha=a)
        with pytest.raises(ValueError, match=r"^alpha:"):
            SoftTopKLoss(alpha=a)
    for n in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"^n_iter:"):
            soft_topk(s, 3, n_iter=n)
        with pytest.raises(ValueError, match=r"^n_iter:"):
            SoftTopKLoss(n_iter=n)
    soft_topk(s, 3, n_iter=1)  # one step is legal
    for bad in (1, "yes", None):
        with pytest.raises(ValueError, match=r"^sample_positives:"):
            soft_topk_loss(s, t, 3, sample_positives=bad)
        with pytest.raises(ValueError, match=r"^sample_positives:"):
            SoftTopKLoss(sample_positives=bad)
    with pytest.raises(ValueError, match=r"^k: expected an int in \[1, 11\]"):
        soft_topk_loss(s, t, 12, sample_positives=True)
    with pytest.raises(ValueError, match=r"^log:"):
        soft_topk(s, 3, log=1)
    for k in (0, 2.0, False):
        with pytest.raises(ValueError, match=r"^k: expected an int >= 1"):
            SoftTopKLoss(k=k)
    with pytest.raises(ValueError, match=r"^reduction:"):
        SoftTopKLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"^k: expected an int in \[1, 11\]"):
        SoftTopKLoss(k=12)(s, t)
    with pytest.raises(ValueError, match=r"^scores:.*floating"):
        soft_topk(s.long(), 3)
    for k in (0, 13, 1.0, True):
        with pytest.raises(ValueError, match=r"^k: expected an int in \[1, 12\]"):
            precision_at_k(s, t, k)
        with pytest.raises(ValueError, match=r"^k: expected an int in \[1, 12\]"):
            ndcg_at_k(s, t, k)
    precision_at_k(s, t, 12), ndcg_at_k(s, t, 12)


def test_bad_scorer_inputs():
    q, e = torch.randn(4, 8), torch.randn(6, 8)
    with pytest.raises(ValueError, match=r"^e: expected embeddings of dimension 8"):
        dual_encoder_scores(q, e[:, :5])
    with pytest.raises(ValueError, match=r"^q:.*2 dimensions"):
        dual_encoder_scores(q[0], e)
    with pytest.raises(ValueError, match=r"^e:.*2 dimensions"):
        dual_encoder_scores(q, e[0])
    with pytest.raises(ValueError, match=r"^q:.*floating"):
        dual_encoder_scores(q.long(), e)
    with pytest.raises(ValueError, match=r"^e:.*floating"):
        dual_encoder_scores(q, e.long())
    for tau in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"^tau:"):
            dual_encoder_scores(q, e, tau)
        with pytest.raises(ValueError, match=r"^tau:"):
            DualEncoderScorer(tau)


# ---------------------------------------------------------------- tests asked for by mutation testing (issue #7)
def _keep_ref(pos, k, keys):
    "min(k, |P|) positives of each row with the smallest float64 keys (loop)."
    out = torch.zeros_like(pos)
    for i in range(pos.shape[0]):
        idx = [j for j in range(pos.shape[1]) if pos[i, j]]
        idx.sort(key=lambda j: float(keys[i, j]))
        for j in idx[: int(k)]:
            out[i, j] = True
    return out


def test_kept_positives_are_drawn_with_float64_keys_from_the_given_or_global_stream():
    from lossbook.classification.decoupled_softmax_xmc import _keep_at_most_k
    _, t = _data(9, 12, seed=4, max_pos=6)
    k = torch.full((9, 1), 3.0, dtype=F64)
    keys = torch.rand(t.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
    got = _keep_at_most_k(t, k, torch.Generator().manual_seed(7))
    assert torch.equal(got, _keep_ref(t, 3, keys))
    torch.manual_seed(11)  # generator None: torch's global stream, float64 keys too
    keys = torch.rand(t.shape, dtype=F64)
    torch.manual_seed(11)
    assert torch.equal(_keep_at_most_k(t, k, None), _keep_ref(t, 3, keys))
    s, _ = _data(9, 12, seed=4)
    torch.manual_seed(11)
    a = soft_topk_loss(s, t, k=3, sample_positives=True)
    torch.manual_seed(11)
    assert torch.equal(a, soft_topk_loss(s, t, k=3, sample_positives=True, generator=torch.default_generator))


def test_module_smallest_k_and_n_iter_and_ndcg_default_and_exact_discounts():
    s, t = _data()
    assert torch.equal(SoftTopKLoss(k=1, n_iter=1)(s, t), soft_topk_loss(s, t, k=1, n_iter=1))
    s7 = torch.arange(7, 0, -1, dtype=F64)[None]
    t7 = torch.tensor([[True, False, False, False, False, True, False]])  # a positive at rank 6
    assert torch.equal(ndcg_at_k(s7, t7), ndcg_at_k(s7, t7, k=5))
    assert not torch.equal(ndcg_at_k(s7, t7), ndcg_at_k(s7, t7, k=6))
    # one row, positives at ranks 2 and 3 of 4: DCG = 1/log2(3) + 1/log2(4), IDCG = 1 + 1/log2(3), in float64
    s1 = torch.tensor([[4.0, 3.0, 2.0, 1.0]], dtype=F64)
    t1 = torch.tensor([[False, True, True, False]])
    want = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert abs(ndcg_at_k(s1, t1, k=3).item() - want) < 1e-15


def test_all_positive_row_has_finite_gradients_and_scores_rank_and_alpha_named():
    s, t = _data(5, 6, seed=2)
    t[0] = True  # a row without negatives: its decoupled denominator is e^{s_l} alone (log p = 0)
    x = s.clone().requires_grad_(True)
    v = decoupled_softmax_loss(x, t, reduction="none")
    assert v[0].item() == 0.0
    v.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[0] == 0).all()
    with pytest.raises(ValueError, match=r"^scores: expected 2 dimensions"):
        soft_topk(s[None], k=2)
    with pytest.raises(ValueError, match=r"^scores: expected 2 dimensions"):
        soft_topk(s[0], k=2)
    with pytest.raises(ValueError, match=r"^alpha: expected a finite number > 0"):
        soft_topk_loss(s, t, k=2, alpha=0.0, sample_positives=True)


def test_dropped_positives_leave_the_operator_for_a_small_alpha():
    "sample_positives: a dropped positive sits 50/alpha below the row's minimum, so alpha * gap = 50 for any alpha."
    from lossbook.classification.decoupled_softmax_xmc import _check_k, _keep_at_most_k
    s, t = _data(6, 10, seed=3, max_pos=5)
    got = soft_topk_loss(s, t, k=2, alpha=0.1, n_iter=80, sample_positives=True, reduction="none",
                         generator=torch.Generator().manual_seed(4))
    keep = _keep_at_most_k(t, _check_k(2, s), torch.Generator().manual_seed(4))
    for i in range(6):
        cols = ~(t[i] & ~keep[i])  # the row without its dropped positives
        ref = soft_topk_loss(s[i : i + 1, cols], keep[i : i + 1, cols], k=2, alpha=0.1, n_iter=80)
        torch.testing.assert_close(got[i], ref, rtol=1e-9, atol=1e-12)


def test_two_labels_are_legal_and_target_messages_list_their_examples():
    s2 = torch.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=F64)
    t2 = torch.tensor([[True, False], [False, True]])
    torch.testing.assert_close(xmc_softmax_loss(s2, t2), F.cross_entropy(s2, torch.tensor([0, 1])))
    s, _ = _data(1, 7)
    with pytest.raises(ValueError, match=r"^targets: expected 0/1 relevance \(a multi-hot matrix\), got other values, "
                                         r"e\.g\. \[2, 3, -1\]$"):
        xmc_softmax_loss(s, torch.tensor([[0, 2, 1, 3, -1, 5, 1]]))
    s, t = _data(7, 12)
    t[:6] = False
    with pytest.raises(ValueError, match=r"^targets: every row needs at least one positive label; rows \[0, 1, 2, 3, 4\] have none$"):
        xmc_softmax_loss(s, t)
