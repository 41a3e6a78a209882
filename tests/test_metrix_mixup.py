"""Tests for lossbook.metric.metrix_mixup (Venkataramanan et al. 2022, Metrix: mixup for deep metric learning).

References: pytorch-metric-learning 2.9.0's `ContrastiveLoss(pos_margin=0, neg_margin=0.5, distance=LpDistance())` and
`get_all_pairs_indices` for the clean part (values, gradients, pair indices); plain float64 loops transcribed from the
notebook's Eqs. (5)-(8) and the official `mixup/utils.py` / `mixup/losses.py` for the mixed part; scikit-learn's
`NearestNeighbors` for utilization.
"""

import numpy as np
import pytest
import torch
from references import metrix_contrastive_ref, metrix_embed_ref

from lossbook.metric.metrix_mixup import (
    MetrixContrastiveLoss,
    MetrixEmbedLoss,
    MetrixLoss,
    lp_distance,
    lp_distance_paired,
    metrix_contrastive_loss,
    metrix_embed_loss,
    metrix_pairs,
    mixup_lambda,
    utilization,
)
from lossbook.metric.snr_distance import snr_contrastive_loss

pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning.distances import LpDistance  # noqa: E402
from pytorch_metric_learning.losses import ContrastiveLoss  # noqa: E402
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
LABELS = [
    torch.tensor([0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 5, 6]),  # anchors with and without positives
    torch.tensor([0, 1, 0, 2, 1, 3, 4, 2]),  # unsorted
    torch.tensor([0, 0, 0, 1, 1, 1]),  # every anchor has positives
]


def _emb(n, d=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)


