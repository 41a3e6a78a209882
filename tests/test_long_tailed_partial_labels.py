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


# ---------------------------------------------------------------- tests asked for by mutation testing (issue #7)
def test_cooccurrence_matrix_and_attention_edges():
    with pytest.raises(ValueError, match=r"^labels: expected 2 dimensions"):
        cooccurrence_matrix(torch.tensor([1, 0, 1]))
    # a class seen once, alone: its column sums to 1 and is kept as is
    A = cooccurrence_matrix(torch.tensor([[1, 0], [0, 0]]))
    assert torch.equal(A, torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64))
    # a row whose attention sums to 0 gets 0 (not s / tiny), whatever the signs of the co-occurrence entries
    a = cooccurrence_attention(torch.tensor([[1, 0]]), torch.tensor([[1.0, -1.0], [0.0, 0.0]], dtype=torch.float64))
    assert torch.equal(a, torch.zeros(1, 2, dtype=torch.float64))


def test_asymmetric_loss_gradient_default_and_module_pass_through():
    x, y = _data()
    x = x.clone().requires_grad_(True)
    grads = {}
    for key, kw in (("default", {}), ("False", {"grad_through_focusing": False}), ("True", {"grad_through_focusing": True})):
        (grads[key],) = torch.autograd.grad(asymmetric_loss(x, y, gamma_pos=1.0, **kw), x)
    assert torch.equal(grads["default"], grads["False"]) and not torch.allclose(grads["True"], grads["False"])
    assert AsymmetricLoss().grad_through_focusing is False
    m = AsymmetricLoss(gamma_pos=1.0, grad_through_focusing=True)
    assert m.grad_through_focusing is True
    (gm,) = torch.autograd.grad(m(x, y), x)
    assert torch.equal(gm, grads["True"])


def test_losses_compute_in_the_logits_dtype():
    x, y = _data(8, 5)
    lb = (2 * x).bfloat16()
    for fn in (asymmetric_loss, multi_focal_modifier_loss):
        out = fn(lb, y, reduction="none")
        torch.testing.assert_close(out, fn(lb.float(), y, reduction="none"), rtol=1e-6, atol=1e-7)
        assert fn(x.float(), y.double(), reduction="none").dtype == torch.float32  # float64 targets do not promote
    A = cooccurrence_matrix(y)
    assert multi_focal_modifier_loss(x.float(), y, cooccurrence=A, reduction="none").dtype == torch.float32
    # the class weights take part in the full-precision dtype: float32 logits with float64 weights compute in float64
    w = class_prior_weights(torch.tensor([50.0, 20.0, 9.0, 4.0, 1.0], dtype=torch.float64))
    out = multi_focal_modifier_loss(x.float(), y, class_weights=w, reduction="none")
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, multi_focal_modifier_loss(x.float().double(), y, class_weights=w, reduction="none"),
                               rtol=1e-14, atol=0)
    # bf16 weights are cast to the compute dtype before gamma- + w_c is formed (no bf16 rounding of the exponent)
    wb = w.bfloat16()
    torch.testing.assert_close(multi_focal_modifier_loss(x.float(), y, class_weights=wb, reduction="none"),
                               multi_focal_modifier_loss(x.float(), y, class_weights=wb.float(), reduction="none"),
                               rtol=1e-6, atol=0)


