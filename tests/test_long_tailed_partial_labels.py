"""Tests for lossbook.classification.long_tailed_partial_labels (COMIC, Zhang et al. ICCV 2023, and the ASL baseline).

References: torch's binary cross-entropy, torchvision's sigmoid focal loss (values), scikit-learn's average precision,
and plain float64 loops transcribed from the official PriorFocalModifierLoss / ReflectiveLabelCorrectorLoss.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.classification.long_tailed_partial_labels import (
    AsymmetricLoss,
    MultiFocalModifierLoss,
    RLCLoss,
    asymmetric_loss,
    class_prior_weights,
    cooccurrence_attention,
    cooccurrence_matrix,
    multi_focal_modifier_loss,
    reflective_label_correction,
    rlc_loss,
)


def _data(B=12, C=6, seed=0, dtype=torch.float64, scale=2.0, rate=0.3):
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(B, C, generator=g, dtype=torch.float64)
    y = (torch.rand(B, C, generator=g, dtype=torch.float64) < rate).long()
    return x.to(dtype), y


def _sig(v):
    return 1 / (1 + math.exp(-v))


def _ref_terms(x, y, w, gp, gn, clip, eps, A=None, beta=1.2, class_adaptive=True):
    "A float64 loop over (k, c), transcribed from the official PriorFocalModifierLoss.forward."
    B, C = len(x), len(x[0])
    att = [[0.0] * C for _ in range(B)]
    if A is not None:
        for k in range(B):
            pos = [c for c in range(C) if y[k][c] == 1]
            if pos:
                s = [sum(A[c][j] for c in pos) / len(pos) for j in range(C)]
                t = sum(s)
                att[k] = [v / t for v in s] if t > 0 else [0.0] * C
    out = []
    for k in range(B):
        row = []
        for c in range(C):
            p = _sig(x[k][c])
            pp = p * (1 - att[k][c])
            pn = min(1.0, 1 - p + clip) if clip > 0 else 1 - p
            if att[k][c] != 0:
                pn = min(1.0, pn * beta)
            wc = 1.0 if w is None else w[c]
            lp = y[k][c] * math.log(max(pp, eps))
            ln = (1 - y[k][c]) * math.log(max(pn, eps))
            pt = pp if y[k][c] == 1 else pn
            g = gp if y[k][c] == 1 else gn + (wc if (w is not None and class_adaptive) else 0.0)
            row.append(-(lp + ln) * wc * (1 - pt) ** g)
        out.append(row)
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- class weights, co-occurrence
def test_class_prior_weights_formula_and_default_exponent():
    n = torch.tensor([400, 100, 25, 5])
    w = class_prior_weights(n)
    ref = torch.tensor([(1 - math.log(v / 400)) ** (1 / 3) for v in (400, 100, 25, 5)], dtype=torch.float64)
    torch.testing.assert_close(w, ref)
    assert float(w[0]) == 1.0 and bool((w[1:] > w[:-1]).all())
    torch.testing.assert_close(class_prior_weights(n, 1 / 6), ref.pow(0.5))


@pytest.mark.parametrize("bad,match", [(torch.tensor([3, 0, 1]), r"^counts:"), (torch.tensor([[1, 2]]), r"^counts:"),
                                       (torch.tensor([1.0, float("nan")]), r"^counts:")])
def test_class_prior_weights_bad_counts(bad, match):
    with pytest.raises(ValueError, match=match):
        class_prior_weights(bad)


def test_class_prior_weights_bad_exponent():
    with pytest.raises(ValueError, match=r"^exponent:"):
        class_prior_weights(torch.tensor([1, 2]), exponent=0)


def test_cooccurrence_matrix_and_attention():
    Y = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 0]])
    A = cooccurrence_matrix(Y)
    counts = (Y.T @ Y).double()
    torch.testing.assert_close(A[:, :3], counts[:, :3] / counts[:, :3].sum(0))
    assert bool((A[:, 3] == 0).all())  # a class never seen: a zero column, not NaN
    a = cooccurrence_attention(torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]), A)
    torch.testing.assert_close(a[0].sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(a[0], ((A[0] + A[1]) / 2) / ((A[0] + A[1]) / 2).sum())
    assert bool((a[1] == 0).all())
    with pytest.raises(ValueError, match=r"^labels:"):
        cooccurrence_matrix(torch.tensor([[2, 0]]))


# ---------------------------------------------------------------- ASL
def test_asl_defaults_match_loop():
    x, y = _data()
    got = asymmetric_loss(x, y, reduction="none")
    ref = _ref_terms(x.tolist(), y.tolist(), None, 0.0, 4.0, 0.05, 1e-8)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(asymmetric_loss(x, y), ref.sum(), rtol=1e-10, atol=1e-12)  # default reduction 'sum'


def test_asl_no_focus_no_clip_is_bce():
    x, y = _data()
    torch.testing.assert_close(asymmetric_loss(x, y, 0.0, 0.0, 0.0),
                               F.binary_cross_entropy_with_logits(x, y.double(), reduction="sum"), rtol=1e-9, atol=1e-9)


def test_asl_focal_equals_torchvision_in_value_and_grad_through_focusing():
    tv = pytest.importorskip("torchvision.ops")
    x, y = _data()
    ref = tv.sigmoid_focal_loss(x, y.double(), alpha=-1, gamma=2.0, reduction="sum")
    torch.testing.assert_close(asymmetric_loss(x, y, 2.0, 2.0, 0.0), ref, rtol=1e-9, atol=1e-9)
    # the gradient equals torchvision's only with grad_through_focusing=True
    x1, x2, x3 = (x.clone().requires_grad_() for _ in range(3))
    tv.sigmoid_focal_loss(x1, y.double(), alpha=-1, gamma=2.0, reduction="sum").backward()
    asymmetric_loss(x2, y, 2.0, 2.0, 0.0, grad_through_focusing=True).backward()
    asymmetric_loss(x3, y, 2.0, 2.0, 0.0).backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-8, atol=1e-10)
    assert not torch.allclose(x3.grad, x1.grad)


def test_asl_clip_zeroes_easy_negatives():
    x = torch.tensor([[-4.0, -2.0]], dtype=torch.float64)  # p = 0.018 <= 0.05, p = 0.12 > 0.05
    t = asymmetric_loss(x, torch.tensor([[0, 0]]), reduction="none")
    assert float(t[0, 0]) == 0.0 and float(t[0, 1]) > 0


def test_asl_reductions_and_module():
    x, y = _data()
    none = asymmetric_loss(x, y, reduction="none")
    assert none.shape == x.shape
    torch.testing.assert_close(asymmetric_loss(x, y, reduction="mean"), none.mean())
    torch.testing.assert_close(AsymmetricLoss()(x, y), asymmetric_loss(x, y))
    torch.testing.assert_close(AsymmetricLoss(1.0, 2.0, 0.1, reduction="mean")(x, y),
                               asymmetric_loss(x, y, 1.0, 2.0, 0.1, reduction="mean"))


# ---------------------------------------------------------------- MFM
def test_mfm_defaults_match_official_loop():
    x, y = _data()
    w = class_prior_weights(torch.tensor([500, 200, 80, 30, 10, 4]))
    A = cooccurrence_matrix(_data(40, 6, seed=3, rate=0.4)[1])
    got = multi_focal_modifier_loss(x, y, w, cooccurrence=A, reduction="none")
    ref = _ref_terms(x.tolist(), y.tolist(), w.tolist(), 0.0, 3.0, 0.05, 1e-8, A.tolist(), 1.2)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(multi_focal_modifier_loss(x, y, w, cooccurrence=A), ref.sum(), rtol=1e-10, atol=1e-12)


def test_mfm_without_cooccurrence_matches_loop_and_neg_boost_only_with_it():
    x, y = _data(seed=1)
    w = class_prior_weights(torch.tensor([500, 200, 80, 30, 10, 4]))
    ref = _ref_terms(x.tolist(), y.tolist(), w.tolist(), 0.0, 3.0, 0.05, 1e-8)
    torch.testing.assert_close(multi_focal_modifier_loss(x, y, w, reduction="none"), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(multi_focal_modifier_loss(x, y, w, neg_boost=2.0), ref.sum(), rtol=1e-10, atol=1e-12)
    A = cooccurrence_matrix(_data(40, 6, seed=3, rate=0.4)[1])
    assert not torch.isclose(multi_focal_modifier_loss(x, y, w, cooccurrence=A, neg_boost=2.0),
                             multi_focal_modifier_loss(x, y, w, cooccurrence=A))


@pytest.mark.parametrize("gp,gn,clip,eps", [(1.0, 2.0, 0.0, 1e-8), (0.5, 4.0, 0.2, 1e-6)])
def test_mfm_hyperparameters_match_loop(gp, gn, clip, eps):
    x, y = _data(seed=2)
    w = class_prior_weights(torch.tensor([500, 200, 80, 30, 10, 4]))
    ref = _ref_terms(x.tolist(), y.tolist(), w.tolist(), gp, gn, clip, eps)
    torch.testing.assert_close(multi_focal_modifier_loss(x, y, w, gp, gn, clip, eps=eps, reduction="none"), ref,
                               rtol=1e-10, atol=1e-12)


def test_mfm_no_weights_is_asl_and_bce_limit():
    x, y = _data()
    torch.testing.assert_close(multi_focal_modifier_loss(x, y), asymmetric_loss(x, y, gamma_neg=3.0))
    torch.testing.assert_close(multi_focal_modifier_loss(x, y, None, 0.0, 0.0, 0.0),
                               F.binary_cross_entropy_with_logits(x, y.double(), reduction="sum"), rtol=1e-9, atol=1e-9)


def test_mfm_weights_ones_keep_an_adaptive_exponent():
    x, y = _data()
    ones = torch.ones(6, dtype=torch.float64)
    # w = 1 still adds 1 to the negative exponent (gamma- + w_c), unlike class_weights=None
    torch.testing.assert_close(multi_focal_modifier_loss(x, y, ones), asymmetric_loss(x, y, gamma_neg=4.0))


def test_mfm_reductions_module_and_gradcheck():
    x, y = _data(6, 4)
    w = class_prior_weights(torch.tensor([50, 20, 8, 3]))
    none = multi_focal_modifier_loss(x, y, w, reduction="none")
    torch.testing.assert_close(multi_focal_modifier_loss(x, y, w, reduction="mean"), none.mean())
    torch.testing.assert_close(MultiFocalModifierLoss(w)(x, y), multi_focal_modifier_loss(x, y, w))
    torch.testing.assert_close(MultiFocalModifierLoss()(x, y, w), multi_focal_modifier_loss(x, y, w))
    # gradcheck where no focusing factor is involved (gamma = 0, no class-adaptive exponent); the detached focusing
    # factor itself is checked by test_mfm_focusing_is_detached
    A = cooccurrence_matrix(_data(40, 4, seed=3, rate=0.4)[1])
    xr = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: multi_focal_modifier_loss(v, y, None, 0.0, 0.0, cooccurrence=A), (xr,))


def test_mfm_focusing_is_detached():
    x, y = _data(4, 3)
    w = class_prior_weights(torch.tensor([50, 20, 8]))
    xr = x.clone().requires_grad_()
    multi_focal_modifier_loss(xr, y, w, clip=0.0).backward()
    # gradient of -sum w [y log p * 1 + (1-y) log(1-p) * const]: d/dx log(1-p) = -p
    p = torch.sigmoid(x)
    focus = (p ** (3.0 + w)) * (1 - y)
    expected = -(w * (y * (1 - p) + (1 - y) * (-p) * focus))
    torch.testing.assert_close(xr.grad, expected)


# ---------------------------------------------------------------- RLC
def _ref_rlc(x, y, counts, tau=0.7, margin=1.0, gp=0.0, gn=3.0, clip=0.05, rho=1 / 6, eps=1e-8):
    "Official ReflectiveLabelCorrectorLoss.forward (from compute_epoch on), as a float64 loop; B = actual batch."
    B, C = len(x), len(x[0])
    p = [[_sig(x[k][c] - margin * y[k][c]) for c in range(C)] for k in range(B)]
    mean = [sum(p[k][c] for k in range(B)) / B for c in range(C)]
    yh = [[1 if (p[k][c] > tau and p[k][c] > mean[c]) else y[k][c] for c in range(C)] for k in range(B)]
    n = [counts[c] + sum(yh[k][c] - y[k][c] for k in range(B)) for c in range(C)]
    w = [(1 - math.log(v / max(n))) ** rho for v in n]
    npos = max(1, sum(map(sum, yh)))
    total = 0.0
    for k in range(B):
        for c in range(C):
            pn = min(1.0, 1 - p[k][c] + clip)
            l = yh[k][c] * math.log(max(p[k][c], eps)) + (1 - yh[k][c]) * math.log(max(pn, eps))
            pt = p[k][c] if yh[k][c] == 1 else pn
            g = gp if yh[k][c] == 1 else gn + w[c]
            total += -l * w[c] * (1 - pt) ** g * (B / npos)
    return torch.tensor(total, dtype=torch.float64)


def test_rlc_defaults_match_official_loop():
    x, y = _data(16, 6, scale=3.0)
    counts = torch.tensor([500, 200, 80, 30, 10, 4])
    torch.testing.assert_close(rlc_loss(x, y, counts), _ref_rlc(x.tolist(), y.tolist(), counts.tolist()),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(tau=0.5), dict(margin=0.0), dict(gamma_pos=1.0, gamma_neg=2.0),
                                dict(clip=0.0), dict(exponent=1 / 3), dict(eps=1e-4)])
def test_rlc_hyperparameters_match_loop(kw):
    x, y = _data(16, 6, seed=4, scale=3.0)
    counts = torch.tensor([500, 200, 80, 30, 10, 4])
    ref_kw = {"tau": "tau", "margin": "margin", "gamma_pos": "gp", "gamma_neg": "gn", "clip": "clip",
              "exponent": "rho", "eps": "eps"}
    torch.testing.assert_close(rlc_loss(x, y, counts, **kw),
                               _ref_rlc(x.tolist(), y.tolist(), counts.tolist(), **{ref_kw[k]: v for k, v in kw.items()}),
                               rtol=1e-10, atol=1e-12)


def test_rlc_correction_properties():
    x, y = _data(32, 6, seed=5, scale=3.0)
    yh = reflective_label_correction(x, y)
    assert yh.dtype == y.dtype and bool((yh >= y).all())  # never removes an observed positive
    p = torch.sigmoid(x - 1.0 * y)
    added = (yh == 1) & (y == 0)
    assert bool(added.any())
    assert bool((p[added] > 0.7).all()) and bool((p > p.mean(0))[added].all())
    # every candidate above both thresholds is added
    assert bool((yh[(p > 0.7) & (p > p.mean(0))] == 1).all())
    assert torch.equal(reflective_label_correction(x, y, tau=1.0), y)
    assert torch.equal(reflective_label_correction(x, y, tau=5.0), y)
    # margin 0 adds at least as many labels as the default margin 1 on the same logits (positives are kept anyway)
    assert int(reflective_label_correction(x, y, margin=0.0).sum()) >= int(yh.sum())


def test_rlc_margin_makes_positives_harder():
    x, _ = _data(8, 4, seed=6)
    y = torch.ones(8, 4, dtype=torch.long)
    c = torch.tensor([40, 20, 10, 5])
    vals = [float(rlc_loss(x, y, c, margin=m)) for m in (0.0, 0.5, 1.0, 2.0)]
    assert vals == sorted(vals) and vals[0] < vals[-1]


def test_rlc_reductions_module():
    x, y = _data(10, 6, seed=7, scale=3.0)
    c = torch.tensor([500, 200, 80, 30, 10, 4])
    none = rlc_loss(x, y, c, reduction="none")
    assert none.shape == x.shape
    torch.testing.assert_close(rlc_loss(x, y, c, reduction="sum"), none.sum())
    torch.testing.assert_close(rlc_loss(x, y, c, reduction="mean"), none.mean())
    torch.testing.assert_close(RLCLoss()(x, y, c), rlc_loss(x, y, c))
    torch.testing.assert_close(RLCLoss(tau=0.5, margin=0.5, reduction="mean")(x, y, c),
                               rlc_loss(x, y, c, tau=0.5, margin=0.5, reduction="mean"))


def test_rlc_no_positives_divides_by_one():
    x = -5 * torch.ones(4, 3, dtype=torch.float64)
    y = torch.zeros(4, 3, dtype=torch.long)
    v = rlc_loss(x, y, torch.tensor([3, 2, 1]))
    assert torch.isfinite(v)
    torch.testing.assert_close(v, _ref_rlc(x.tolist(), y.tolist(), [3, 2, 1]))


def test_rlc_gradient_with_detached_focusing():
    x, y = _data(6, 4, seed=8, scale=3.0)
    c = torch.tensor([50, 20, 8, 3])
    xr = x.clone().requires_grad_()
    rlc_loss(xr, y, c, tau=1.0, clip=0.0).backward()  # tau = 1: no correction, y_hat = y
    p = torch.sigmoid(x - y)
    w = class_prior_weights(c, 1 / 6)
    norm = x.shape[0] / y.sum()
    expected = -norm * w * (y * (1 - p) + (1 - y) * (-p) * p ** (3.0 + w))
    torch.testing.assert_close(xr.grad, expected)


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("fn", [asymmetric_loss, multi_focal_modifier_loss])
def test_bad_logits_targets(fn):
    x, y = _data()
    with pytest.raises(ValueError, match=r"^logits:"):
        fn(x.long(), y)
    with pytest.raises(ValueError, match=r"^logits:"):
        fn(x[:, 0], y)
    with pytest.raises(ValueError, match=r"^logits:"):
        fn(x[:0], y[:0])
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^logits:"):
        fn(bad, y)
    with pytest.raises(ValueError, match=r"^targets:"):
        fn(x, y[:-1])
    with pytest.raises(ValueError, match=r"^targets:"):
        fn(x, 2 * y + 1)
    with pytest.raises(ValueError, match=r"^targets:"):
        fn(x, y.double().fill_(float("nan")))


@pytest.mark.parametrize("kw,match", [(dict(gamma_pos=-1), r"^gamma_pos:"), (dict(gamma_neg=-1), r"^gamma_neg:"),
                                      (dict(clip=-0.1), r"^clip:"), (dict(clip=1.0), r"^clip:"), (dict(eps=0), r"^eps:"),
                                      (dict(reduction="avg"), r"^reduction:")])
def test_bad_hyperparameters(kw, match):
    x, y = _data()
    c = torch.tensor([6, 5, 4, 3, 2, 1])
    with pytest.raises(ValueError, match=match):
        asymmetric_loss(x, y, **kw)
    with pytest.raises(ValueError, match=match):
        multi_focal_modifier_loss(x, y, **kw)
    with pytest.raises(ValueError, match=match):
        rlc_loss(x, y, c, **kw)


def test_mfm_bad_weights_cooccurrence_neg_boost():
    x, y = _data()
    with pytest.raises(ValueError, match=r"^class_weights:"):
        multi_focal_modifier_loss(x, y, torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^class_weights:"):
        multi_focal_modifier_loss(x, y, torch.ones(6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^class_weights:"):
        multi_focal_modifier_loss(x, y, torch.tensor([1.0, 1, 1, 1, 1, float("inf")], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^class_weights:"):
        multi_focal_modifier_loss(x, y, torch.tensor([1.0, 1, 1, 1, 1, 0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^cooccurrence:"):
        multi_focal_modifier_loss(x, y, cooccurrence=torch.ones(5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^cooccurrence:"):
        multi_focal_modifier_loss(x, y, cooccurrence=torch.full((6, 6), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^neg_boost:"):
        multi_focal_modifier_loss(x, y, neg_boost=0)


def test_rlc_bad_inputs():
    x, y = _data()
    c = torch.tensor([6, 5, 4, 3, 2, 1])
    with pytest.raises(ValueError, match=r"^counts:"):
        rlc_loss(x, y, c[:-1])
    with pytest.raises(ValueError, match=r"^counts:"):
        rlc_loss(x, y, torch.tensor([6, 5, 4, 3, 2, 0]))
    with pytest.raises(ValueError, match=r"^counts:"):
        rlc_loss(x, y, torch.tensor([6.0, 5, 4, 3, 2, float("nan")]))
    with pytest.raises(ValueError, match=r"^tau:"):
        rlc_loss(x, y, c, tau=-0.1)
    with pytest.raises(ValueError, match=r"^tau:"):
        reflective_label_correction(x, y, tau=float("nan"))
    with pytest.raises(ValueError, match=r"^margin:"):
        rlc_loss(x, y, c, margin=float("inf"))
    with pytest.raises(ValueError, match=r"^exponent:"):
        rlc_loss(x, y, c, exponent=0)
    with pytest.raises(ValueError, match=r"^logits:"):
        reflective_label_correction(x[:0], y[:0])


def test_sklearn_average_precision_agrees_with_core_map():
    skm = pytest.importorskip("sklearn.metrics")
    from lossbook.metrics import mean_average_precision
    x, y = _data(50, 6, seed=9, rate=0.4)
    assert abs(mean_average_precision(x, y) - skm.average_precision_score(y.numpy(), x.numpy(), average="macro")) < 1e-12


def test_asl_focal_setting_equals_the_focal_formula_without_torchvision():
    x, y = _data()
    yd = y.double()
    xr1, xr2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    p = torch.sigmoid(xr1)
    ref = -(yd * (1 - p) ** 2 * torch.log(p) + (1 - yd) * p ** 2 * torch.log(1 - p)).sum()
    got = asymmetric_loss(xr2, y, 2.0, 2.0, 0.0, grad_through_focusing=True)
    torch.testing.assert_close(got, ref)
    ref.backward()
    got.backward()
    torch.testing.assert_close(xr2.grad, xr1.grad)