# ------------------------------------------------------------------ the clean part: pytorch-metric-learning
@pytest.mark.parametrize("labels", LABELS)
def test_clean_part_equals_pml_contrastive_values_and_grads(labels):
    E = _emb(len(labels))
    e1, e2 = E.clone().requires_grad_(), E.clone().requires_grad_()
    ref = ContrastiveLoss(pos_margin=0, neg_margin=0.5, distance=LpDistance())(e1, labels)
    got = metrix_embed_loss(e2, labels, weight=0.0)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
    ref.backward()
    got.backward()
    torch.testing.assert_close(e2.grad, e1.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("labels", LABELS)
def test_pair_indices_equal_pml(labels):
    from lossbook.metric.metrix_mixup import _pair_masks
    a1, p, a2, n = lmu.get_all_pairs_indices(labels)
    pos, neg = _pair_masks(labels, labels)
    torch.testing.assert_close(torch.stack(pos.nonzero(as_tuple=True)), torch.stack([a1, p]))
    torch.testing.assert_close(torch.stack(neg.nonzero(as_tuple=True)), torch.stack([a2, n]))


def test_lp_distance_equals_pml():
    A, B = _emb(5, seed=1), _emb(4, seed=2)
    torch.testing.assert_close(lp_distance(A, B), LpDistance()(A, B), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lp_distance(A), LpDistance()(A), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lp_distance_paired(A[:4], B), lp_distance(A[:4], B).diagonal(), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ pairs
def _official_triples(labels, scheme):
    "The triples of Eqs. (5)/(6) by loops over PML's pair indices (every positive pair, every negative)."
    a1, p, a2, n = [t.tolist() for t in lmu.get_all_pairs_indices(labels)]
    if scheme == "pos_neg":
        return [(a, pp, nn) for a, pp in zip(a1, p) for aa, nn in zip(a2, n) if aa == a]
    has_pos = set(a1)
    return [(a, a, nn) for a, nn in zip(a2, n) if a not in has_pos]


@pytest.mark.parametrize("labels", LABELS)
@pytest.mark.parametrize("scheme", ["pos_neg", "anchor_neg"])
def test_pairs_match_loops(labels, scheme):
    a, x1, x2 = metrix_pairs(labels, scheme)
    assert list(zip(a.tolist(), x1.tolist(), x2.tolist())) == _official_triples(labels, scheme)


def test_default_scheme_is_pos_neg_and_schemes_split_anchors():
    y = LABELS[0]
    torch.testing.assert_close(torch.stack(metrix_pairs(y)), torch.stack(metrix_pairs(y, "pos_neg")))
    a1 = set(metrix_pairs(y, "pos_neg")[0].tolist())
    a2 = set(metrix_pairs(y, "anchor_neg")[0].tolist())
    assert a1 == {0, 1, 2, 3, 5, 6, 8, 9, 10} and a2 == {4, 7, 11}
    assert not metrix_pairs(LABELS[2], "anchor_neg")[0].numel()


def test_hardest_negative_is_nearest():
    y = LABELS[0]
    E = _emb(len(y), seed=3)
    D = lp_distance(E)
    for scheme in ("pos_neg", "anchor_neg"):
        a, x1, x2 = metrix_pairs(y, scheme, hardest_k=1, dist=D)
        for i, n in zip(a.tolist(), x2.tolist()):
            negs = [k for k in range(len(y)) if y[k] != y[i]]
            assert n == min(negs, key=lambda k: float(D[i, k]))
        full = metrix_pairs(y, scheme)
        assert len(a) == len(set(zip(full[0].tolist(), full[1].tolist())))  # one per (a, x1)
    a, x1, x2 = metrix_pairs(y, "pos_neg", hardest_k=2, dist=D)
    assert len(a) == 2 * len(set(zip(a.tolist(), x1.tolist())))
    a, _, _ = metrix_pairs(y, "pos_neg", hardest_k=100, dist=D)  # more than the negatives: all of them
    assert len(a) == len(metrix_pairs(y, "pos_neg")[0])


def test_positives_default_all_and_first_is_official_embed_set():
    y = LABELS[0]
    assert len(metrix_pairs(y)[0]) == len(metrix_pairs(y, positives="all")[0])
    a, x1, x2 = metrix_pairs(y, positives="first")
    a1, p, _, _ = [t.tolist() for t in lmu.get_all_pairs_indices(y)]
    first = {}
    for i, j in zip(a1, p):
        first.setdefault(i, j)  # official: pos[torch.where(anchor == a1)[0]][0]
    assert {(i, j) for i, j in zip(a.tolist(), x1.tolist())} == set(first.items())


@pytest.mark.parametrize("call, match", [
    (lambda: metrix_pairs(torch.tensor([0, 1]), "pos"), r"^scheme:"),
    (lambda: metrix_pairs(torch.tensor([0, 1]), positives="some"), r"^positives:"),
    (lambda: metrix_pairs(torch.tensor([0, 1]), hardest_k=0, dist=torch.zeros(2, 2)), r"^hardest_k:"),
    (lambda: metrix_pairs(torch.tensor([0, 1]), hardest_k=1), r"^dist:"),
    (lambda: metrix_pairs(torch.tensor([0, 1]), hardest_k=1, dist=torch.zeros(3, 3)), r"^dist:"),
    (lambda: metrix_pairs(torch.tensor([0, 1]), hardest_k=1, dist=torch.full((2, 2), float("nan"))), r"^dist:"),
    (lambda: metrix_pairs(torch.tensor([0.0, 1.0])), r"^labels:"),
    (lambda: metrix_pairs(torch.tensor([0])), r"^labels:"),
    (lambda: metrix_pairs(torch.tensor([], dtype=torch.long)), r"^labels:"),
])
def test_pairs_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------ the mixed term, Eq. (7)
def test_mixed_term_matches_loop_and_defaults():
    A, U = _emb(9, seed=4), _emb(9, seed=5) * 0.3 + _emb(9, seed=4)
    for lam in (0.0, 0.2, 0.5, 1.0):
        torch.testing.assert_close(metrix_contrastive_loss(A, U, lam), metrix_contrastive_ref(A, U, lam),
                                   rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(metrix_contrastive_loss(A, U, 0.3, 0.2, 0.9), metrix_contrastive_ref(A, U, 0.3, 0.2, 0.9),
                               rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(metrix_contrastive_loss(A, U, 0.3), metrix_contrastive_loss(A, U, 0.3, 0.0, 0.5))
    torch.testing.assert_close(MetrixContrastiveLoss()(A, U, 0.3), metrix_contrastive_loss(A, U, 0.3), rtol=0, atol=0)
    torch.testing.assert_close(MetrixContrastiveLoss(0.1, 0.8)(A, U, 0.3), metrix_contrastive_loss(A, U, 0.3, 0.1, 0.8))


def test_mixed_term_limits_equal_clean_terms():
    "lambda = 1 with u = p is the clean positive term; lambda = 0 with u = n is the clean negative term (card oracle a)."
    A, P, N = _emb(6, seed=6), _emb(6, seed=7), _emb(6, seed=8) * 0.2 + _emb(6, seed=6)
    d_p, d_n = lp_distance_paired(A, P), lp_distance_paired(A, N)
    torch.testing.assert_close(metrix_contrastive_loss(A, P, 1.0), d_p.sum() / (d_p > 0).sum())
    t = (0.5 - d_n).clamp_min(0)
    assert (t > 0).any()
    torch.testing.assert_close(metrix_contrastive_loss(A, N, 0.0), t.sum() / (t > 0).sum())


def test_mixed_term_linear_in_lambda_for_fixed_distance():
    from lossbook.metric.metrix_mixup import _mixed_terms
    d = torch.rand(11, dtype=torch.float64)
    f = lambda lam: sum(t.sum() for t in _mixed_terms(d, lam, 0.0, 0.5))
    for lam in (0.1, 0.4, 0.9):
        torch.testing.assert_close(f(lam), lam * f(1.0) + (1 - lam) * f(0.0))


def test_mixed_term_gradcheck():
    A = _emb(5, seed=9).requires_grad_()
    U = (_emb(5, seed=10) * 0.3 + _emb(5, seed=9)).requires_grad_()
    d = lp_distance_paired(A, U)
    assert ((d - 0.5).abs() > 1e-3).all() and (d > 1e-3).all()  # away from the kinks
    assert torch.autograd.gradcheck(lambda a, u: metrix_contrastive_loss(a, u, 0.3), (A, U))


@pytest.mark.parametrize("call, match", [
    (lambda A, U: metrix_contrastive_loss(A, U[:-1], 0.3), r"emb_anchor and emb_mixed"),
    (lambda A, U: metrix_contrastive_loss(A.fill_(float("nan")), U, 0.3), r"^emb_anchor:"),
    (lambda A, U: metrix_contrastive_loss(A, U.fill_(float("inf")), 0.3), r"^emb_mixed:"),
    (lambda A, U: metrix_contrastive_loss(A[:0], U[:0], 0.3), r"^emb_anchor:"),
    (lambda A, U: metrix_contrastive_loss(A[0], U[0], 0.3), r"^emb_anchor:"),
    (lambda A, U: metrix_contrastive_loss(A.long(), U, 0.3), r"^emb_anchor:"),
    (lambda A, U: metrix_contrastive_loss(A, U, 1.5), r"^lam:"),
    (lambda A, U: metrix_contrastive_loss(A, U, -0.1), r"^lam:"),
    (lambda A, U: metrix_contrastive_loss(A, U, 0.3, pos_margin=-1.0), r"^pos_margin:"),
    (lambda A, U: metrix_contrastive_loss(A, U, 0.3, neg_margin=0.0), r"^neg_margin:"),
    (lambda A, U: MetrixContrastiveLoss(neg_margin=-1.0), r"^neg_margin:"),
    (lambda A, U: MetrixContrastiveLoss(pos_margin=-1.0), r"^pos_margin:"),
])
def test_mixed_term_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call(_emb(4), _emb(4, seed=1))


# ------------------------------------------------------------------ Metrix/embed, Eq. (8)
@pytest.mark.parametrize("labels", LABELS)
@pytest.mark.parametrize("scheme", ["pos_neg", "anchor_neg"])
def test_embed_loss_matches_loop(labels, scheme):
    E = _emb(len(labels), seed=11)
    for lam, w in [(0.3, 0.4), (0.8, 0.25), (0.0, 1.0), (1.0, 0.4)]:
        torch.testing.assert_close(metrix_embed_loss(E, labels, lam, scheme, w), metrix_embed_ref(E, labels, lam, scheme, w),
                                   rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(metrix_embed_loss(E, labels, 0.3, scheme, 0.4, 0.1, 0.9),
                               metrix_embed_ref(E, labels, 0.3, scheme, 0.4, 0.1, 0.9), rtol=1e-10, atol=1e-12)


def test_embed_loss_defaults():
    y = LABELS[0]
    E = _emb(len(y), seed=12)
    torch.testing.assert_close(metrix_embed_loss(E, y), metrix_embed_ref(E, y, 0.5, "pos_neg", 0.4, 0.0, 0.5),
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(metrix_embed_loss(E, y), metrix_embed_loss(E, y, positives="all"), rtol=0, atol=0)
    torch.testing.assert_close(MetrixEmbedLoss()(E, y), metrix_embed_loss(E, y), rtol=0, atol=0)
    torch.testing.assert_close(MetrixEmbedLoss(0.2, 0.1, 0.7, "first")(E, y, 0.3, "anchor_neg"),
                               metrix_embed_loss(E, y, 0.3, "anchor_neg", 0.2, 0.1, 0.7, "first"), rtol=0, atol=0)


def test_embed_loss_first_positive_and_weight_zero():
    y = LABELS[0]
    E = _emb(len(y), seed=13)
    a, x1, x2 = metrix_pairs(y, positives="first")
    explicit = (snr_contrastive_loss(E, y, 0.0, 0.5, distance=lp_distance)
                + 0.4 * metrix_contrastive_loss(E[a], 0.3 * E[x1] + 0.7 * E[x2], 0.3))
    torch.testing.assert_close(metrix_embed_loss(E, y, 0.3, positives="first"), explicit, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(metrix_embed_loss(E, y, 0.3, positives="first"), metrix_embed_loss(E, y, 0.3))
    base = ContrastiveLoss(pos_margin=0, neg_margin=0.5, distance=LpDistance())(E, y)
    for scheme in ("pos_neg", "anchor_neg"):  # w = 0 is the baseline exactly (card oracle b)
        torch.testing.assert_close(metrix_embed_loss(E, y, 0.7, scheme, weight=0.0), base, rtol=1e-12, atol=1e-14)


def test_embed_loss_gradcheck():
    y = LABELS[0]
    E = _emb(len(y), seed=14).requires_grad_()
    for scheme in ("pos_neg", "anchor_neg"):
        assert torch.autograd.gradcheck(lambda e: metrix_embed_loss(e, y, 0.3, scheme), (E,))


@pytest.mark.parametrize("device", DEVICES)
def test_embed_loss_float32_and_device(device):
    y = LABELS[0].to(device)
    E = _emb(len(y), seed=15)
    v64 = metrix_embed_loss(E.to(device), y, 0.3)
    v32 = metrix_embed_loss(E.float().to(device), y, 0.3)
    assert v32.dtype == torch.float32 and v32.device.type == torch.device(device).type
    torch.testing.assert_close(v32.double(), v64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda E, y: metrix_embed_loss(E, y[:-1]), r"^labels:"),
    (lambda E, y: metrix_embed_loss(E, y.double()), r"^labels:"),
    (lambda E, y: metrix_embed_loss(E.fill_(float("nan")), y), r"^embeddings:"),
    (lambda E, y: metrix_embed_loss(E[:0], y[:0]), r"^embeddings:"),
    (lambda E, y: metrix_embed_loss(E, y, lam=2.0), r"^lam:"),
    (lambda E, y: metrix_embed_loss(E, y, scheme="both"), r"^scheme:"),
    (lambda E, y: metrix_embed_loss(E, y, positives="last"), r"^positives:"),
    (lambda E, y: metrix_embed_loss(E, y, weight=-0.1), r"^weight:"),
    (lambda E, y: metrix_embed_loss(E, y, neg_margin=0.0), r"^neg_margin:"),
    (lambda E, y: metrix_embed_loss(E, y, pos_margin=-0.1), r"^pos_margin:"),
    (lambda E, y: metrix_embed_loss(E, torch.arange(len(y))), r"^labels:.*no positive pair"),
    (lambda E, y: MetrixEmbedLoss(weight=-1.0), r"^weight:"),
    (lambda E, y: MetrixEmbedLoss(positives="x"), r"^positives:"),
    (lambda E, y: MetrixEmbedLoss(pos_margin=-1.0), r"^pos_margin:"),
    (lambda E, y: MetrixEmbedLoss(neg_margin=0.0), r"^neg_margin:"),
])
def test_embed_loss_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call(_emb(len(LABELS[0])), LABELS[0].clone())


# ------------------------------------------------------------------ training: MetrixLoss and mixup_lambda
def test_mixup_lambda_is_beta_2_2_by_default():
    g1, g2 = np.random.default_rng(0), np.random.default_rng(0)
    assert [mixup_lambda(generator=g1) for _ in range(5)] == [g2.beta(2.0, 2.0) for _ in range(5)]
    g1, g2 = np.random.default_rng(1), np.random.default_rng(1)
    assert mixup_lambda(0.4, g1) == g2.beta(0.4, 0.4)
    np.random.seed(3)
    v = mixup_lambda()
    np.random.seed(3)
    assert v == np.random.beta(2.0, 2.0)
    with pytest.raises(ValueError, match=r"^alpha:"):
        mixup_lambda(0.0)


def test_metrix_loss_embed_mode_draws_and_weights():
    y = LABELS[0]
    E = _emb(len(y), seed=16)
    crit = MetrixLoss(seed=5, weight_anchor_neg=0.3)
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(8):
        value = crit(E, y)
        scheme = ("pos_neg", "anchor_neg")[int(rng.integers(2))]
        lam = rng.beta(2.0, 2.0)
        assert crit.last == {"scheme": scheme, "lam": lam}
        w = 0.4 if scheme == "pos_neg" else 0.3
        torch.testing.assert_close(value, metrix_embed_loss(E, y, lam, scheme, w), rtol=0, atol=0)
        seen.add(scheme)
    assert seen == {"pos_neg", "anchor_neg"}
    d = MetrixLoss()
    assert (d.mode, d.alpha, d.weight, d.weight_anchor_neg, d.pos_margin, d.neg_margin, d.hardest_k, d.positives) == \
        ("embed", 2.0, 0.4, None, 0.0, 0.5, None, "all")


def test_metrix_loss_input_mode_with_embedding_mix_equals_embed_mode():
    "A mix_fn that mixes embeddings, with every negative, is embed mode; the default input mode keeps the hardest negative."
    y = LABELS[0]
    E = _emb(len(y), seed=17)
    mix = lambda i, j, lam: lam * E[i] + (1 - lam) * E[j]
    for _ in range(4):
        a, b = MetrixLoss("input", hardest_k=None, seed=7), MetrixLoss("embed", seed=7)
        torch.testing.assert_close(a(E, y, mix), b(E, y), rtol=1e-12, atol=1e-14)
    assert MetrixLoss("input").hardest_k == 1 and MetrixLoss("feature").hardest_k is None
    crit = MetrixLoss("input", seed=2)
    value = crit(E, y, mix)
    scheme, lam = crit.last["scheme"], crit.last["lam"]
    a, x1, x2 = metrix_pairs(y, scheme, 1, lp_distance(E))
    expected = (snr_contrastive_loss(E, y, 0.0, 0.5, distance=lp_distance)
                + 0.4 * metrix_contrastive_loss(E[a], mix(x1, x2, lam), lam))
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-14)
    assert crit.last["n_mixed"] == len(a)


def test_metrix_loss_empty_scheme_is_clean_loss():
    y = LABELS[2]  # every anchor has a positive: scheme (6) is empty
    E = _emb(len(y), seed=18)
    crit = MetrixLoss("feature", seed=0)
    for _ in range(6):
        v = crit(E, y, lambda i, j, lam: lam * E[i] + (1 - lam) * E[j])
        if crit.last["scheme"] == "anchor_neg":
            assert crit.last["n_mixed"] == 0
            torch.testing.assert_close(v, snr_contrastive_loss(E, y, 0.0, 0.5, distance=lp_distance))


@pytest.mark.parametrize("call, match", [
    (lambda E, y: MetrixLoss(mode="latent"), r"^mode:"),
    (lambda E, y: MetrixLoss(alpha=0.0), r"^alpha:"),
    (lambda E, y: MetrixLoss(weight=-1.0), r"^weight:"),
    (lambda E, y: MetrixLoss(weight_anchor_neg=-1.0), r"^weight_anchor_neg:"),
    (lambda E, y: MetrixLoss(neg_margin=0.0), r"^neg_margin:"),
    (lambda E, y: MetrixLoss(pos_margin=-1.0), r"^pos_margin:"),
    (lambda E, y: MetrixLoss(positives="x"), r"^positives:"),
    (lambda E, y: MetrixLoss("input")(E, y), r"^mix_fn:"),
    (lambda E, y: MetrixLoss("embed", hardest_k=1)(E, y), r"^hardest_k:"),
])
def test_metrix_loss_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call(_emb(len(LABELS[0])), LABELS[0])


# ------------------------------------------------------------------ utilization, Eq. (9)
def test_utilization_equals_sklearn_nearest_neighbours():
    from sklearn.neighbors import NearestNeighbors
    Q, X = _emb(30, seed=19), _emb(50, seed=20)
    dist, _ = NearestNeighbors(n_neighbors=1).fit(X.numpy()).kneighbors(Q.numpy())
    assert utilization(Q, X) == pytest.approx(float(dist.mean()), rel=1e-12)
    assert utilization(X, X) == 0.0
    assert utilization(Q, X) > 0
    assert utilization(Q.float(), Q.float()) == 0.0


@pytest.mark.parametrize("call, match", [
    (lambda Q, X: utilization(Q, X[:, :3]), r"test_emb and train_emb"),
    (lambda Q, X: utilization(Q.fill_(float("nan")), X), r"^test_emb:"),
    (lambda Q, X: utilization(Q, X[:0]), r"^train_emb:"),
    (lambda Q, X: utilization(Q[0], X), r"^test_emb:"),
])
def test_utilization_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call(_emb(5), _emb(6, seed=1))


# ------------------------------------------------------------------ mutation-testing pass (issue #7)
@pytest.mark.parametrize("k", [True, False, 2.0, "1"])
def test_hardest_k_must_be_a_plain_int(k):
    D = lp_distance(_emb(4))
    with pytest.raises(ValueError, match=r"^hardest_k: expected None or an int >= 1"):
        metrix_pairs(torch.tensor([0, 0, 1, 1]), hardest_k=k, dist=D)


def test_hardest_k_dist_checks_and_messages():
    y = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"^dist: hardest_k needs the \(N, N\) matrix of clean distances$"):
        metrix_pairs(y, hardest_k=1)
    with pytest.raises(ValueError, match=r"^dist: expected 2 dimensions"):
        metrix_pairs(y, hardest_k=1, dist=torch.zeros(4, 4, 1))
    with pytest.raises(ValueError, match=r"^dist: expected a floating-point tensor"):
        metrix_pairs(y, hardest_k=1, dist=torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^dist: expected shape \(4, 4\), got \(4, 3\)"):
        metrix_pairs(y, hardest_k=1, dist=torch.zeros(4, 3))


def test_zero_weights_are_legal_and_give_the_clean_loss():
    y = LABELS[0]
    E = _emb(len(y), seed=21)
    clean = snr_contrastive_loss(E, y, 0.0, 0.5, distance=lp_distance)
    assert MetrixEmbedLoss(weight=0.0).weight == 0.0
    torch.testing.assert_close(MetrixEmbedLoss(weight=0.0)(E, y, 0.3), clean, rtol=1e-12, atol=1e-14)
    crit = MetrixLoss(weight=0.0, weight_anchor_neg=0.0, seed=0)
    assert (crit.weight, crit.weight_anchor_neg) == (0.0, 0.0)
    for _ in range(4):
        torch.testing.assert_close(crit(E, y), clean, rtol=1e-12, atol=1e-14)


def test_metrix_loss_embed_mode_hardest_k_message():
    with pytest.raises(ValueError, match=r"^hardest_k: embed mode mixes with every negative \(hardest_k=None or 'auto'\)$"):
        MetrixLoss("embed", hardest_k=2)(_emb(6), LABELS[2])


@pytest.mark.parametrize("mode", ["embed", "feature", "input"])
def test_metrix_loss_passes_every_setting_through(mode):
    "Margins, positives and both weights reach the loss in every mode (against the explicit Eq. 8)."
    y = LABELS[0]
    E = _emb(len(y), seed=22)
    mix = lambda i, j, lam: lam * E[i] + (1 - lam) * E[j]
    kw = dict(alpha=0.7, weight=0.6, weight_anchor_neg=0.25, pos_margin=0.1, neg_margin=0.9, positives="first")
    crit = MetrixLoss(mode, seed=3, **kw)
    seen = set()
    for _ in range(6):
        value = crit(E, y, mix)
        scheme, lam = crit.last["scheme"], crit.last["lam"]
        seen.add(scheme)
        w = 0.6 if scheme == "pos_neg" else 0.25
        if mode == "embed":
            expected = metrix_embed_loss(E, y, lam, scheme, w, 0.1, 0.9, "first")
        else:
            dist = lp_distance(E) if mode == "input" else None
            a, x1, x2 = metrix_pairs(y, scheme, 1 if mode == "input" else None, dist, "first")
            expected = (snr_contrastive_loss(E, y, 0.1, 0.9, distance=lp_distance)
                        + w * metrix_contrastive_loss(E[a], mix(x1, x2, lam), lam, 0.1, 0.9))
        torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-14)
    assert seen == {"pos_neg", "anchor_neg"}


def test_metrix_loss_last_is_empty_before_the_first_call():
    assert MetrixLoss().last == {} and MetrixLoss("feature").last == {}


def test_emb_mixed_must_be_a_matrix():
    A, U = _emb(4), _emb(4, seed=1)
    for bad in (U[:, :, None], U[0], U.long()):
        with pytest.raises(ValueError, match=r"^emb_mixed:"):
            metrix_contrastive_loss(A, bad, 0.3)


def test_mixed_term_single_row_divides_each_part_by_one():
    "One mixed example: each non-zero part is averaged over exactly one term."
    A, U = _emb(1, seed=23), _emb(1, seed=24)
    d = float(lp_distance_paired(A, U))
    assert d > 0.5  # far: only the positive part is non-zero
    got = metrix_contrastive_loss(A, U, 0.3)
    torch.testing.assert_close(got, torch.tensor(0.3 * d + 0.7 * max(0.0, 0.5 - d), dtype=torch.float64),
                               rtol=1e-12, atol=1e-14)
    U2 = A + 0.05 * _emb(1, seed=25)  # close: both parts non-zero
    d2 = float(lp_distance_paired(A, U2))
    assert 0 < d2 < 0.5
    torch.testing.assert_close(metrix_contrastive_loss(A, U2, 0.3),
                               torch.tensor(0.3 * d2 + 0.7 * (0.5 - d2), dtype=torch.float64), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("pair", [(torch.float32, torch.float64), (torch.float64, torch.float32),
                                  (torch.float16, torch.float16), (torch.bfloat16, torch.float16)])
def test_mixed_term_computed_in_the_promoted_full_precision(pair):
    A, U = _emb(9, seed=4), _emb(9, seed=5) * 0.3 + _emb(9, seed=4)
    a, u = A.to(pair[0]), U.to(pair[1])
    want = torch.promote_types(*pair)
    want = torch.float32 if want in (torch.float16, torch.bfloat16) else want
    v = metrix_contrastive_loss(a, u, 0.3)
    assert v.dtype == want
    torch.testing.assert_close(v, metrix_contrastive_loss(a.to(want), u.to(want), 0.3), rtol=0, atol=0)


def test_utilization_checks_name_the_argument():
    Q, X = _emb(5), _emb(6, seed=1)
    for bad in ((10 * Q).long(), Q[:, :, None]):
        with pytest.raises(ValueError, match=r"^test_emb:"):
            utilization(bad, X)
    for bad in ((10 * X).long(), X[0], X[:, :, None], X.masked_fill(X > 1, float("inf"))):
        with pytest.raises(ValueError, match=r"^train_emb:"):
            utilization(Q, bad)


@pytest.mark.parametrize("scheme", ["pos_neg", "anchor_neg"])
def test_fake_two_ranks_split_the_mixed_term_of_the_whole_batch(monkeypatch, scheme):
    """DDP without processes: each fake rank mixes its own anchors against the gathered batch at its offset; with the
    counts summed over ranks (all_sum faked to the global counts) the two parts add up to the one-process term."""
    import lossbook.metric.metrix_mixup as mod
    y = LABELS[0]
    E = _emb(len(y), seed=26)
    lam = 0.35
    full = metrix_embed_loss(E, y, lam, scheme, 1.0) - snr_contrastive_loss(E, y, 0.0, 0.5, distance=lp_distance)
    pos, neg = mod._pair_masks(y, y)
    a, x1, x2 = mod._triples(pos, neg, scheme, None, None, "all")
    l_pos, l_neg = mod._mixed_terms(mod._mixed_distance(E, E, a, x1, x2, lam), lam, 0.0, 0.5)
    counts = torch.stack([(l_pos > 0).sum(), (l_neg > 0).sum()])
    calls = []
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    monkeypatch.setattr(mod, "gather", lambda t: calls.append("gather") or (E if t.is_floating_point() else y))
    monkeypatch.setattr(mod, "all_sum", lambda t, active=True: calls.append(("all_sum", active)) or counts)
    monkeypatch.setattr(mod, "sum_over_ranks", lambda part, active=True: calls.append(("sum", active)) or part)
    monkeypatch.setattr(mod, "snr_contrastive_loss", lambda *args, **kw: E.new_zeros(()))
    parts = []
    for start, stop in [(0, 5), (5, len(y))]:
        monkeypatch.setattr(mod, "local_slice", lambda n, device=None, s=start: slice(s, s + n))
        parts.append(metrix_embed_loss(E[start:stop], y[start:stop], lam, scheme, 1.0, gather_distributed=True))
    torch.testing.assert_close(parts[0] + parts[1], full, rtol=1e-12, atol=1e-14)
    assert calls == ["gather", "gather", ("all_sum", True), ("sum", True)] * 2
    calls.clear()
    metrix_embed_loss(E, y, lam, scheme, 1.0)  # without gather_distributed: nothing gathered, nothing summed
    assert calls == [("all_sum", False), ("sum", False)]


def test_hardest_k_with_no_anchor_gives_empty_triples():
    "'anchor_neg' on a batch where every anchor has a positive: no anchor, three empty int64 index tensors (input mode too)."
    y = LABELS[2]
    E = _emb(len(y), seed=27)
    for k in (1, 3):
        out = metrix_pairs(y, "anchor_neg", hardest_k=k, dist=lp_distance(E))
        assert all(t.shape == (0,) and t.dtype == torch.int64 for t in out)
    crit = MetrixLoss("input", seed=0)
    seen = set()
    for _ in range(6):
        v = crit(E, y, lambda i, j, lam: lam * E[i] + (1 - lam) * E[j])
        seen.add(crit.last["scheme"])
        if crit.last["scheme"] == "anchor_neg":
            assert crit.last["n_mixed"] == 0
            torch.testing.assert_close(v, snr_contrastive_loss(E, y, 0.0, 0.5, distance=lp_distance))
    assert "anchor_neg" in seen


def test_embed_loss_one_dimensional_embeddings_name_embeddings():
    "A vector, not (N, D): the embeddings are blamed, not the labels whose count cannot match its length."
    y = LABELS[0]
    E = _emb(len(y))
    for bad in (E[0], E[:, 0]):
        with pytest.raises(ValueError, match=r"^embeddings: expected 2 dimensions"):
            metrix_embed_loss(bad, y)
    with pytest.raises(ValueError, match=r"^embeddings: expected a floating-point tensor"):
        metrix_embed_loss((10 * E).long(), y)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_embed_loss_half_inputs_computed_in_float32(dtype):
    y = LABELS[0]
    E = _emb(len(y), seed=28).to(dtype)
    v = metrix_embed_loss(E, y, 0.3)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v, metrix_embed_loss(E.float(), y, 0.3), rtol=0, atol=0)


@pytest.mark.parametrize("scheme", ["pos_neg", "anchor_neg"])
def test_embed_loss_averages_over_non_zero_terms_only(scheme):
    "A positive margin inside the range of d(a, u): some mixed positive terms are 0 and are not counted (AvgNonZero)."
    import lossbook.metric.metrix_mixup as mod
    y = LABELS[0]
    E = _emb(len(y), seed=29)
    a, x1, x2 = metrix_pairs(y, scheme)
    d = mod._mixed_distance(E, E, a, x1, x2, 0.3)
    m_pos = float(d.median())
    assert (d < m_pos).any() and (d > m_pos).any()
    torch.testing.assert_close(metrix_embed_loss(E, y, 0.3, scheme, 0.4, m_pos, 1.5),
                               metrix_embed_ref(E, y, 0.3, scheme, 0.4, m_pos, 1.5), rtol=1e-10, atol=1e-12)