def test_mfm_cooccurrence_checks_and_module_storage():
    x, y = _data(8, 5)
    A = cooccurrence_matrix(y)
    with pytest.raises(ValueError, match=r"^cooccurrence: expected 2 dimensions"):
        multi_focal_modifier_loss(x, y, cooccurrence=A[0])
    with pytest.raises(ValueError, match=r"^cooccurrence: expected a floating-point tensor"):
        multi_focal_modifier_loss(x, y, cooccurrence=(A > 0).long())
    assert multi_focal_modifier_loss(torch.zeros(2, 0), torch.zeros(2, 0), cooccurrence=torch.zeros(0, 0)).item() == 0.0
    m = MultiFocalModifierLoss()
    assert m.neg_boost == 1.2 and m.cooccurrence is None
    with pytest.raises(ValueError, match=r"^neg_boost: expected a finite number > 0"):
        MultiFocalModifierLoss(neg_boost=0.0)
    want = multi_focal_modifier_loss(x, y, cooccurrence=A, reduction="mean")
    assert torch.equal(MultiFocalModifierLoss(cooccurrence=A, reduction="mean")(x, y), want)  # stored
    assert torch.equal(MultiFocalModifierLoss(reduction="mean")(x, y, cooccurrence=A), want)  # passed
    B = cooccurrence_matrix(1 - y)
    assert torch.equal(MultiFocalModifierLoss(cooccurrence=A, reduction="mean")(x, y, cooccurrence=B),
                       multi_focal_modifier_loss(x, y, cooccurrence=B, reduction="mean"))  # passed wins
    assert not torch.equal(want, multi_focal_modifier_loss(x, y, reduction="mean"))


def test_reflective_label_correction_defaults_and_ddp_flag(monkeypatch):
    import lossbook.classification.long_tailed_partial_labels as mod
    x, y = _data(10, 5, scale=4.0)
    assert torch.equal(reflective_label_correction(x, y), reflective_label_correction(x, y, 0.7, 1.0))
    # one class: two observed positives at logit 3, a negative at 1.5 (p = 0.82 > tau): the margin moves the batch mean
    # p' = (2 sigmoid(3 - mu) + 0.82) / 3 across it (mu = 1: 0.86, not recalled; mu = 2: 0.76, recalled)
    xs, ys = torch.tensor([[3.0], [3.0], [1.5]], dtype=torch.float64), torch.tensor([[1], [1], [0]])
    assert torch.equal(reflective_label_correction(xs, ys), ys)
    assert torch.equal(reflective_label_correction(xs, ys, margin=2.0), torch.ones_like(ys))
    flags, real = [], mod.all_sum
    monkeypatch.setattr(mod, "all_sum", lambda t, active=True: flags.append(active) or real(t, active))
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    reflective_label_correction(x, y)
    assert flags and all(f is False for f in flags)
    flags.clear()
    reflective_label_correction(x, y, gather_distributed=True)
    assert flags and all(f is True for f in flags)
    with pytest.raises(ValueError, match=r"^exponent: expected a finite number > 0"):
        RLCLoss(exponent=0.0)


def test_rlc_ties_zero_tau_and_dtypes():
    zeros = torch.zeros(3, 1, dtype=torch.long)
    # p' = sigmoid(0) = 0.5 exactly at tau = 0.5: strictly above tau is needed (not recalled)
    x = torch.tensor([[0.0], [-5.0], [-5.0]], dtype=torch.float64)
    assert torch.equal(reflective_label_correction(x, zeros, tau=0.5), zeros)
    # every p' equal to the batch mean: strictly above the mean is needed (not recalled)
    x = torch.full((3, 1), 2.0, dtype=torch.float64)
    assert torch.equal(reflective_label_correction(x, zeros), zeros)
    # tau = 0 is legal (every p' > 0 passes the threshold; the batch mean decides)
    x = torch.tensor([[1.0], [-1.0], [-2.0]], dtype=torch.float64)
    assert torch.equal(reflective_label_correction(x, zeros, tau=0.0), torch.tensor([[1], [0], [0]]))
    xs, ys = _data(8, 5)
    counts = torch.tensor([40.0, 20.0, 10.0, 5.0, 2.0])
    assert rlc_loss(xs.float(), ys.double(), counts, reduction="none").dtype == torch.float32
    lb = (2 * xs).bfloat16()
    torch.testing.assert_close(rlc_loss(lb, ys, counts.float(), reduction="none"),
                               rlc_loss(lb.float(), ys, counts.float(), reduction="none"), rtol=1e-6, atol=1e-7)


