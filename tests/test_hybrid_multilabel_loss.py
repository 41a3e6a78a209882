"""Tests for lossbook.classification.hybrid_multilabel_loss (card 10: Aslam et al. 2024, the hybrid loss, reconstructed).

References: PyTorch's BCE-with-logits (pos_weight / weight), scikit-learn's class weights, NumPy's corrcoef, the
core's and pytorch-metric-learning's SupCon for single-label targets, and float64 loops transcribed from Eqs. (2)-(8).
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ddp_utils import run_distributed

from lossbook.classification.hybrid_multilabel_loss import (
    HybridMultiLabelLoss,
    LabelCorrelationLoss,
    MultiLabelSupConLoss,
    WeightedBCEWithLogitsLoss,
    _ml_example,
    hybrid_multilabel_loss,
    label_correlation_loss,
    label_correlation_matrix,
    label_weights,
    multilabel_supcon_loss,
    weighted_bce_with_logits,
)
from lossbook.contrastive import supcon_loss


def _data(B=12, L=5, D=8, seed=0, dtype=torch.float64):
    s, h, y, wp, wn, C = _ml_example(B, dtype=dtype, seed=seed, n_labels=L, dim=D)
    return s, h, y, wp, wn, C


def _random_targets(B, L, seed, p=0.4):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, L, generator=g) < p).long()


def _sig(v):
    return 1 / (1 + math.exp(-v))


# ------------------------------------------------------------------------------------------------ label_weights
def test_label_weights_balanced_equal_sklearn():
    from sklearn.utils.class_weight import compute_class_weight
    Y = _random_targets(40, 6, 0, p=0.3)
    wp, wn = label_weights(Y)
    assert wp.dtype == torch.float32 and wp.shape == (6,)
    for j in range(6):
        cw = compute_class_weight("balanced", classes=np.array([0, 1]), y=Y[:, j].numpy())
        assert wn[j].item() == pytest.approx(cw[0], rel=1e-6)
        assert wp[j].item() == pytest.approx(cw[1], rel=1e-6)
    torch.testing.assert_close(label_weights(Y, "balanced")[0], wp)  # the default is 'balanced'


def test_label_weights_pos_only_and_constant_labels():
    Y = torch.tensor([[1, 0, 1, 0], [0, 0, 1, 0], [0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 1, 0]])
    wp, wn = label_weights(Y, "pos_only")
    torch.testing.assert_close(wp, torch.tensor([1.5, 4.0, 1.0, 1.0]))
    torch.testing.assert_close(wn, torch.ones(4))
    wpb, wnb = label_weights(Y)
    torch.testing.assert_close(wpb, torch.tensor([5 / 4, 5 / 2, 1.0, 1.0]))
    torch.testing.assert_close(wnb, torch.tensor([5 / 6, 5 / 8, 1.0, 1.0]))
    assert not torch.equal(label_weights(Y)[0], wp)


@pytest.mark.parametrize("bad,match", [(torch.tensor([[0, 2], [1, 0]]), r"^Y:"), (torch.zeros(3), r"^Y:"),
                                       (torch.zeros(3, 0), r"^Y:"), (torch.zeros(0, 3), r"^Y:")])
def test_label_weights_bad_Y(bad, match):
    with pytest.raises(ValueError, match=match):
        label_weights(bad)


def test_label_weights_bad_mode():
    with pytest.raises(ValueError, match=r"^mode:"):
        label_weights(torch.ones(3, 2), "inverse")


# --------------------------------------------------------------------------------------------- weighted BCE
def test_weighted_bce_pos_only_equals_torch_pos_weight():
    s, _, y, wp, _, _ = _data()
    torch.testing.assert_close(weighted_bce_with_logits(s, y, w_pos=wp),
                               F.binary_cross_entropy_with_logits(s, y.double(), pos_weight=wp))
    torch.testing.assert_close(weighted_bce_with_logits(s, y), F.binary_cross_entropy_with_logits(s, y.double()))


def test_weighted_bce_both_weights_loop_and_reductions():
    s, _, y, wp, wn, _ = _data()
    none = weighted_bce_with_logits(s, y, wp, wn, reduction="none")
    assert none.shape == s.shape
    ref = torch.tensor([[-(wp[j] * y[i, j] * math.log(_sig(s[i, j])) + wn[j] * (1 - y[i, j]) * math.log(1 - _sig(s[i, j])))
                         for j in range(s.shape[1])] for i in range(s.shape[0])], dtype=torch.float64)
    torch.testing.assert_close(none, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(weighted_bce_with_logits(s, y, wp, wn), ref.mean())
    torch.testing.assert_close(weighted_bce_with_logits(s, y, wp, wn, reduction="sum"), ref.sum())
    torch.testing.assert_close(weighted_bce_with_logits(s, y, wp, wn, "mean"), weighted_bce_with_logits(s, y, wp, wn))


def test_weighted_bce_float_and_bool_targets_and_float32():
    s, _, y, wp, wn, _ = _data()
    v = weighted_bce_with_logits(s, y, wp, wn)
    torch.testing.assert_close(weighted_bce_with_logits(s, y.double(), wp, wn), v)
    torch.testing.assert_close(weighted_bce_with_logits(s, y.bool(), wp, wn), v)
    v32 = weighted_bce_with_logits(s.float(), y, wp.float(), wn.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v, rtol=1e-5, atol=1e-6)


def test_weighted_bce_module_and_gradcheck():
    s, _, y, wp, wn, _ = _data(B=5, L=3)
    for red in ("mean", "sum", "none"):
        torch.testing.assert_close(WeightedBCEWithLogitsLoss(wp, wn, red)(s, y), weighted_bce_with_logits(s, y, wp, wn, red))
    torch.testing.assert_close(WeightedBCEWithLogitsLoss()(s, y), weighted_bce_with_logits(s, y))
    x = s.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: weighted_bce_with_logits(t, y, wp, wn), (x,))
    # the weights are constants: no gradient flows into them
    wq = wp.clone().requires_grad_()
    weighted_bce_with_logits(x, y, wq, wn).backward()
    assert wq.grad is None


@pytest.mark.parametrize("kw,match", [
    (dict(targets=torch.ones(12, 4)), r"^targets:"),
    (dict(targets=2 * torch.ones(12, 5)), r"^targets:"),
    (dict(w_pos=torch.ones(4, dtype=torch.float64)), r"^w_pos:"),
    (dict(w_neg=-torch.ones(5, dtype=torch.float64)), r"^w_neg:"),
    (dict(w_pos=torch.ones(5, 1, dtype=torch.float64)), r"^w_pos:"),
    (dict(reduction="avg"), r"^reduction:"),
])
def test_weighted_bce_bad_inputs(kw, match):
    s, _, y, _, _, _ = _data()
    args = dict(logits=s, targets=y) | kw
    with pytest.raises(ValueError, match=match):
        weighted_bce_with_logits(**args)


def test_weighted_bce_bad_logits():
    _, _, y, _, _, _ = _data()
    with pytest.raises(ValueError, match=r"^logits:"):
        weighted_bce_with_logits(torch.zeros(12, 5, dtype=torch.long), y)
    with pytest.raises(ValueError, match=r"^logits:"):
        weighted_bce_with_logits(torch.zeros(12), y)


# ------------------------------------------------------------------------------------- correlation matrix
def test_label_correlation_matrix_equals_corrcoef_and_constant_labels():
    Y = _random_targets(100, 6, 1, p=0.35)
    Y[:, 4] = 0
    Y[:, 5] = 1
    C = label_correlation_matrix(Y)
    assert C.dtype == torch.float32 and C.shape == (6, 6)
    ref = torch.tensor(np.corrcoef(Y[:, :4].T.numpy()), dtype=torch.float32) - torch.eye(4)
    torch.testing.assert_close(C[:4, :4], ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(C[4:], torch.zeros(2, 6)) and torch.equal(C[:, 4:], torch.zeros(6, 2))
    assert torch.equal(C.diagonal(), torch.zeros(6))
    torch.testing.assert_close(label_correlation_matrix(Y, "phi"), C)


def test_label_correlation_matrix_cooccurrence():
    Y = _random_targets(50, 4, 2, p=0.5)
    C = label_correlation_matrix(Y, "cooccurrence")
    n = Y.sum(0).double()
    for j in range(4):
        for k in range(4):
            want = 0.0 if j == k else float((Y[:, j] * Y[:, k]).sum() / math.sqrt(n[j] * n[k]))
            assert C[j, k].item() == pytest.approx(want, rel=1e-6)
    assert not torch.allclose(C, label_correlation_matrix(Y))


def test_label_correlation_matrix_bad():
    with pytest.raises(ValueError, match=r"^Y:"):
        label_correlation_matrix(torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"^kind:"):
        label_correlation_matrix(torch.ones(4, 3), "pearson")


# ----------------------------------------------------------------------------------- correlation penalty
def _pairwise_loop(s, C):
    out = []
    for row in s.tolist():
        p = [_sig(v) for v in row]
        L = len(p)
        out.append(sum(max(C[j][k], 0) * (p[j] - p[k]) ** 2 + max(-C[j][k], 0) * p[j] * p[k]
                       for j in range(L) for k in range(L) if j != k))
    return torch.tensor(out, dtype=torch.float64)


def _lca_loop(s, y):
    out = []
    for row, t in zip(s.tolist(), y.tolist()):
        p = [_sig(v) for v in row]
        pos = [j for j, v in enumerate(t) if v]
        neg = [j for j, v in enumerate(t) if not v]
        out.append(0.0 if not pos or not neg else
                   sum(math.exp(p[q] - p[r]) for q in neg for r in pos) / (len(pos) * len(neg)))
    return torch.tensor(out, dtype=torch.float64)


def _batch_corr_ref(s, C, eps=1e-8):
    P = torch.sigmoid(s).numpy()
    Pc = P - P.mean(0)
    cov = Pc.T @ Pc / P.shape[0]
    sd = np.sqrt(np.diag(cov) + eps)
    R = cov / np.outer(sd, sd)
    L = C.shape[0]
    off = 1 - np.eye(L)
    return float((((R - C.numpy()) ** 2) * off).sum() / (L * (L - 1)))


def test_pairwise_matches_loop_with_asymmetric_C():
    s, _, _, _, _, C = _data()
    C = C.clone()
    C[0, 1], C[2, 2] = 0.9, -0.7  # asymmetric, and a diagonal entry that must be ignored
    got = label_correlation_loss(s, C, reduction="none")
    torch.testing.assert_close(got, _pairwise_loop(s, C.tolist()), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(label_correlation_loss(s, C), got.mean())
    torch.testing.assert_close(label_correlation_loss(s, C, reduction="sum"), got.sum())
    torch.testing.assert_close(label_correlation_loss(s, C, mode="pairwise"), got.mean())


def test_lca_matches_loop_and_ignores_C():
    s, _, _, _, _, C = _data()
    y = _random_targets(12, 5, 3)
    y[0] = 0  # no positive
    y[1] = 1  # no negative
    got = label_correlation_loss(s, C, y, mode="lca", reduction="none")
    torch.testing.assert_close(got, _lca_loop(s, y), rtol=1e-10, atol=1e-12)
    assert got[0] == 0 and got[1] == 0
    torch.testing.assert_close(label_correlation_loss(s, torch.zeros_like(C), y, mode="lca", reduction="none"), got)
    assert not torch.allclose(label_correlation_loss(s, C, y, mode="lca"), label_correlation_loss(s, C, y))


def test_batch_corr_matches_numpy():
    s, _, _, _, _, C = _data(B=20)
    got = label_correlation_loss(s, C, mode="batch_corr")
    assert got.item() == pytest.approx(_batch_corr_ref(s, C), rel=1e-9)
    torch.testing.assert_close(label_correlation_loss(s, C, mode="batch_corr", reduction="sum"), got)
    with pytest.raises(ValueError, match=r"^reduction:"):
        label_correlation_loss(s, C, mode="batch_corr", reduction="none")
    with pytest.raises(ValueError, match=r"^logits:"):
        label_correlation_loss(s[:1], C, mode="batch_corr")


def test_correlation_limit_cases():
    s, _, _, _, _, C = _data()
    assert label_correlation_loss(s, torch.zeros_like(C)).item() == 0
    flat = torch.full((6, 5), -0.3, dtype=torch.float64)
    assert label_correlation_loss(flat, C.abs()).item() == pytest.approx(0, abs=1e-15)
    assert label_correlation_loss(flat, -C.abs()).item() > 0  # negative correlations penalise co-activation


@pytest.mark.parametrize("mode", ["pairwise", "batch_corr", "lca"])
def test_correlation_gradcheck_and_module(mode):
    s, _, _, _, _, C = _data(B=6, L=4)
    y = _random_targets(6, 4, 5)
    x = s.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: label_correlation_loss(t, C, y, mode=mode), (x,))
    red = "sum" if mode == "batch_corr" else "none"
    torch.testing.assert_close(LabelCorrelationLoss(C, mode, red)(s, y), label_correlation_loss(s, C, y, mode, red))
    torch.testing.assert_close(LabelCorrelationLoss(C)(s), label_correlation_loss(s, C))


@pytest.mark.parametrize("kw,match", [
    (dict(C=torch.zeros(4, 4, dtype=torch.float64)), r"^C:"),
    (dict(C=torch.zeros(5, 5, dtype=torch.long)), r"^C:"),
    (dict(mode="lca"), r"^targets:"),
    (dict(mode="corr"), r"^mode:"),
    (dict(targets=torch.ones(11, 5)), r"^targets:"),
    (dict(reduction="avg"), r"^reduction:"),
])
def test_correlation_bad_inputs(kw, match):
    s, _, _, _, _, C = _data()
    with pytest.raises(ValueError, match=match):
        label_correlation_loss(**(dict(logits=s, C=C) | kw))


def test_correlation_module_bad_args():
    with pytest.raises(ValueError, match=r"^mode:"):
        LabelCorrelationLoss(torch.zeros(3, 3), mode="x")
    with pytest.raises(ValueError, match=r"^reduction:"):
        LabelCorrelationLoss(torch.zeros(3, 3), reduction="x")


# ------------------------------------------------------------------------------------------ contrastive
def _supcon_ml_loop(h, y, tau, weighting):
    H = F.normalize(h, dim=1).tolist()
    Y = y.tolist()
    n, terms = len(H), []
    for a in range(n):
        w = []
        for b in range(n):
            inter = sum(u and v for u, v in zip(Y[a], Y[b]))
            union = sum(u or v for u, v in zip(Y[a], Y[b]))
            if b == a:
                w.append(0.0)
            elif weighting == "jaccard":
                w.append(inter / union if union else 0.0)
            else:
                w.append(1.0 if inter else 0.0)
        if sum(w) == 0:
            continue
        sims = [sum(p * q for p, q in zip(H[a], H[b])) / tau for b in range(n)]
        lse = math.log(sum(math.exp(sims[b]) for b in range(n) if b != a))
        terms.append(sum(w[b] * (lse - sims[b]) for b in range(n)) / sum(w))
    return torch.tensor(terms, dtype=torch.float64)


@pytest.mark.parametrize("weighting", ["jaccard", "any_overlap"])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_supcon_matches_loop(weighting, tau):
    _, h, _, _, _, _ = _data(B=10)
    y = _random_targets(10, 5, 7, p=0.3)
    y[3] = 0  # an empty label set: never a positive, left out as an anchor
    got = multilabel_supcon_loss(h, y, tau, weighting, reduction="none")
    ref = _supcon_ml_loop(h, y, tau, weighting)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(multilabel_supcon_loss(h, y, tau, weighting), ref.mean())
    torch.testing.assert_close(multilabel_supcon_loss(h, y, tau, weighting, reduction="sum"), ref.sum())


def test_supcon_defaults_pinned():
    _, h, _, _, _, _ = _data(B=10)
    y = _random_targets(10, 5, 8, p=0.3)
    v = multilabel_supcon_loss(h, y)
    torch.testing.assert_close(v, multilabel_supcon_loss(h, y, 0.1, "jaccard", "mean"))
    assert not torch.allclose(v, multilabel_supcon_loss(h, y, temperature=0.2))
    assert not torch.allclose(v, multilabel_supcon_loss(h, y, weighting="any_overlap"))
    torch.testing.assert_close(MultiLabelSupConLoss()(h, y), v)
    torch.testing.assert_close(MultiLabelSupConLoss(0.3, "any_overlap", "none")(h, y),
                               multilabel_supcon_loss(h, y, 0.3, "any_overlap", "none"))


def test_supcon_one_hot_equals_supcon_and_pml():
    from pytorch_metric_learning.losses import SupConLoss as PMLSupCon
    g = torch.Generator().manual_seed(4)
    h = torch.randn(16, 6, generator=g, dtype=torch.float64)
    lab = torch.randint(0, 4, (16,), generator=g)
    onehot = F.one_hot(lab, 4)
    v = multilabel_supcon_loss(h, onehot)
    torch.testing.assert_close(v, supcon_loss(h, lab, temperature=0.1))
    torch.testing.assert_close(v, PMLSupCon(temperature=0.1)(h, lab).double(), rtol=1e-6, atol=1e-7)


def test_supcon_norm_invariance_and_no_positive():
    _, h, y, _, _, _ = _data(B=10)
    scale = torch.linspace(0.1, 50, 10, dtype=torch.float64)[:, None]
    torch.testing.assert_close(multilabel_supcon_loss(h * scale, y), multilabel_supcon_loss(h, y))
    with pytest.raises(ValueError, match=r"^targets:"):
        multilabel_supcon_loss(h, torch.eye(10, dtype=torch.long))


def test_supcon_gradcheck():
    _, h, y, _, _, _ = _data(B=6, D=3)
    x = h.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: multilabel_supcon_loss(t, y), (x,))


@pytest.mark.parametrize("kw,match", [
    (dict(targets=torch.ones(11, 5)), r"^targets:"),
    (dict(targets=torch.ones(12)), r"^targets:"),
    (dict(targets=3 * torch.ones(12, 5)), r"^targets:"),
    (dict(temperature=0.0), r"^temperature:"),
    (dict(weighting="cosine"), r"^weighting:"),
    (dict(reduction="avg"), r"^reduction:"),
])
def test_supcon_bad_inputs(kw, match):
    _, h, y, _, _, _ = _data()
    with pytest.raises(ValueError, match=match):
        multilabel_supcon_loss(**(dict(emb=h, targets=y) | kw))


# ------------------------------------------------------------------------------------------------ hybrid
def test_hybrid_reduces_to_bce_and_terms():
    s, h, y, wp, wn, C = _data()
    torch.testing.assert_close(hybrid_multilabel_loss(s, h, y, lambda_corr=0, lambda_con=0),
                               F.binary_cross_entropy_with_logits(s, y.double()))
    total, t = hybrid_multilabel_loss(s, h, y, wp, wn, C, 0.3, 0.7, 0.2, return_terms=True)
    torch.testing.assert_close(t["bce"], weighted_bce_with_logits(s, y, wp, wn))
    torch.testing.assert_close(t["corr"], label_correlation_loss(s, C))
    torch.testing.assert_close(t["con"], multilabel_supcon_loss(h, y, 0.2))
    torch.testing.assert_close(total, t["bce"] + 0.3 * t["corr"] + 0.7 * t["con"])
    assert not any(v.requires_grad for v in t.values())


def test_hybrid_defaults_pinned():
    s, h, y, wp, wn, C = _data()
    v = hybrid_multilabel_loss(s, h, y, wp, wn, C)
    torch.testing.assert_close(v, hybrid_multilabel_loss(s, h, y, wp, wn, C, 0.1, 0.1, 0.1, "pairwise", "jaccard", False))
    for kw in (dict(lambda_corr=0.2), dict(lambda_con=0.2), dict(temperature=0.2), dict(corr_mode="batch_corr"),
               dict(weighting="any_overlap")):
        assert not torch.allclose(v, hybrid_multilabel_loss(s, h, y, wp, wn, C, **kw)), kw
    # C = None drops the correlation term (but 'lca' needs no C)
    torch.testing.assert_close(hybrid_multilabel_loss(s, h, y, wp, wn), hybrid_multilabel_loss(s, h, y, wp, wn, C, lambda_corr=0))
    lca = hybrid_multilabel_loss(s, h, y, corr_mode="lca", return_terms=True)[1]["corr"]
    torch.testing.assert_close(lca, label_correlation_loss(s, C, y, mode="lca"))
    bc = hybrid_multilabel_loss(s, h, y, C=C, corr_mode="batch_corr", return_terms=True)[1]["corr"]
    torch.testing.assert_close(bc, label_correlation_loss(s, C, mode="batch_corr"))
    wt = hybrid_multilabel_loss(s, h, y, weighting="any_overlap", temperature=0.3, return_terms=True)[1]["con"]
    torch.testing.assert_close(wt, multilabel_supcon_loss(h, y, 0.3, "any_overlap"))


def test_hybrid_no_positive_pair_gives_zero_contrastive():
    s, h, _, _, _, _ = _data(B=5)
    y = torch.eye(5, dtype=torch.long)
    total, t = hybrid_multilabel_loss(s, h, y, return_terms=True)
    assert t["con"].item() == 0
    x = h.clone().requires_grad_()
    hybrid_multilabel_loss(s, x, y).backward()
    assert torch.equal(x.grad, torch.zeros_like(h))


def test_hybrid_module_passes_every_setting():
    s, h, y, wp, wn, C = _data()
    for kw in (dict(), dict(lambda_corr=0.5, lambda_con=0.2, temperature=0.3, corr_mode="lca", weighting="any_overlap"),
               dict(corr_mode="batch_corr")):
        m = HybridMultiLabelLoss(wp, wn, C, **kw)
        torch.testing.assert_close(m(s, h, y), hybrid_multilabel_loss(s, h, y, wp, wn, C, **kw), rtol=0, atol=0)
        torch.testing.assert_close(m(s, h, y, return_terms=True)[1]["con"],
                                   hybrid_multilabel_loss(s, h, y, wp, wn, C, **kw, return_terms=True)[1]["con"])
    torch.testing.assert_close(HybridMultiLabelLoss()(s, h, y), hybrid_multilabel_loss(s, h, y))
    assert "corr_mode='pairwise'" in repr(HybridMultiLabelLoss())


@pytest.mark.parametrize("mode", ["pairwise", "batch_corr", "lca"])
def test_hybrid_gradcheck(mode):
    s, h, y, wp, wn, C = _data(B=6, L=4, D=3)
    xs, xh = s.clone().requires_grad_(), h.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: hybrid_multilabel_loss(a, b, y, wp, wn, C, 0.5, 0.5, corr_mode=mode), (xs, xh))


@pytest.mark.parametrize("kw,match", [
    (dict(emb=torch.zeros(11, 8, dtype=torch.float64)), r"^emb:"),
    (dict(emb=torch.zeros(12, 8, dtype=torch.long)), r"^emb:"),
    (dict(targets=torch.ones(12, 4)), r"^targets:"),
    (dict(w_pos=torch.ones(3, dtype=torch.float64)), r"^w_pos:"),
    (dict(w_neg=-torch.ones(5, dtype=torch.float64)), r"^w_neg:"),
    (dict(C=torch.zeros(5, 4, dtype=torch.float64)), r"^C:"),
    (dict(lambda_corr=-0.1), r"^lambda_corr:"),
    (dict(lambda_con=float("nan")), r"^lambda_con:"),
    (dict(temperature=-1.0), r"^temperature:"),
    (dict(corr_mode="x"), r"^corr_mode:"),
    (dict(weighting="x"), r"^weighting:"),
])
def test_hybrid_bad_inputs(kw, match):
    s, h, y, wp, wn, C = _data()
    with pytest.raises(ValueError, match=match):
        hybrid_multilabel_loss(**(dict(logits=s, emb=h, targets=y, w_pos=wp, w_neg=wn, C=C) | kw))


@pytest.mark.parametrize("make,match", [
    (lambda: WeightedBCEWithLogitsLoss(reduction="avg"), r"^reduction:"),
    (lambda: MultiLabelSupConLoss(temperature=0.0), r"^temperature:"),
    (lambda: MultiLabelSupConLoss(weighting="cosine"), r"^weighting:"),
    (lambda: MultiLabelSupConLoss(reduction="avg"), r"^reduction:"),
    (lambda: LabelCorrelationLoss(torch.zeros(3)), r"^C:"),
    (lambda: HybridMultiLabelLoss(lambda_corr=-0.1), r"^lambda_corr:"),
    (lambda: HybridMultiLabelLoss(lambda_con=float("inf")), r"^lambda_con:"),
    (lambda: HybridMultiLabelLoss(temperature=0.0), r"^temperature:"),
    (lambda: HybridMultiLabelLoss(corr_mode="x"), r"^corr_mode:"),
    (lambda: HybridMultiLabelLoss(weighting="x"), r"^weighting:"),
])
def test_module_constructors_reject_bad_settings(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_hybrid_batch_corr_needs_two_samples():
    s, h, y, _, _, C = _data(B=1)
    with pytest.raises(ValueError, match=r"^logits:"):
        hybrid_multilabel_loss(s, h, y, C=C, corr_mode="batch_corr")


# ------------------------------------------------- DDP: the non-default modes (the battery checks the defaults)
def _ddp_worker(rank, world, which, mode, sizes):
    s, h, y, wp, wn, C = _data(B=sum(sizes), seed=3)
    rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
    s, h, y = s[rows].clone().requires_grad_(), h[rows].clone().requires_grad_(), y[rows]
    if which == "corr":
        v = label_correlation_loss(s, C, y, mode=mode, reduction="sum" if mode == "batch_corr" else "mean",
                                   gather_distributed=True)
    else:
        v = hybrid_multilabel_loss(s, h, y, wp, wn, C, 0.5, 0.5, corr_mode=mode, weighting="any_overlap",
                                   gather_distributed=True)
    v.backward()
    return v.detach(), s.grad / world, (None if h.grad is None else h.grad / world)


@pytest.mark.parametrize("which,mode", [("corr", "batch_corr"), ("corr", "lca"), ("hybrid", "batch_corr"), ("hybrid", "lca")])
def test_ddp_two_processes_equal_one_process(which, mode):
    sizes = (7, 4)
    s, h, y, wp, wn, C = _data(B=sum(sizes), seed=3)
    s, h = s.clone().requires_grad_(), h.clone().requires_grad_()
    if which == "corr":
        v = label_correlation_loss(s, C, y, mode=mode, reduction="sum" if mode == "batch_corr" else "mean")
    else:
        v = hybrid_multilabel_loss(s, h, y, wp, wn, C, 0.5, 0.5, corr_mode=mode, weighting="any_overlap")
    v.backward()
    for rank, (v_r, gs, gh) in enumerate(run_distributed(_ddp_worker, 2, (which, mode, sizes))):
        rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
        torch.testing.assert_close(v_r, v.detach(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gs, s.grad[rows], rtol=1e-9, atol=1e-12)
        if which == "hybrid":
            torch.testing.assert_close(gh, h.grad[rows], rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- tests asked for by mutation testing (issue #7)
def test_label_correlation_matrix_smallest_inputs():
    "N = 2 samples, the smallest legal: small standard deviations (den < 1) and labels that occur once."
    Y = torch.tensor([[1, 0, 1], [0, 1, 1]])
    C = label_correlation_matrix(Y)
    torch.testing.assert_close(C, torch.tensor([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    Y = torch.tensor([[1, 1, 0], [0, 0, 1]])
    C = label_correlation_matrix(Y, "cooccurrence")
    torch.testing.assert_close(C, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"^Y: expected at least 2 samples to estimate correlations, got 1$"):
        label_correlation_matrix(torch.ones(1, 3))


def test_label_weights_when_a_label_is_missing_from_one_sample():
    Y = torch.tensor([[1, 0], [1, 1], [0, 0]])  # label 0: n = 2 of N = 3, so N - n = 1
    w_pos, w_neg = label_weights(Y)
    torch.testing.assert_close(w_pos, torch.tensor([3 / 4, 3 / 2]))
    torch.testing.assert_close(w_neg, torch.tensor([3 / 2, 3 / 4]))


def test_weighted_bce_computes_in_the_logits_full_precision_dtype():
    s, _, y, _, _, _ = _ml_example(6)
    lb = (3 * s).bfloat16()
    out = weighted_bce_with_logits(lb, y, reduction="none")
    torch.testing.assert_close(out, weighted_bce_with_logits(lb.float(), y, reduction="none"), rtol=1e-6, atol=1e-7)
    w = torch.rand(s.shape[1], dtype=torch.float64) + 0.5
    out = weighted_bce_with_logits(s.float(), y, w_pos=w, w_neg=w, reduction="none")
    assert out.dtype == torch.float32  # float64 weights do not promote float32 logits


def test_modules_pin_and_pass_gather_distributed_and_zero_weights(monkeypatch):
    import lossbook.classification.hybrid_multilabel_loss as mod
    s, h, y, _, _, C = _ml_example(6)
    seen, real = [], mod.ddp_active
    monkeypatch.setattr(mod, "ddp_active", lambda g: seen.append(g) or real(g))
    for make, call in ((lambda **k: LabelCorrelationLoss(C, **k), lambda m: m(s)),
                       (lambda **k: HybridMultiLabelLoss(C=C, **k), lambda m: m(s, h, y))):
        for kw, want in (({}, False), ({"gather_distributed": True}, True)):
            m = make(**kw)
            assert m.gather_distributed is want
            seen.clear()
            call(m)
            assert seen and all(g is want for g in seen)
    with pytest.raises(ValueError, match=r"^C: expected a floating-point tensor"):
        LabelCorrelationLoss(C.long())
    assert LabelCorrelationLoss(torch.zeros(0, 0))(torch.zeros(3, 0)).item() == 0.0  # no labels: an empty C is legal
    # both weights 0 are legal in the module: the plain weighted BCE
    m = HybridMultiLabelLoss(lambda_corr=0.0, lambda_con=0.0)
    torch.testing.assert_close(m(s, h, y), weighted_bce_with_logits(s, y), rtol=1e-14, atol=0)


def test_label_correlation_loss_dtypes_names_defaults_and_gather(monkeypatch):
    import lossbook.classification.hybrid_multilabel_loss as mod
    s, _, y, _, _, C = _ml_example(6)
    with pytest.raises(ValueError, match=r"^logits: expected 2 dimensions"):
        label_correlation_loss(s[0], C)
    with pytest.raises(ValueError, match=r"^targets: mode 'lca' needs the targets \(B, L\)$"):
        label_correlation_loss(s, C, mode="lca")
    # the compute dtype is the promotion of logits and C; bf16 logits are computed in float32
    assert label_correlation_loss(s, C.float()).dtype == torch.float64
    assert label_correlation_loss(s.float(), C).dtype == torch.float64
    lb = (3 * s).bfloat16()
    torch.testing.assert_close(label_correlation_loss(lb, C.float(), reduction="none"),
                               label_correlation_loss(lb.float(), C.float(), reduction="none"), rtol=1e-6, atol=1e-7)
    # 'lca' with one positive and one negative: a single pair, exp(p_neg - p_pos)
    s2 = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    got = label_correlation_loss(s2, torch.zeros(2, 2, dtype=torch.float64), torch.tensor([[1, 0]]), mode="lca",
                                 reduction="none")
    torch.testing.assert_close(got, torch.exp(torch.sigmoid(s2[:, 1]) - torch.sigmoid(s2[:, 0])))
    # gather_distributed defaults to False; outside DDP 'batch_corr' never gathers
    seen, calls, real = [], [], mod.ddp_active
    monkeypatch.setattr(mod, "ddp_active", lambda g: seen.append(g) or real(g))
    monkeypatch.setattr(mod, "gather", lambda t: calls.append(tuple(t.shape)) or t)
    label_correlation_loss(s, C)
    assert seen == [False]
    label_correlation_loss(s, C, mode="batch_corr")
    assert calls == []


def test_lca_accepts_bool_and_float_targets():
    s, h, y, _, _, C = _ml_example(6)
    want = label_correlation_loss(s, C, y, mode="lca", reduction="none")
    torch.testing.assert_close(want, _lca_loop(s, y), rtol=1e-10, atol=1e-12)
    for t in (y.bool(), y.float()):
        torch.testing.assert_close(label_correlation_loss(s, C, t, mode="lca", reduction="none"), want, rtol=0, atol=0)
        torch.testing.assert_close(hybrid_multilabel_loss(s, h, t, corr_mode="lca"),
                                   hybrid_multilabel_loss(s, h, y, corr_mode="lca"), rtol=0, atol=0)


def test_batch_corr_two_samples_is_the_smallest_batch():
    s, h, y, _, _, C = _ml_example(6)
    got = label_correlation_loss(s[:2], C, mode="batch_corr")
    assert got.item() == pytest.approx(_batch_corr_ref(s[:2], C), rel=1e-9)
    t = hybrid_multilabel_loss(s[:2], h[:2], y[:2], C=C, corr_mode="batch_corr", return_terms=True)[1]["corr"]
    torch.testing.assert_close(t, got, rtol=0, atol=0)
    msg = r"^logits: {} 'batch_corr' needs at least 2 samples in the \(global\) batch, got 1$"
    with pytest.raises(ValueError, match=msg.format("mode")):
        label_correlation_loss(s[:1], C, mode="batch_corr")
    with pytest.raises(ValueError, match=msg.format("corr_mode")):
        hybrid_multilabel_loss(s[:1], h[:1], y[:1], C=C, corr_mode="batch_corr")


def test_supcon_emb_checked_first_by_name():
    _, h, y, _, _, _ = _ml_example(6)
    with pytest.raises(ValueError, match=r"^emb: expected 2 dimensions"):
        multilabel_supcon_loss(h[:, 0], y)
    with pytest.raises(ValueError, match=r"^emb: expected a floating-point tensor"):
        multilabel_supcon_loss(h.long(), y)


def test_counts_are_not_summed_over_ranks_without_gather_distributed(monkeypatch):
    "Under DDP without gather_distributed each rank is a plain local loss: all_sum must get active=False."
    import lossbook.classification.hybrid_multilabel_loss as mod
    s, h, y, wp, wn, C = _ml_example(6)
    calls = (lambda: label_correlation_loss(s, C),
             lambda: label_correlation_loss(s, C, y, mode="lca"),
             lambda: multilabel_supcon_loss(h, y),
             lambda: hybrid_multilabel_loss(s, h, y, wp, wn, C),
             lambda: hybrid_multilabel_loss(s, h, y, corr_mode="lca"))
    want = [f() for f in calls]

    def all_sum(x, active=True):  # as if a second rank held as many samples
        x = x.detach().clone()
        return 2 * x if active else x
    monkeypatch.setattr(mod, "all_sum", all_sum)
    for f, w in zip(calls, want):
        torch.testing.assert_close(f(), w, rtol=0, atol=0)


def test_supcon_computes_in_the_embeddings_full_precision_dtype():
    _, h, y, _, _, _ = _ml_example(6)
    hb = (3 * h).bfloat16()
    got = multilabel_supcon_loss(hb, y, reduction="none")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, multilabel_supcon_loss(hb.float(), y, reduction="none"), rtol=1e-6, atol=1e-7)


def test_hybrid_logits_and_emb_must_be_matrices():
    s, h, y, _, _, _ = _ml_example(6)
    with pytest.raises(ValueError, match=r"^logits: expected 2 dimensions"):
        hybrid_multilabel_loss(s[:, 0], h, y)
    with pytest.raises(ValueError, match=r"^logits: expected 2 dimensions"):
        hybrid_multilabel_loss(s[:, :, None], h, y)
    with pytest.raises(ValueError, match=r"^emb: expected 2 dimensions"):
        hybrid_multilabel_loss(s, h[:, 0], y)
    with pytest.raises(ValueError, match=r"^emb: expected 2 dimensions"):
        hybrid_multilabel_loss(s, h[:, :, None], y)


def test_hybrid_computes_in_the_promoted_full_precision_dtype():
    s, h, y, wp, wn, C = _ml_example(6)
    for a, b in ((s, h.float()), (s.float(), h)):
        out = hybrid_multilabel_loss(a, b, y, wp, wn, C)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, hybrid_multilabel_loss(a.double(), b.double(), y, wp, wn, C), rtol=1e-6, atol=0)
    sb, hb = (3 * s).bfloat16(), (3 * h).bfloat16()
    for kw in (dict(C=C), dict(C=C, corr_mode="batch_corr"), dict(corr_mode="lca")):
        out, t = hybrid_multilabel_loss(sb, hb, y, wp, wn, return_terms=True, **kw)
        ref, tr = hybrid_multilabel_loss(sb.float(), hb.float(), y, wp, wn, return_terms=True, **kw)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-7)
        for k in ("bce", "corr", "con"):
            torch.testing.assert_close(t[k], tr[k], rtol=1e-6, atol=1e-7)


def test_hybrid_float64_constants_do_not_promote_float32_inputs():
    s, h, y, wp, wn, C = _ml_example(6)
    for kw in (dict(w_pos=wp), dict(w_neg=wn), dict(C=C), dict(C=C, corr_mode="batch_corr")):
        out, t = hybrid_multilabel_loss(s.float(), h.float(), y, return_terms=True, **kw)
        assert out.dtype == torch.float32 and all(v.dtype == torch.float32 for v in t.values()), kw


def test_hybrid_zero_weight_skips_its_term():
    "lambda = 0 leaves the term out (reported as 0), it is not computed and multiplied by 0."
    s, h, y, wp, wn, C = _ml_example(6)
    t = hybrid_multilabel_loss(s, h, y, wp, wn, C, lambda_corr=0.0, lambda_con=0.0, return_terms=True)[1]
    assert t["corr"].item() == 0 and t["con"].item() == 0
    t = hybrid_multilabel_loss(s, h, y, corr_mode="lca", lambda_corr=0.0, return_terms=True)[1]
    assert t["corr"].item() == 0 and t["con"].item() > 0
    # a single sample is legal when the batch-coupled correlation term is off
    v = hybrid_multilabel_loss(s[:1], h[:1], y[:1], C=C, corr_mode="batch_corr", lambda_corr=0.0, lambda_con=0.0)
    torch.testing.assert_close(v, weighted_bce_with_logits(s[:1], y[:1]), rtol=1e-14, atol=0)


def test_nothing_is_gathered_without_gather_distributed(monkeypatch):
    import lossbook.classification.hybrid_multilabel_loss as mod
    s, h, y, wp, wn, C = _ml_example(6)
    calls = []
    monkeypatch.setattr(mod, "gather", lambda t: calls.append("gather") or t)
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append("local_slice") or slice(0, n))
    label_correlation_loss(s, C, mode="batch_corr")
    multilabel_supcon_loss(h, y)
    for mode in ("pairwise", "batch_corr", "lca"):
        hybrid_multilabel_loss(s, h, y, wp, wn, C, corr_mode=mode)
    assert calls == []


def test_label_weight_vectors_checked_exactly():
    s, h, y, wp, wn, C = _ml_example(6)
    # floating weights only, zero weights legal (a label left out of one side), no labels legal
    for fn in (lambda **k: weighted_bce_with_logits(s, y, **k), lambda **k: hybrid_multilabel_loss(s, h, y, **k)):
        for name in ("w_pos", "w_neg"):
            with pytest.raises(ValueError, match=rf"^{name}: expected a floating-point tensor"):
                fn(**{name: torch.ones(5, dtype=torch.long)})
            with pytest.raises(ValueError, match=rf"^{name}: expected 1 dimensions"):
                fn(**{name: torch.ones(5, 1, dtype=torch.float64)})
    z = torch.zeros(5, dtype=torch.float64)
    torch.testing.assert_close(weighted_bce_with_logits(s, y, w_pos=z, reduction="none"),
                               (1 - y) * F.softplus(s), rtol=1e-14, atol=0)
    torch.testing.assert_close(weighted_bce_with_logits(s, y, w_neg=z, reduction="none"),
                               y * F.softplus(-s), rtol=1e-14, atol=0)
    e = torch.zeros(0, dtype=torch.float64)
    out = weighted_bce_with_logits(s[:, :0], y[:, :0], w_pos=e, w_neg=e, reduction="sum")
    assert out.item() == 0


def test_C_must_be_a_matrix():
    s, h, y, _, _, C = _ml_example(6)
    for bad in (C[0], C[None]):
        with pytest.raises(ValueError, match=r"^C: expected 2 dimensions"):
            label_correlation_loss(s, bad)
        with pytest.raises(ValueError, match=r"^C: expected 2 dimensions"):
            hybrid_multilabel_loss(s, h, y, C=bad)


def test_targets_must_be_a_matrix_named_targets():
    import re
    s, h, y, _, _, C = _ml_example(6)
    calls = (lambda t: weighted_bce_with_logits(s, t), lambda t: label_correlation_loss(s, C, t, mode="lca"),
             lambda t: label_correlation_loss(s, C, t), lambda t: multilabel_supcon_loss(h, t),
             lambda t: hybrid_multilabel_loss(s, h, t))
    for f in calls:
        for bad in (y[:, 0], y[:, :, None]):
            with pytest.raises(ValueError, match=r"^targets: expected 2 dimensions"):
                f(bad)
        bad = y[:4] if f is calls[3] else y[:, :4]  # supcon takes any number of labels, one row per embedding
        msg = f"targets: expected shape (6, 5) to match the input, got {tuple(bad.shape)}"
        with pytest.raises(ValueError, match="^" + re.escape(msg) + "$"):
            f(bad)
