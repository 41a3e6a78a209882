"""Tests of lossbook.metric.snr_distance (card 28): pytorch-metric-learning as the reference, gradcheck, the
distance's properties, reductions, bad inputs and the 2-process gloo DDP equivalence."""

import pytest
import torch
import torch.nn.functional as F
from ddp_utils import run_distributed

from lossbook.metric.snr_distance import (
    SNRContrastiveLoss,
    SNRTripletLoss,
    snr_contrastive_loss,
    snr_distance,
    snr_distance_paired,
    snr_triplet_loss,
    zero_mean_regularizer,
)

F64 = torch.float64


def _emb(n=12, d=6, seed=0, dtype=F64, grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype).requires_grad_(grad)


def _labels(n=12, k=3):
    return torch.arange(n) % k


# ---------------------------------------------------------------- reference: pytorch-metric-learning
@pytest.fixture(scope="module")
def pml():
    return pytest.importorskip("pytorch_metric_learning")


def test_distance_equals_pml(pml):
    from pytorch_metric_learning.distances import SNRDistance
    ref = SNRDistance(normalize_embeddings=False)
    q, r = _emb(9, 7, 0), _emb(5, 7, 1)
    torch.testing.assert_close(snr_distance(q, r), ref(q, r), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(snr_distance(q), ref(q), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(snr_distance_paired(q[:5], r), ref.pairwise_distance(q[:5], r), rtol=1e-13, atol=1e-13)
    q32, r32 = q.float(), r.float()
    torch.testing.assert_close(snr_distance(q32, r32), ref(q32, r32), rtol=1e-5, atol=1e-5)


def test_pml_default_normalises(pml):
    "The default SNRDistance L2-normalises first and differs: the oracle must use normalize_embeddings=False."
    from pytorch_metric_learning.distances import SNRDistance
    q, r = _emb(6, 5, 0), 3 * _emb(4, 5, 1)
    assert not torch.allclose(snr_distance(q, r), SNRDistance()(q, r))
    torch.testing.assert_close(snr_distance(F.normalize(q), F.normalize(r)), SNRDistance()(q, r))


@pytest.mark.parametrize("reg_weight", [0.0, 0.1])
@pytest.mark.parametrize("margins", [(0.0, 1.0), (0.3, 2.0)])
def test_contrastive_equals_pml(pml, reg_weight, margins):
    from pytorch_metric_learning import losses, regularizers
    from pytorch_metric_learning.distances import SNRDistance
    kw = dict(embedding_regularizer=regularizers.ZeroMeanRegularizer(), embedding_reg_weight=reg_weight) if reg_weight else {}
    ref = losses.SignalToNoiseRatioContrastiveLoss(pos_margin=margins[0], neg_margin=margins[1],
                                                   distance=SNRDistance(normalize_embeddings=False), **kw)
    e1, e2 = _emb(16, 8, 3, grad=True), _emb(16, 8, 3, grad=True)
    y = torch.tensor([0, 1, 2, 3] * 4)
    a = ref(e1, y)
    b = snr_contrastive_loss(e2, y, *margins, reg_weight=reg_weight)
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    a.backward(), b.backward()
    torch.testing.assert_close(e2.grad, e1.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mining", ["all", "semihard"])
def test_triplet_equals_pml(pml, mining):
    from pytorch_metric_learning import losses, miners, regularizers
    from pytorch_metric_learning.distances import SNRDistance
    dist = SNRDistance(normalize_embeddings=False)
    ref = losses.TripletMarginLoss(margin=0.2, distance=dist, embedding_regularizer=regularizers.ZeroMeanRegularizer(),
                                   embedding_reg_weight=0.005)
    e1, e2 = _emb(15, 6, 4, grad=True), _emb(15, 6, 4, grad=True)
    y = _labels(15, 3)
    idx = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=dist)(e1, y) if mining == "semihard" else None
    if idx is not None:
        assert len(idx[0]) > 0  # the comparison must cover some semi-hard triplets
    a = ref(e1, y, idx)
    b = snr_triplet_loss(e2, y, 0.2, 0.005, mining=mining)
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    a.backward(), b.backward()
    torch.testing.assert_close(e2.grad, e1.grad, rtol=1e-10, atol=1e-12)


def test_regularizer_equals_pml(pml):
    from pytorch_metric_learning import regularizers
    e = _emb(10, 5, 2)
    torch.testing.assert_close(zero_mean_regularizer(e), regularizers.ZeroMeanRegularizer()(e))


# ---------------------------------------------------------------- brute force from the equations
def test_brute_force_loops():
    e, y = _emb(7, 5, 5), torch.tensor([0, 0, 1, 1, 1, 2, 0])
    v = lambda a: a.var(unbiased=False)
    d = [[float(v(e[j] - e[i]) / v(e[i])) for j in range(7)] for i in range(7)]
    pos = [max(0.0, d[i][j] - 0.1) for i in range(7) for j in range(7) if i != j and y[i] == y[j]]
    neg = [max(0.0, 1.5 - d[i][j]) for i in range(7) for j in range(7) if y[i] != y[j]]
    reg = float(e.sum(1).abs().mean())
    want = sum(pos) / sum(p > 0 for p in pos) + sum(neg) / sum(n > 0 for n in neg) + 0.2 * reg
    assert abs(float(snr_contrastive_loss(e, y, 0.1, 1.5, 0.2)) - want) < 1e-12
    trip = [max(0.0, d[a][p] - d[a][n] + 0.3) for a in range(7) for p in range(7) for n in range(7)
            if a != p and y[a] == y[p] and y[n] != y[a]]
    want = sum(trip) / sum(t > 0 for t in trip) + 0.01 * reg
    assert abs(float(snr_triplet_loss(e, y, 0.3, 0.01)) - want) < 1e-12


# ---------------------------------------------------------------- gradcheck
def test_gradcheck():
    q, r = _emb(5, 4, 6, grad=True), _emb(3, 4, 7, grad=True)
    assert torch.autograd.gradcheck(snr_distance, (q, r))
    assert torch.autograd.gradcheck(lambda x: snr_distance(x), (q,))
    assert torch.autograd.gradcheck(snr_distance_paired, (q[:3].detach().requires_grad_(), r))
    y = torch.tensor([0, 0, 1, 1, 2])
    assert torch.autograd.gradcheck(lambda x: snr_contrastive_loss(x, y, 0.0, 1.0, 0.05), (q,))
    assert torch.autograd.gradcheck(lambda x: snr_triplet_loss(x, y, 0.2, 0.05), (q,))
    assert torch.autograd.gradcheck(lambda x: zero_mean_regularizer(x), (q,))


# ---------------------------------------------------------------- properties (card 28, section 4b)
def test_properties():
    q, r = _emb(6, 9, 8), _emb(4, 9, 9)
    d = snr_distance(q, r)
    assert (d >= 0).all()
    torch.testing.assert_close(snr_distance(q).diagonal(), torch.zeros(6, dtype=F64), atol=1e-13, rtol=0)
    torch.testing.assert_close(snr_distance_paired(q, q), torch.zeros(6, dtype=F64), atol=0, rtol=0)
    for c in (0.01, 7.0, -3.0):
        torch.testing.assert_close(snr_distance(c * q, c * r), d, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(snr_distance(q + 4.0, r - 2.5), d, rtol=1e-10, atol=1e-12)
    # separate constants per row
    torch.testing.assert_close(snr_distance(q + torch.arange(6.0, dtype=F64)[:, None], r), d, rtol=1e-10, atol=1e-12)
    # separate *scales* are not an invariance: this check can fail
    assert not torch.allclose(snr_distance(q, 2 * r), d)


def test_asymmetry_example():
    a = torch.tensor([[1.0, -1.0, 0.0, 0.0]], dtype=F64)  # var 0.5
    b = torch.tensor([[2.0, -2.0, 1.0, -1.0]], dtype=F64)  # var 2.5
    # var(b - a) = var([1, -1, 1, -1]) = 1
    assert abs(float(snr_distance(a, b)) - 1 / 0.5) < 1e-14
    assert abs(float(snr_distance(b, a)) - 1 / 2.5) < 1e-14


def test_zero_mean_unit_vectors_are_2_minus_2cos():
    z = F.normalize(_emb(8, 16, 10) - _emb(8, 16, 10).mean(1, keepdim=True), dim=1)
    torch.testing.assert_close(snr_distance(z), (2 - 2 * z @ z.T).clamp_min(0), rtol=1e-12, atol=1e-12)


def test_regularizer_zero_for_zero_mean_rows():
    e = _emb(5, 7, 11)
    assert float(zero_mean_regularizer(e - e.mean(1, keepdim=True))) < 1e-14
    assert float(zero_mean_regularizer(e)) > 0.1


def test_constant_rows():
    q = _emb(4, 6, 12)
    bad = q.clone()
    bad[2] = 3.3
    with pytest.raises(ValueError, match=r"query: row\(s\) \[2\].*constant"):
        snr_distance(bad)
    with pytest.raises(ValueError, match="constant"):
        snr_distance(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="constant"):
        snr_distance(torch.full((3, 5), 0.1, dtype=torch.float32), torch.randn(2, 5))
    with pytest.raises(ValueError, match="a: row"):
        snr_distance_paired(bad, q)
    # a constant *reference* has zero noise-variance contribution of its own: d = var(q) / var(q) = 1
    torch.testing.assert_close(snr_distance(q, torch.full((2, 6), 5.0, dtype=F64)), torch.ones(4, 2, dtype=F64))
    # tiny but genuine variation is accepted (the test is relative to the row's power)
    snr_distance(1e-20 * q)


# ---------------------------------------------------------------- reductions, module == function, dtypes
@pytest.mark.parametrize("fn", [lambda e, y, r: snr_contrastive_loss(e, y, reg_weight=0.1, reduction=r),
                                lambda e, y, r: snr_triplet_loss(e, y, reduction=r),
                                lambda e, y, r: snr_triplet_loss(e, y, mining="semihard", reduction=r),
                                lambda e, y, r: zero_mean_regularizer(e, r)])
def test_reductions(fn):
    e, y = _emb(12, 6, 13), _labels(12, 4)
    none = fn(e, y, "none")
    assert none.shape == (12,)
    torch.testing.assert_close(fn(e, y, "mean"), none.mean())
    torch.testing.assert_close(fn(e, y, "sum"), none.sum())


def test_avg_nonzero_counts_only_active_terms():
    "avg_nonzero divides each sum by its number of non-zero hinge terms, not by the number of pairs."
    e = torch.tensor([[1.0, 0.0, -1.0], [1.0, 0.2, -1.2], [-1.0, 1.0, 0.0], [50.0, -100.0, 50.0]], dtype=F64)
    y = torch.tensor([0, 0, 1, 2])
    dm = snr_distance(e)
    pos = (dm[0, 1] + dm[1, 0]) / 2
    negs = torch.stack([dm[i, j] for i in range(4) for j in range(4) if y[i] != y[j]])
    act = (2.8 - negs).clamp_min(0)
    assert 0 < int((act > 0).sum()) < len(negs)  # some negative terms are inactive
    torch.testing.assert_close(snr_contrastive_loss(e, y, 0.0, 2.8), pos + act.sum() / (act > 0).sum())
    # 'mean' is a different normalisation (per anchor, over N): it must not coincide here
    assert not torch.isclose(snr_contrastive_loss(e, y, 0.0, 2.8, reduction="mean"), snr_contrastive_loss(e, y, 0.0, 2.8))


def test_module_equals_function():
    e, y = _emb(10, 5, 14), _labels(10, 3)
    torch.testing.assert_close(SNRContrastiveLoss(0.1, 1.2, 0.05, "mean")(e, y), snr_contrastive_loss(e, y, 0.1, 1.2, 0.05, "mean"))
    torch.testing.assert_close(SNRTripletLoss(0.3, 0.01, "semihard")(e, y), snr_triplet_loss(e, y, 0.3, 0.01, "semihard"))
    torch.testing.assert_close(SNRTripletLoss()(e, y), snr_triplet_loss(e, y))
    assert "reg_weight=0.05" in repr(SNRContrastiveLoss(reg_weight=0.05))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes(dtype):
    e, y = _emb(12, 6, 15, dtype=dtype, grad=True), _labels(12, 3)
    for loss in (snr_contrastive_loss(e, y, reg_weight=0.1), snr_triplet_loss(e, y)):
        assert loss.dtype == dtype and torch.isfinite(loss)
        (g,) = torch.autograd.grad(loss, e)
        assert g.dtype == dtype and torch.isfinite(g).all()
    assert snr_distance(e).dtype == dtype
    e64 = e.detach().double()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(snr_contrastive_loss(e.detach(), y).double(), snr_contrastive_loss(e64, y), rtol=tol, atol=tol)
    torch.testing.assert_close(snr_distance(e.detach()).double(), snr_distance(e64), rtol=tol, atol=tol)


def test_gather_distributed_without_process_group_is_a_no_op():
    e, y = _emb(10, 5, 18), _labels(10, 3)
    torch.testing.assert_close(snr_contrastive_loss(e, y, gather_distributed=True), snr_contrastive_loss(e, y))
    torch.testing.assert_close(SNRTripletLoss(gather_distributed=True)(e, y), snr_triplet_loss(e, y))


def test_custom_distance_is_used():
    e, y = _emb(10, 5, 16), _labels(10, 2)
    eucl = lambda q, r: torch.cdist(q, r)
    assert not torch.allclose(snr_contrastive_loss(e, y, distance=eucl), snr_contrastive_loss(e, y))
    want = snr_triplet_loss(e, y, distance=lambda q, r: snr_distance(q, r))
    torch.testing.assert_close(snr_triplet_loss(e, y), want)


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs():
    e, y = _emb(6, 4, 17), _labels(6, 2)
    with pytest.raises(ValueError, match="same embedding size D"):
        snr_distance(e, _emb(3, 5, 1))
    with pytest.raises(ValueError, match="same dtype"):
        snr_distance(e, e.float())
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        snr_distance_paired(e, e[:4])
    nan = e.clone()
    nan[1, 2] = float("nan")
    with pytest.raises(ValueError, match="query: expected finite values"):
        snr_distance(nan)
    with pytest.raises(ValueError, match="ref: expected finite values"):
        snr_distance(e, nan.abs() * float("inf"))
    with pytest.raises(ValueError, match="embeddings: expected finite"):
        snr_contrastive_loss(nan, y)
    with pytest.raises(ValueError, match="expected 2 dimensions"):
        snr_distance(e[0])
    with pytest.raises(ValueError, match="D >= 2"):
        snr_distance(e[:, :1])
    with pytest.raises(ValueError, match="empty batch"):
        snr_distance(e[:0])
    with pytest.raises(ValueError, match="floating-point"):
        snr_distance(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels: expected 6 labels"):
        snr_contrastive_loss(e, y[:5])
    with pytest.raises(ValueError, match="labels: expected an integer tensor"):
        snr_triplet_loss(e, y.float())
    with pytest.raises(ValueError, match="no positive pair"):
        snr_contrastive_loss(e, torch.arange(6))
    with pytest.raises(ValueError, match="no negative pair"):
        snr_contrastive_loss(e, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="no valid triplet"):
        snr_triplet_loss(e, torch.arange(6))
    with pytest.raises(ValueError, match="no valid triplet"):
        snr_triplet_loss(e, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction"):
        snr_contrastive_loss(e, y, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        SNRTripletLoss(reduction="max")
    with pytest.raises(ValueError, match="mining"):
        snr_triplet_loss(e, y, mining="hard")
    with pytest.raises(ValueError, match="neg_margin"):
        SNRContrastiveLoss(neg_margin=0.0)
    with pytest.raises(ValueError, match="margin"):
        SNRTripletLoss(margin=-0.1)
    with pytest.raises(ValueError, match="reg_weight"):
        snr_contrastive_loss(e, y, reg_weight=float("nan"))
    with pytest.raises(TypeError):
        snr_distance(e.numpy())


# ---------------------------------------------------------------- 2-process DDP (gloo) == 1 process
_SIZES = (5, 7)  # unequal local batches
_CASES = [("contrastive", "avg_nonzero"), ("contrastive", "mean"), ("contrastive", "sum"),
          ("triplet", "avg_nonzero"), ("triplet", "mean"), ("semihard", "avg_nonzero")]


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(sum(_SIZES), 6, generator=g, dtype=F64)
    # rank 0 holds labels (0, 1, 2, 3, 4): no positive pair on its own, only across ranks
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
    return x, y


def _model():
    torch.manual_seed(1)
    return torch.nn.Linear(6, 5).double()


def _loss(case, e, y, gather_distributed):
    kind, red = case
    if kind == "contrastive":
        return snr_contrastive_loss(e, y, 0.0, 1.0, 0.1, red, gather_distributed)
    return snr_triplet_loss(e, y, 0.5, 0.1, "semihard" if kind == "semihard" else "all", red, gather_distributed)


def _worker(rank, world):
    import torch.distributed as dist
    x, y = _data()
    lo = sum(_SIZES[:rank])
    xs, ys = x[lo : lo + _SIZES[rank]], y[lo : lo + _SIZES[rank]]
    res = {}
    for case in _CASES:
        for gd in (True, False):
            model = _model()
            try:
                loss = _loss(case, model(xs), ys, gd)
            except ValueError:  # a local-only loss on rank 0 has no positive pair
                loss = model(xs).sum() * 0
            loss.backward()
            grads = [p.grad.clone() for p in model.parameters()]
            for gr in grads:  # what DDP does: average the gradients over ranks
                dist.all_reduce(gr)
                gr /= world
            res[(case, gd)] = (loss.detach(), grads)
    return res


@pytest.fixture(scope="module")
def ddp_results():
    return run_distributed(_worker, 2)


@pytest.mark.parametrize("case", _CASES)
def test_ddp_equals_single_process(ddp_results, case):
    x, y = _data()
    model = _model()
    loss = _loss(case, model(x), y, False)
    loss.backward()
    want = [p.grad for p in model.parameters()]
    for res in ddp_results:
        got_loss, got_grads = res[(case, True)]
        torch.testing.assert_close(got_loss, loss.detach(), rtol=1e-12, atol=1e-12)
        for g, w in zip(got_grads, want):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    # the check can fail: local-only losses (no gather) give other gradients
    _, local = ddp_results[1][(case, False)]
    assert not all(torch.allclose(g, w) for g, w in zip(local, want))


# ---------------------------------------------------------------- gaps found by mutation testing
def test_avg_nonzero_is_zero_not_nan_when_no_hinge_is_active():
    # positives identical (d = 0 <= pos_margin), negatives far apart (d >= neg_margin): every term is 0, as at convergence
    a = torch.tensor([1.0, -1.0, 2.0, 0.0], dtype=torch.float64)
    b = torch.tensor([-3.0, 5.0, 0.5, -2.0], dtype=torch.float64)
    emb = torch.stack([a, a, b, b]).requires_grad_()
    y = torch.tensor([0, 0, 1, 1])
    assert float(snr_distance(emb[:1], emb[2:3])) >= 1.0
    loss = snr_contrastive_loss(emb, y)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(emb.grad).all()
    big_margin = snr_triplet_loss(emb, y, margin=0.0, reg_weight=0.0)
    assert big_margin.item() == 0.0


def test_noise_variance_is_clamped_at_zero():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(64, 32, generator=g) * 1e3 + 5e3  # large, nearly identical rows in float32: cancellation
    d = snr_distance(q, q + 1e-4)
    assert (d >= 0).all() and torch.isfinite(d).all()
    assert (snr_distance(q).diagonal() >= 0).all()


# ---------------------------------------------------------------- what the second mutation run asked for
def test_error_messages_start_with_the_argument_name():
    "Each message starts with the argument's name (`name: ...`), in the functions and the modules."
    e, y = _emb(6, 4, 17), _labels(6, 2)
    const = e.clone()
    const[0] = 2.0
    cases = [
        (lambda: snr_distance(e[0]), "query"), (lambda: snr_distance(e[:, :1]), "query"),
        (lambda: snr_distance(e, e[0]), "ref"), (lambda: snr_distance(e, e.long()), "ref"),
        (lambda: snr_distance(e, _emb(3, 5, 1)), "query and ref must have the same embedding size D"),
        (lambda: snr_distance(e, e.float()), "query and ref must have the same dtype"),
        (lambda: snr_distance(const), "query"), (lambda: snr_distance(const, e), "query"),
        (lambda: snr_distance_paired(e[0], e), "a"), (lambda: snr_distance_paired(e, e[0]), "b"),
        (lambda: snr_distance_paired(e[:, :1], e[:, :1]), "a"),
        (lambda: snr_distance_paired(e, e[:, :3]), "a and b must have the same embedding size D"),
        (lambda: snr_distance_paired(e, e.float()), "a and b must have the same dtype"),
        (lambda: snr_distance_paired(e, e[:4]), "a and b must have the same shape"),
        (lambda: snr_distance_paired(const, e), "a"),
        (lambda: zero_mean_regularizer(e[0]), "embeddings"), (lambda: zero_mean_regularizer(e, "avg"), "reduction"),
        (lambda: snr_contrastive_loss(e[0], y), "embeddings"), (lambda: snr_triplet_loss(e.long(), y), "embeddings"),
        (lambda: snr_contrastive_loss(e, y[:5]), "labels"), (lambda: snr_triplet_loss(e, y.float()), "labels"),
        (lambda: snr_contrastive_loss(e, torch.arange(6)), "labels"),
        (lambda: snr_contrastive_loss(e, torch.zeros(6, dtype=torch.long)), "labels"),
        (lambda: snr_triplet_loss(e, torch.arange(6)), "labels"),
        (lambda: snr_contrastive_loss(e, y, reduction="avg"), "reduction"), (lambda: SNRContrastiveLoss(reduction="x"), "reduction"),
        (lambda: snr_triplet_loss(e, y, reduction="avg"), "reduction"), (lambda: SNRTripletLoss(reduction="x"), "reduction"),
        (lambda: snr_contrastive_loss(e, y, pos_margin=-0.1), "pos_margin"), (lambda: SNRContrastiveLoss(pos_margin=-1), "pos_margin"),
        (lambda: snr_contrastive_loss(e, y, neg_margin=0.0), "neg_margin"), (lambda: SNRContrastiveLoss(neg_margin=0.0), "neg_margin"),
        (lambda: snr_contrastive_loss(e, y, reg_weight=-1.0), "reg_weight"), (lambda: SNRContrastiveLoss(reg_weight=-1.0), "reg_weight"),
        (lambda: snr_triplet_loss(e, y, margin=-0.1), "margin"), (lambda: SNRTripletLoss(margin=-0.1), "margin"),
        (lambda: snr_triplet_loss(e, y, reg_weight=-1.0), "reg_weight"), (lambda: SNRTripletLoss(reg_weight=float("nan")), "reg_weight"),
        (lambda: snr_triplet_loss(e, y, mining="hard"), "mining"), (lambda: SNRTripletLoss(mining="hard"), "mining"),
    ]
    for call, name in cases:
        # a bare argument name must be followed by ':' (a shape check naming two arguments does not count)
        with pytest.raises(ValueError, match=rf"^{name}:" if name.isidentifier() else rf"^{name}(?:[:, ]|$)"):
            call()


def test_zero_margins_and_weights_are_legal():
    "pos_margin, reg_weight and the triplet margin may be 0 (>= 0); neg_margin must be > 0."
    e, y = _emb(8, 5, 20), _labels(8, 2)
    assert torch.isfinite(snr_contrastive_loss(e, y, pos_margin=0.0, reg_weight=0.0))
    assert torch.isfinite(snr_triplet_loss(e, y, margin=0.0, reg_weight=0.0))
    m = SNRContrastiveLoss(pos_margin=0.0, reg_weight=0.0)
    assert (m.pos_margin, m.reg_weight) == (0.0, 0.0)
    m = SNRTripletLoss(margin=0.0, reg_weight=0.0)
    assert (m.margin, m.reg_weight) == (0.0, 0.0)


def test_defaults_are_pinned():
    "Every default: the value with the defaults equals the value with the explicit defaults, and differs from another."
    e, y = _emb(12, 6, 21), _labels(12, 3)
    assert snr_contrastive_loss(e, y) == snr_contrastive_loss(e, y, 0.0, 1.0, 0.0, "avg_nonzero", False, None, 1e-12)
    for kw in (dict(pos_margin=0.5), dict(neg_margin=2.0), dict(reg_weight=0.1), dict(reduction="mean")):
        assert snr_contrastive_loss(e, y) != snr_contrastive_loss(e, y, **kw)
    assert snr_triplet_loss(e, y) == snr_triplet_loss(e, y, 0.2, 0.005, "all", "avg_nonzero", False, None, 1e-12)
    for kw in (dict(margin=0.3), dict(reg_weight=0.0), dict(mining="semihard"), dict(reduction="mean")):
        assert snr_triplet_loss(e, y) != snr_triplet_loss(e, y, **kw)
    assert torch.equal(zero_mean_regularizer(e), zero_mean_regularizer(e, "mean"))
    m = SNRContrastiveLoss()
    assert (m.pos_margin, m.neg_margin, m.reg_weight, m.reduction, m.gather_distributed, m.distance, m.eps) == \
        (0.0, 1.0, 0.0, "avg_nonzero", False, None, 1e-12)
    m = SNRTripletLoss()
    assert (m.margin, m.reg_weight, m.mining, m.reduction, m.gather_distributed, m.distance, m.eps) == \
        (0.2, 0.005, "all", "avg_nonzero", False, None, 1e-12)
    # eps: a row whose variance is 1e-14 of its mean square is constant for eps = 1e-12, not for eps = 1e-16
    q = 1 + 1e-7 * _emb(3, 6, 22)
    with pytest.raises(ValueError, match="constant"):
        snr_distance(q)
    with pytest.raises(ValueError, match="constant"):
        snr_distance_paired(q, q)
    assert torch.isfinite(snr_distance(q, eps=1e-16)).all() and torch.isfinite(snr_distance_paired(q, q, eps=1e-16)).all()
    e2 = e.clone()
    e2[0] = 1 + 1e-7 * _emb(1, 6, 23)
    for f in (snr_contrastive_loss, snr_triplet_loss, SNRContrastiveLoss(), SNRTripletLoss()):
        with pytest.raises(ValueError, match="constant"):
            f(e2, y)
    for f in (lambda e, y: snr_contrastive_loss(e, y, eps=1e-16), lambda e, y: snr_triplet_loss(e, y, eps=1e-16),
              SNRContrastiveLoss(eps=1e-16), SNRTripletLoss(eps=1e-16)):  # the modules pass their eps on
        assert torch.isfinite(f(e2, y))


def test_modules_pass_every_setting_through():
    e, y = _emb(12, 6, 24), _labels(12, 3)
    eucl = lambda q, r: torch.cdist(q, r) ** 2
    m = SNRContrastiveLoss(0.1, 1.5, 0.05, "none", False, eucl, 1e-10)
    torch.testing.assert_close(m(e, y), snr_contrastive_loss(e, y, 0.1, 1.5, 0.05, "none", False, eucl, 1e-10), rtol=0, atol=0)
    m = SNRTripletLoss(0.3, 0.01, "semihard", "sum", False, eucl, 1e-10)
    torch.testing.assert_close(m(e, y), snr_triplet_loss(e, y, 0.3, 0.01, "semihard", "sum", False, eucl, 1e-10), rtol=0, atol=0)
    assert repr(SNRTripletLoss(0.3, 0.01, "semihard", "sum")).endswith(
        "(margin=0.3, reg_weight=0.01, mining='semihard', reduction='sum')")


@pytest.mark.parametrize("loss", [snr_contrastive_loss, snr_triplet_loss])
@pytest.mark.parametrize("reduction", ["avg_nonzero", "mean", "sum", "none"])
def test_gathers_only_when_ddp_is_active(monkeypatch, loss, reduction):
    "Without DDP (or gather_distributed=False under DDP) nothing is gathered or summed over ranks; with it, exactly."
    import lossbook.metric.snr_distance as mod
    calls = []
    monkeypatch.setattr(mod, "gather", lambda t: calls.append("gather") or t)
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append("slice") or slice(0, n))
    e, y = _emb(8, 5, 26), _labels(8, 2)
    ref = loss(e, y, reduction=reduction)
    assert calls == []
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    torch.testing.assert_close(loss(e, y, reduction=reduction, gather_distributed=False), ref, rtol=0, atol=0)
    assert calls == []
    torch.testing.assert_close(loss(e, y, reduction=reduction, gather_distributed=True), ref, rtol=0, atol=0)
    assert sorted(calls) == ["gather", "gather", "slice"]


def test_triplet_uses_a_custom_distance():
    e, y = _emb(10, 5, 27), _labels(10, 2)
    sq = lambda q, r: torch.cdist(q, r) ** 2
    got = snr_triplet_loss(e, y, margin=0.5, reg_weight=0.0, reduction="sum", distance=sq)
    d = sq(e, e)
    want = sum((d[a, p] - d[a, n] + 0.5).clamp_min(0) for a in range(10) for p in range(10) for n in range(10)
               if a != p and y[a] == y[p] and y[a] != y[n])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert (got - snr_triplet_loss(e, y, margin=0.5, reg_weight=0.0, reduction="sum")).abs() > 1e-3


@pytest.mark.parametrize("loss", [snr_contrastive_loss, snr_triplet_loss])
def test_counts_are_summed_over_ranks_only_under_ddp(monkeypatch, loss):
    import lossbook.metric.snr_distance as mod
    seen = []
    real = mod.all_sum
    monkeypatch.setattr(mod, "all_sum", lambda x, active=True: seen.append(active) or real(x, active))
    e, y = _emb(8, 5, 28), _labels(8, 2)
    loss(e, y)
    loss(e, y, gather_distributed=True)  # no process group: DDP is not active
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    n_before = len(seen)
    loss(e, y, gather_distributed=True)
    assert seen[:n_before] == [False] * n_before and seen[n_before:] == [True] * (len(seen) - n_before) and len(seen) > n_before


@pytest.mark.parametrize("loss", [snr_contrastive_loss, snr_triplet_loss])
def test_fake_second_rank_gives_the_rows_of_the_whole_batch(monkeypatch, loss):
    "Rank 0 of two (faked: gather appends the other rank's rows): per-anchor losses are those of the whole batch."
    import lossbook.metric.snr_distance as mod
    e, y = _emb(12, 5, 29), _labels(12, 3)
    full = loss(e, y, reg_weight=0.1, reduction="none")
    mine = e[:5]
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    monkeypatch.setattr(mod, "gather", lambda t: torch.cat([t, (e if t.is_floating_point() else y)[5:]]))
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: slice(0, n))
    got = loss(mine, y[:5], reg_weight=0.1, reduction="none", gather_distributed=True)
    assert got.shape == (5,)
    torch.testing.assert_close(got, full[:5], rtol=1e-12, atol=1e-12)


def test_semihard_excludes_a_negative_exactly_as_far_as_the_positive():
    "Semi-hard mining keeps 0 < d_an - d_ap <= margin: a tie d_an = d_ap (which would add the whole margin) is excluded."
    d = torch.tensor([[0.0, 0.5, 0.5, 0.6],
                      [0.5, 0.0, 2.0, 2.0],
                      [2.0, 2.0, 0.0, 0.5],
                      [2.0, 2.0, 0.5, 0.0]], dtype=F64)
    e, y = _emb(4, 5, 30), torch.tensor([0, 0, 1, 1])
    got = snr_triplet_loss(e, y, margin=0.2, reg_weight=0.0, mining="semihard", reduction="sum", distance=lambda q, r: d)
    # the only semi-hard triplet is (0, 1, 3): d_ap - d_an + m = 0.5 - 0.6 + 0.2; (0, 1, 2) is a tie
    torch.testing.assert_close(got, torch.tensor(0.1, dtype=F64), rtol=1e-12, atol=1e-12)
    # one non-zero term: 'avg_nonzero' divides by 1
    got = snr_triplet_loss(e, y, margin=0.2, reg_weight=0.0, mining="semihard", distance=lambda q, r: d)
    torch.testing.assert_close(got, torch.tensor(0.1, dtype=F64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss", [snr_contrastive_loss, snr_triplet_loss])
def test_value_is_summed_over_ranks_only_under_ddp(monkeypatch, loss):
    import lossbook.metric.snr_distance as mod
    seen = []
    real = mod.sum_over_ranks
    monkeypatch.setattr(mod, "sum_over_ranks", lambda part, active=True: seen.append(active) or real(part, active))
    e, y = _emb(8, 5, 31), _labels(8, 2)
    loss(e, y)
    loss(e, y, reduction="sum", gather_distributed=True)  # no process group: DDP is not active
    assert seen == [False, False]
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    loss(e, y, reduction="mean", gather_distributed=True)
    assert seen == [False, False, True]


def test_negative_constant_rows_are_rejected_too():
    q = _emb(4, 6, 32)
    bad = q.clone()
    bad[1] = -2.5  # the threshold eps * sum(x^2) is positive for a negative row as well
    with pytest.raises(ValueError, match=r"^query: row\(s\) \[1\] are constant across their 6 entries"):
        snr_distance(bad)
    with pytest.raises(ValueError, match=r"^a: row\(s\) \[1\]"):
        snr_distance_paired(bad, q)


def test_constant_row_threshold_is_relative_to_each_row():
    q = _emb(4, 6, 33)
    q[3] *= 1e-20  # a genuine but tiny row among unit-scale rows is accepted (its own power is the scale)
    assert torch.isfinite(snr_distance(q)).all()
    assert torch.isfinite(snr_distance_paired(q, _emb(4, 6, 34))).all()


def test_constant_rows_message_lists_at_most_five():
    q = _emb(8, 4, 35)
    q[:7] = 1.5
    with pytest.raises(ValueError, match=r"^query: row\(s\) \[0, 1, 2, 3, 4\] \.\.\. are constant across their 4 entries"):
        snr_distance(q)


@pytest.mark.parametrize("n_const,tail", [(5, r"\] are"), (6, r"\] \.\.\. are")])
def test_constant_rows_ellipsis_only_beyond_five(n_const, tail):
    q = _emb(8, 4, 36)
    q[:n_const] = 1.5
    with pytest.raises(ValueError, match=r"^query: row\(s\) \[0, 1, 2, 3, 4" + tail):
        snr_distance(q)


def test_constant_row_message_in_full():
    q = _emb(3, 4, 37)
    q[2] = 0.5
    with pytest.raises(ValueError, match=r"^query: row\(s\) \[2\] are constant across their 4 entries \(variance <= "
                                         r"eps=1e-12 x mean square\); the SNR distance divides by the anchor's variance "
                                         r"\(Eq\. 3\) and is undefined for a constant anchor$"):
        snr_distance(q)


def test_two_entries_suffice_and_half_inputs_upcast():
    q, r = _emb(4, 2, 38), _emb(3, 2, 39)  # D = 2: the smallest legal embedding size
    assert torch.isfinite(snr_distance(q, r)).all() and torch.isfinite(snr_distance_paired(q, _emb(4, 2, 40))).all()
    qb, rb = _emb(4, 5, 41).bfloat16(), _emb(3, 5, 42).bfloat16()
    got = snr_distance(qb, rb)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, snr_distance(qb.float(), rb.float()), rtol=0, atol=0)