def test_rlc_loss_passes_the_ddp_flag_to_every_cross_rank_sum(monkeypatch):
    import lossbook.classification.long_tailed_partial_labels as mod
    x, y = _data(8, 5, scale=4.0)
    counts = torch.tensor([40.0, 20.0, 10.0, 5.0, 2.0])
    flags, real = [], mod.all_sum
    monkeypatch.setattr(mod, "all_sum", lambda t, active=True: flags.append(active) or real(t, active))
    real_sum = mod.sum_over_ranks
    monkeypatch.setattr(mod, "sum_over_ranks", lambda t, active=True: flags.append(active) or real_sum(t, active))
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    for reduction in ("sum", "mean"):
        flags.clear()
        rlc_loss(x, y, counts, reduction=reduction)
        assert len(flags) == 5 and all(f is False for f in flags)
        flags.clear()
        rlc_loss(x, y, counts, reduction=reduction, gather_distributed=True)
        assert len(flags) == 5 and all(f is True for f in flags)


def test_rlc_one_positive_divides_by_one_and_counts_take_the_logits_dtype():
    x = -5 * torch.ones(4, 3, dtype=torch.float64)
    y = torch.zeros(4, 3, dtype=torch.long)
    y[0, 0] = 1
    v = rlc_loss(x, y, torch.tensor([3, 2, 1]))
    torch.testing.assert_close(v, _ref_rlc(x.tolist(), y.tolist(), [3, 2, 1]))
    xs, ys = _data(8, 5)
    counts = torch.tensor([4136.0, 2886.0, 4002.0, 4589.0, 1362.0], dtype=torch.float64)  # w differs in float32 and float64
    assert torch.equal(rlc_loss(xs.float(), ys, counts, reduction="none"),
                       rlc_loss(xs.float(), ys, counts.float(), reduction="none"))


def test_class_prior_weights_smallest_inputs_dtype_and_targets_ndim():
    assert torch.equal(class_prior_weights(torch.tensor([5.0])), torch.tensor([1.0]))  # one class: weight 1
    assert class_prior_weights(torch.tensor([4.0, 2.0])).dtype == torch.float32  # a floating input keeps its dtype
    with pytest.raises(ValueError, match=r"^counts: expected at least 1 sample"):
        class_prior_weights(torch.tensor([]))
    with pytest.raises(ValueError, match=r"^targets: expected 2 dimensions"):
        asymmetric_loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))


def test_asl_gamma_one_everywhere_and_rlc_counts_shape_messages():
    x, y = _data()
    got = asymmetric_loss(x, y, gamma_pos=1.0, gamma_neg=1.0, reduction="none")
    torch.testing.assert_close(got, _ref_terms(x.tolist(), y.tolist(), None, 1.0, 1.0, 0.05, 1e-8), rtol=1e-10, atol=1e-12)
    xs, ys = _data(8, 5)
    counts = torch.tensor([40.0, 20.0, 10.0, 5.0, 2.0])
    with pytest.raises(ValueError, match=r"^counts: expected 1 dimensions"):
        rlc_loss(xs, ys, counts[:, None])
    with pytest.raises(ValueError, match=r"^counts: expected 5 entries \(one per class\)"):
        rlc_loss(xs, ys, counts[:0])


def test_mfm_class_weights_must_be_one_dimensional():
    # a (C, 1) weight has C entries along dim 0 but would broadcast (B, C) terms into a (C, C) sum without the ndim check
    x, y = _data(1, 6)
    with pytest.raises(ValueError, match=r"^class_weights:"):
        multi_focal_modifier_loss(x, y, torch.ones(6, 1, dtype=torch.float64))


def test_mfm_learnable_class_weights_get_no_gradient_through_the_exponent():
    # the exponent gamma- + w_c is detached like the focusing factor: dL/dw_c comes from the multiplier alone, i.e. the
    # per-element terms of class c divided by w_c (reduction 'sum')
    x, y = _data(8, 4, seed=5)
    w = class_prior_weights(torch.tensor([60, 25, 9, 3])).requires_grad_()
    multi_focal_modifier_loss(x, y, w).backward()
    terms = multi_focal_modifier_loss(x, y, w.detach(), reduction="none")
    torch.testing.assert_close(w.grad, (terms / w.detach()).sum(0))
