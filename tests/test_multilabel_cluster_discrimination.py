"""Tests for lossbook.ssl.multilabel_cluster_discrimination (An et al. 2024, MLCD).

No maintained PyTorch package ships this loss (the ZLPR form exists in bert4keras and its ports), so the references
are float64 loops transcribed from the equations (tests/references.py, also used by the shared battery), the card's
identities and properties: the pairwise form, the gradient formulas, one positive with all logits 0, permutation
invariance over classes, the 0-threshold decision rule, stability at logits of +-1e4, sampling that keeps every positive
and equals the full loss at r = 1, and BCE / cross-entropy as the baselines' references. The loss is not batch-coupled.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from references import mlcd_ref, multilabel_softmax_ref

from lossbook.ssl.multilabel_cluster_discrimination import (MLCDHead, MLCDLoss, MultiLabelSoftmaxLoss,
                                                            _multilabel_example, assign_multilabels,
                                                            bce_multilabel_loss, mlcd_loss, multilabel_softmax_loss,
                                                            positive_mask, sample_classes)


def _inputs(b=6, k=9, seed=0, dtype=torch.float64, scale=3.0, max_pos=4):
    g = torch.Generator().manual_seed(seed)
    s = scale * torch.randn(b, k, generator=g, dtype=torch.float64)
    n_pos = torch.randint(1, max_pos + 1, (b, 1), generator=g)
    rank = torch.rand(b, k, generator=g, dtype=torch.float64).argsort(1).argsort(1)
    return s.to(dtype).requires_grad_(), rank < n_pos


def _loop(s, P, N=None):
    "Eq. 2 row by row with torch scalars (differentiable), naive log(1 + sum exp)."
    N = ~P if N is None else N
    rows = []
    for i in range(s.shape[0]):
        neg = sum((s[i, j].exp() for j in range(s.shape[1]) if N[i, j]), torch.zeros((), dtype=s.dtype))
        pos = sum(((-s[i, j]).exp() for j in range(s.shape[1]) if P[i, j]), torch.zeros((), dtype=s.dtype))
        rows.append(torch.log(1 + neg) + torch.log(1 + pos))
    return torch.stack(rows)


# --- references ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b,k,seed", [(1, 2, 0), (5, 7, 1), (8, 20, 2), (3, 50, 3)])
def test_mlcd_equals_loops_values_and_gradients(b, k, seed):
    s, P = _inputs(b, k, seed)
    ours = mlcd_loss(s, P, reduction="none")
    ref = _loop(s, P)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.mean(), mlcd_ref(s, P).double(), rtol=1e-12, atol=1e-12)
    g1, = torch.autograd.grad(ours.sum(), s, retain_graph=True)
    g2, = torch.autograd.grad(ref.sum(), s)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("b,k,seed", [(1, 2, 0), (5, 7, 1), (8, 20, 2)])
def test_multilabel_softmax_equals_loop(b, k, seed):
    s, P = _inputs(b, k, seed)
    torch.testing.assert_close(multilabel_softmax_loss(s, P), multilabel_softmax_ref(s, P).double(), rtol=1e-12,
                               atol=1e-12)
    # by hand: -(1/|P|) sum_p log softmax_p
    logp = s.detach().log_softmax(1)
    hand = torch.stack([-logp[i][P[i]].mean() for i in range(b)])
    torch.testing.assert_close(multilabel_softmax_loss(s, P, reduction="none"), hand, rtol=1e-12, atol=1e-12)


def test_explicit_negative_mask():
    s, P = _inputs(5, 9, 4)
    g = torch.Generator().manual_seed(9)
    N = (torch.rand(5, 9, generator=g) < 0.5) & ~P
    torch.testing.assert_close(mlcd_loss(s, P, N, reduction="none"), _loop(s, P, N), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(mlcd_loss(s, P, N), mlcd_loss(s, P))  # neg_mask is used
    torch.testing.assert_close(mlcd_loss(s, P, ~P), mlcd_loss(s, P))  # the default is ~pos_mask


# --- the card's properties -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairwise_identity(seed):
    s, P = _inputs(6, 11, seed)
    s = s.detach()
    for i in range(6):
        p, n = s[i][P[i]], s[i][~P[i]]
        naive = torch.log(1 + n.exp().sum() + (-p).exp().sum() + (n[None, :] - p[:, None]).exp().sum())
        torch.testing.assert_close(mlcd_loss(s[i:i + 1], P[i:i + 1]), naive, rtol=1e-12, atol=1e-12)


def test_gradient_formulas():
    s, P = _inputs(6, 10, 5)
    mlcd_loss(s, P, reduction="sum").backward()
    en = torch.where(~P, s.detach().exp(), torch.zeros(()).double())
    ep = torch.where(P, (-s.detach()).exp(), torch.zeros(()).double())
    torch.testing.assert_close(s.grad, en / (1 + en.sum(1, keepdim=True)) - ep / (1 + ep.sum(1, keepdim=True)),
                               rtol=1e-12, atol=1e-12)
    assert (s.grad[~P] > 0).all() and (s.grad[P] < 0).all()


def test_multilabel_softmax_gradient_pushes_a_leading_positive_down():
    s = torch.tensor([[4.0, 1.0, -2.0, -2.0]], dtype=torch.float64, requires_grad=True)
    P = torch.tensor([[True, True, False, False]])
    multilabel_softmax_loss(s, P).backward()
    torch.testing.assert_close(s.grad, s.detach().softmax(1) - P.double() / 2)
    assert s.grad[0, 0] > 0
    s2 = s.detach().clone().requires_grad_()
    mlcd_loss(s2, P).backward()
    assert s2.grad[0, 0] < 0  # MLCD always pushes a positive up


@pytest.mark.parametrize("k", [2, 5, 30])
def test_one_positive_all_zeros(k):
    P = torch.zeros(1, k, dtype=torch.bool)
    P[0, 0] = True
    torch.testing.assert_close(mlcd_loss(torch.zeros(1, k, dtype=torch.float64), P),
                               torch.tensor(math.log(1 + (k - 1)) + math.log(2), dtype=torch.float64))
    torch.testing.assert_close(multilabel_softmax_loss(torch.zeros(1, k, dtype=torch.float64), P),
                               torch.tensor(math.log(k), dtype=torch.float64))


def test_no_positive_row_gives_only_the_negative_term():
    s = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    P = torch.zeros(1, 3, dtype=torch.bool)
    torch.testing.assert_close(mlcd_loss(s, P), torch.log(1 + s.exp().sum()))
    with pytest.raises(ValueError, match="^pos_mask"):
        multilabel_softmax_loss(s, P)


def test_permutation_invariance_over_classes():
    s, P = _inputs(5, 12, 6)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    for fn in (mlcd_loss, multilabel_softmax_loss, bce_multilabel_loss):
        torch.testing.assert_close(fn(s[:, perm], P[:, perm], reduction="none"), fn(s, P, reduction="none"))


def test_nonnegative_and_vanishing_at_separation_with_the_zero_threshold():
    s, P = _inputs(8, 10, 7)
    assert (mlcd_loss(s, P, reduction="none") >= 0).all()
    sep = torch.where(P, 40.0, -40.0).double()
    assert mlcd_loss(sep, P) < 1e-15
    assert ((sep > 0) == P).all()
    # shifting every logit by the same constant changes MLCD (absolute threshold) but not the softmax (relative)
    assert not torch.allclose(mlcd_loss(s + 2.0, P), mlcd_loss(s, P))
    torch.testing.assert_close(multilabel_softmax_loss(s + 2.0, P), multilabel_softmax_loss(s, P))
    # a loss below log 2 implies the decision rule {s_j > 0} = Omega_p (a positive <= 0 alone costs log 2)
    g = torch.Generator().manual_seed(0)
    x = torch.where(P, 3.0, -3.0).double() + 2.5 * torch.randn(8, 10, generator=g, dtype=torch.float64)
    low = mlcd_loss(x, P, reduction="none") < math.log(2)
    assert low.any() and (~low).any()
    assert ((x > 0) == P).all(1)[low].all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fn", [mlcd_loss, multilabel_softmax_loss, bce_multilabel_loss])
def test_stable_at_large_logits(dtype, fn):
    s = torch.tensor([[1e4, -1e4, 3.0, 1e4], [-1e4, 1e4, 0.0, -1e4]], dtype=dtype, requires_grad=True)
    P = torch.tensor([[True, False, False, False], [True, True, False, False]])
    v = fn(s, P)
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(s.grad).all()
    if fn is mlcd_loss:  # row 0: negatives 1e4 and 3 -> log(1 + e^1e4 + e^3) = 1e4; row 1: positive -1e4 -> 1e4
        # row 0: negatives {-1e4, 3, 1e4} -> 1e4, positive 1e4 -> 0; row 1: negatives {0, -1e4} -> log 2, positives -> 1e4
        torch.testing.assert_close(v.double(), torch.tensor(1e4 + math.log(2) / 2, dtype=torch.float64),
                                   rtol=1e-7, atol=1e-3)


def test_bce_matches_pytorch():
    s, P = _inputs(6, 9, 8)
    torch.testing.assert_close(bce_multilabel_loss(s, P), F.binary_cross_entropy_with_logits(s, P.double()))
    torch.testing.assert_close(bce_multilabel_loss(s, P, reduction="none"),
                               F.binary_cross_entropy_with_logits(s, P.double(), reduction="none").mean(1))
    assert not torch.allclose(bce_multilabel_loss(s, P), mlcd_loss(s, P))
    ml = torch.nn.MultiLabelSoftMarginLoss()(s, P.double())  # the same as BCE averaged over classes
    torch.testing.assert_close(bce_multilabel_loss(s, P), ml)


def test_single_positive_softmax_is_cross_entropy():
    s, _ = _inputs(7, 10, 9)
    y = torch.randint(10, (7,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(multilabel_softmax_loss(s, F.one_hot(y, 10).bool()), F.cross_entropy(s, y))


def test_gradcheck():
    s, P = _inputs(4, 6, 10)
    assert torch.autograd.gradcheck(lambda x: mlcd_loss(x, P, reduction="none"), (s,))
    assert torch.autograd.gradcheck(lambda x: multilabel_softmax_loss(x, P, reduction="none"), (s,))
    assert torch.autograd.gradcheck(lambda x: bce_multilabel_loss(x, P, reduction="none"), (s,))


# --- reductions, modules, dtypes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn,module", [(mlcd_loss, MLCDLoss), (multilabel_softmax_loss, MultiLabelSoftmaxLoss),
                                       (bce_multilabel_loss, None)])
def test_reductions_modules_and_dtypes(fn, module):
    s, P = _inputs(6, 9, 11)
    none = fn(s, P, reduction="none")
    assert none.shape == (6,)
    torch.testing.assert_close(fn(s, P), none.mean())  # the default reduction is 'mean'
    torch.testing.assert_close(fn(s, P, reduction="sum"), none.sum())
    v32 = fn(s.float(), P)
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), fn(s, P), rtol=1e-5, atol=1e-6)
    if module is not None:
        torch.testing.assert_close(module()(s, P), fn(s, P), rtol=0, atol=0)
        torch.testing.assert_close(module(reduction="none")(s, P), none, rtol=0, atol=0)
        torch.testing.assert_close(module("sum")(s, P), fn(s, P, reduction="sum"), rtol=0, atol=0)
        assert module().reduction == "mean"
        with pytest.raises(ValueError, match="^reduction"):
            module(reduction="avg")


def test_module_passes_neg_mask():
    s, P = _inputs(5, 9, 12)
    N = torch.zeros_like(P)
    N[:, :2] = True
    N &= ~P
    torch.testing.assert_close(MLCDLoss()(s, P, N), mlcd_loss(s, P, N))


def test_bf16_inputs_are_computed_in_float32():
    s, P = _inputs(4, 8, 13)
    for fn in (mlcd_loss, multilabel_softmax_loss, bce_multilabel_loss):
        v = fn(s.detach().bfloat16(), P)
        assert v.dtype == torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            va = fn(s.detach().float(), P)
        torch.testing.assert_close(va, fn(s.detach().float(), P))


# --- bad inputs ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [mlcd_loss, multilabel_softmax_loss, bce_multilabel_loss])
def test_bad_inputs_raise(fn):
    s, P = _inputs(5, 7, 14)
    s = s.detach()
    cases = [
        (lambda: fn(s[:0], P[:0]), "logits"),  # empty batch
        (lambda: fn(s[:, :-1], P), "logits and pos_mask"),  # shape mismatch
        (lambda: fn(s[:-1], P), "logits and pos_mask"),
        (lambda: fn(s, P.double()), "pos_mask: expected a boolean"),
        (lambda: fn(s, P.long()), "pos_mask: expected a boolean"),
        (lambda: fn(s.long(), P), "logits: expected a floating"),
        (lambda: fn(s[0], P[0]), "logits: expected 2 dimensions"),
        (lambda: fn(s.masked_fill(P, float("nan")), P), "logits: expected finite"),
        (lambda: fn(s.masked_fill(P, float("inf")), P), "logits: expected finite"),
        (lambda: fn(s, P, reduction="avg"), "reduction"),
    ]
    for call, msg in cases:
        with pytest.raises(ValueError, match="^" + msg):
            call()
    with pytest.raises(TypeError, match="^pos_mask"):
        fn(s, P.tolist())
    with pytest.raises(TypeError, match="^logits"):
        fn(s.tolist(), P)


def test_neg_mask_bad_inputs():
    s, P = _inputs(5, 7, 15)
    with pytest.raises(ValueError, match=r"^neg_mask: \d+ class\(es\) are marked both positive \(pos_mask\) and negative; the two sets must be disjoint$"):
        mlcd_loss(s, P, P)
    with pytest.raises(ValueError, match="^neg_mask: expected a boolean"):
        mlcd_loss(s, P, (~P).double())
    with pytest.raises(ValueError, match="^logits and neg_mask"):
        mlcd_loss(s, P, (~P)[:, :-1])
    with pytest.raises(TypeError, match="^neg_mask"):
        mlcd_loss(s, P, [[True]])


def test_error_message_counts_overlap_and_names_rows():
    s, P = _inputs(5, 7, 16)
    with pytest.raises(ValueError, match=f"^neg_mask: {int(P.sum())} class"):
        mlcd_loss(s, P, P)
    Z = P.clone()
    Z[2] = False
    Z[4] = False
    with pytest.raises(ValueError, match=r"^pos_mask: every row needs at least one positive class; rows \[2, 4\] have none"):
        multilabel_softmax_loss(s, Z)


# --- the pseudo-labels, masks, sampling and the head -----------------------------------------------------------------
def test_assign_multilabels_by_hand_and_by_brute_force():
    cen = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
    out = assign_multilabels(torch.tensor([[1.0, 0.2], [0.1, 1.0], [-2.0, 0.1]]), cen, 2)
    assert out.dtype == torch.int64
    torch.testing.assert_close(out, torch.tensor([[0, 3], [1, 3], [2, 1]]))
    g = torch.Generator().manual_seed(0)
    emb, c = torch.randn(50, 6, generator=g, dtype=torch.float64), torch.randn(9, 6, generator=g, dtype=torch.float64)
    for l in (1, 3, 9):
        for chunk in (1, 7, 4096):
            got = assign_multilabels(emb, c, l, chunk=chunk)
            cos = torch.stack([torch.stack([(e @ ci) / (e.norm() * ci.norm()) for ci in c]) for e in emb])
            want = cos.argsort(1, descending=True)[:, :l]
            torch.testing.assert_close(got, want)
    # cosine, not Euclidean: a far centre in the right direction beats a near one in a wrong direction
    torch.testing.assert_close(assign_multilabels(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5], [10.0, 0.1]]), 1),
                               torch.tensor([[1]]))


def test_assign_multilabels_default_chunk_and_bad_inputs():
    import inspect
    assert inspect.signature(assign_multilabels).parameters["chunk"].default == 4096
    e, c = torch.randn(4, 3), torch.randn(5, 3)
    for bad, msg in [((e, c, 0), "l: expected"), ((e, c, 6), "l: expected"), ((e, c, 2.0), "l: expected"),
                     ((e, c, True), "l: expected"), ((e, c[:, :2], 2), "emb and centers"),
                     ((e.long(), c, 2), "emb: expected a floating"), ((e, c.long(), 2), "centers: expected a floating"),
                     ((e[:0], c, 2), "emb"), ((e[0], c, 2), "emb: expected 2")]:
        with pytest.raises(ValueError, match="^" + msg):
            assign_multilabels(*bad)
    with pytest.raises(ValueError, match="^chunk"):
        assign_multilabels(e, c, 2, chunk=0)


def test_positive_mask():
    m = positive_mask(torch.tensor([[0, 2], [3, 3]]), 4)
    torch.testing.assert_close(m, torch.tensor([[True, False, True, False], [False, False, False, True]]))
    with pytest.raises(ValueError, match="^pos_idx: class indices"):
        positive_mask(torch.tensor([[0, 4]]), 4)
    with pytest.raises(ValueError, match="^pos_idx: class indices"):
        positive_mask(torch.tensor([[-1, 0]]), 4)
    with pytest.raises(ValueError, match="^pos_idx: expected an integer"):
        positive_mask(torch.tensor([[0.0, 1.0]]), 4)


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5, 0.99])
def test_sampling_keeps_every_positive_and_the_rate(rate):
    pidx = torch.tensor([[1, 7], [7, 30], [2, 2]])
    cls = sample_classes(pidx, 40, rate, torch.Generator().manual_seed(0))
    assert {1, 2, 7, 30} <= set(cls.tolist())
    assert len(cls) == max(4, math.ceil(rate * 40)) and len(set(cls.tolist())) == len(cls)
    assert (cls[1:] > cls[:-1]).all()
    torch.testing.assert_close(sample_classes(pidx, 40, 1.0), torch.arange(40))
    a = sample_classes(pidx, 40, rate, torch.Generator().manual_seed(3))
    b = sample_classes(pidx, 40, rate, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_sampling_bad_rate():
    for r in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="^neg_sample_rate"):
            sample_classes(torch.tensor([[0]]), 5, r)


def _head_pair(**kw):
    torch.manual_seed(0)
    h = MLCDHead(6, 25, **kw)
    return h


def test_head_defaults():
    h = MLCDHead(6, 25)
    assert (h.scale, h.margin, h.neg_sample_rate, h.reduction, h.num_classes) == (32.0, 0.0, 1.0, "mean", 25)
    assert h.weight.shape == (25, 6)
    assert "scale=32.0" in repr(h) and "neg_sample_rate=1.0" in repr(h)


def test_head_full_loss_margin_and_sampling():
    g = torch.Generator().manual_seed(1)
    h = MLCDHead(6, 25, scale=10.0)
    f = torch.randn(7, 6, generator=g, dtype=torch.float64)
    h = h.double()
    pidx = torch.randint(25, (7, 3), generator=g)
    cos = F.normalize(f, dim=1) @ F.normalize(h.weight, dim=1).T
    P = positive_mask(pidx, 25)
    torch.testing.assert_close(h.cosine(f), cos)
    torch.testing.assert_close(h.logits(f), 10.0 * cos)
    torch.testing.assert_close(h(f, pidx), mlcd_loss(10.0 * cos, P))
    # margin: the positives' logits are s (cos - m), negatives unchanged
    hm = MLCDHead(6, 25, scale=10.0, margin=0.3).double()
    hm.load_state_dict(h.state_dict())
    torch.testing.assert_close(hm(f, pidx), mlcd_loss(10.0 * (cos - 0.3 * P.double()), P))
    # sampling: the loss on one class set shared by the batch
    hs = MLCDHead(6, 25, scale=10.0, neg_sample_rate=0.3, reduction="none").double()
    hs.load_state_dict(h.state_dict())
    cls = sample_classes(pidx, 25, 0.3, torch.Generator().manual_seed(5))
    got = hs(f, pidx, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, mlcd_loss(10.0 * cos[:, cls], P[:, cls], reduction="none"))
    assert got.shape == (7,)
    # gradients reach the features and the prototypes
    f2 = f.clone().requires_grad_()
    h(f2, pidx).backward()
    assert torch.isfinite(f2.grad).all() and h.weight.grad.abs().sum() > 0


def test_head_bad_inputs():
    for kw, msg in [(dict(scale=0.0), "scale"), (dict(margin=-0.1), "margin"), (dict(neg_sample_rate=0.0), "neg_sample_rate"),
                    (dict(neg_sample_rate=1.2), "neg_sample_rate"), (dict(reduction="avg"), "reduction")]:
        with pytest.raises(ValueError, match="^" + msg):
            MLCDHead(4, 10, **kw)
    for args, msg in [((0, 10), "dim"), ((4, 1), "num_classes"), ((4.0, 10), "dim"), ((4, True), "num_classes")]:
        with pytest.raises(ValueError, match="^" + msg):
            MLCDHead(*args)
    MLCDHead(4, 2, margin=0.0)  # the smallest valid head
    h = MLCDHead(4, 10)
    f = torch.randn(3, 4)
    with pytest.raises(ValueError, match="^feat: expected 4 features"):
        h(torch.randn(3, 5), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="^pos_idx: expected 3 rows"):
        h(f, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="^pos_idx: expected an integer"):
        h(f, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="^pos_idx: class indices"):
        h(f, torch.full((3, 1), 10))
    with pytest.raises(ValueError, match="^feat: expected finite"):
        h(torch.full((3, 4), float("nan")), torch.zeros(3, 1, dtype=torch.long))


# --- the registry example ------------------------------------------------------------------------------------------------
def test_example_contract():
    (s, P), kw = _multilabel_example(7, torch.float32, "cpu", 0)
    assert kw == {} and s.shape == (7, 20) and s.dtype == torch.float32 and P.dtype == torch.bool
    n = P.sum(1)
    assert ((n >= 1) & (n <= 4)).all()
    (s64, P64), _ = _multilabel_example(7, torch.float64, "cpu", 0)
    torch.testing.assert_close(s64.float(), s)
    assert torch.equal(P64, P)


# --- closing the gaps found by mutation testing (issue #7) -----------------------------------------------------------
def test_head_samples_the_negatives_with_the_generator():
    torch.manual_seed(0)
    h = MLCDHead(6, 25, scale=10.0, neg_sample_rate=0.3, reduction="none").double()
    f = torch.randn(4, 6, dtype=torch.float64)
    pidx = torch.tensor([[0], [3], [3], [7]])  # 3 positive classes: 5 of the 8 kept classes are random negatives
    cls = sample_classes(pidx, 25, 0.3, torch.Generator().manual_seed(11))
    assert len(cls) == 8
    cos = F.normalize(f, dim=1) @ F.normalize(h.weight, dim=1).T
    P = positive_mask(pidx, 25)
    got = h(f, pidx, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(got, mlcd_loss(10.0 * cos[:, cls], P[:, cls], reduction="none"))


def test_head_checks_feat_and_reports_row_counts():
    h = MLCDHead(4, 10)
    for bad in (torch.randn(4), torch.ones(3, 4, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"^feat:"):
            h.cosine(bad)
    with pytest.raises(ValueError, match=r"^pos_idx: expected 3 rows to match feat, got 2$"):
        h(torch.randn(3, 4), torch.zeros(2, 5, dtype=torch.long))


def test_positive_mask_checks_and_message():
    with pytest.raises(ValueError, match=r"^pos_idx:"):
        positive_mask(torch.zeros(3, dtype=torch.long), 5)
    with pytest.raises(ValueError, match=r"^pos_idx: class indices must lie in \[0, 9\], got values from 0 to 10$"):
        positive_mask(torch.tensor([[0], [10]]), 10)


def test_head_smallest_dim_and_prototype_scale():
    h = MLCDHead(1, 2)  # d = 1 is legal
    assert h.weight.shape == (2, 1)
    torch.manual_seed(0)
    w = MLCDHead(8, 50).weight.detach()
    assert 0.005 < float(w.std()) < 0.02  # prototypes drawn as 0.01 * N(0, 1)


def test_assign_multilabels_more_checks():
    e, c = torch.randn(4, 3), torch.randn(5, 3)
    for bad, pat in [((e, c[0], 2), r"^centers:"), ((e, c[:, :, None], 2), r"^centers:"),
                     ((e, c, 6), r"^l: expected an int in \[1, 5\] \(the number of centres\), got 6$")]:
        with pytest.raises(ValueError, match=pat):
            assign_multilabels(*bad)
    for chunk in (True, 2.5):
        with pytest.raises(ValueError, match=r"^chunk:"):
            assign_multilabels(e, c, 2, chunk=chunk)


def test_bce_half_precision_logits_are_computed_in_float32():
    s = torch.randn(4, 6, generator=torch.Generator().manual_seed(2)).bfloat16()
    P = torch.rand(4, 6, generator=torch.Generator().manual_seed(3)) > 0.5
    got = bce_multilabel_loss(s, P, reduction="none")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, bce_multilabel_loss(s.float(), P, reduction="none"), rtol=0, atol=0)


def test_mask_type_and_missing_positive_messages():
    s = torch.randn(7, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^pos_mask: expected a boolean torch.Tensor, got list$"):
        mlcd_loss(s, [[True] * 4] * 7)
    with pytest.raises(ValueError, match=r"have none$") as err:
        multilabel_softmax_loss(s, torch.zeros(7, 4, dtype=torch.bool))
    assert "rows [0, 1, 2, 3, 4] have none" in str(err.value)  # at most five rows listed
