"""Tests for lossbook.ssl.conr_imbalanced_regression (Keramati et al. 2024, ConR).

There is no PyPI implementation: the references are (a) a float64 loop over anchors transcribed from the equations
(tests/references.py, also used by the shared battery), clean and official-denominator modes, and (b) a transcription
of the official `agedb-dir/loss.py::ConR` for the quirk mode; plus the card's properties. The 2-process DDP
equivalence is checked by tests/test_battery.py.
"""
import math

import pytest
import torch
from references import conr_ref

from lossbook.ssl.conr_imbalanced_regression import ConR, _conr_example, conr_loss, lds_weights, shot_metrics


def _batch(n=10, d=6, seed=0, dtype=torch.float64, k=None):
    "Two views of n/2 items (every anchor has its own view as a positive), labels in [0, 5), predictions close."
    g = torch.Generator().manual_seed(seed)
    half = n // 2
    shape = (half,) if k is None else (half, k)
    y = 5 * torch.rand(shape, generator=g, dtype=torch.float64)
    y = torch.cat([y, y])
    p = 2.5 + 0.7 * torch.randn(y.shape, generator=g, dtype=torch.float64)
    f = torch.randn(n, d, generator=g, dtype=torch.float64)
    return f.to(dtype), y.to(dtype), p.to(dtype)


def official_conr(features, targets, preds, w=1, weights=1, e=0.01):
    "A transcription of the official function (targets, preds as (M, 1); weights a number or (M, 1)); tau = 0.07."
    t = 0.07
    q = torch.nn.functional.normalize(features, dim=1)
    k = torch.nn.functional.normalize(features, dim=1)
    l_k, l_q = targets.flatten()[None, :], targets
    p_k, p_q = preds.flatten()[None, :], preds
    l_dist, p_dist = torch.abs(l_q - l_k), torch.abs(p_q - p_k)
    pos_i = l_dist.le(w)
    neg_i = (~(l_dist.le(w))) * (p_dist.le(w))
    for i in range(pos_i.shape[0]):
        pos_i[i][i] = 0
    prod = torch.einsum("nc,kc->nk", [q, k]) / t
    pos = prod * pos_i
    neg = prod * neg_i
    pushing_w = weights * torch.exp(l_dist * e)
    neg_exp_dot = (pushing_w * (torch.exp(neg)) * neg_i).sum(1)
    no_neg_flag = (neg_i).sum(1).bool()
    denom = pos_i.sum(1)
    loss = ((-torch.log(torch.div(torch.exp(pos), (torch.exp(pos).sum(1) + neg_exp_dot).unsqueeze(-1))) * pos_i).sum(1)
            / denom)
    return (weights * (loss * no_neg_flag).unsqueeze(-1)).mean()


# --- references -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("quirk", [False, True])
def test_matches_loop_reference(seed, quirk):
    f, y, p = _batch(seed=seed)
    torch.testing.assert_close(conr_loss(f, y, p, official_quirk=quirk), conr_ref(f, y, p, official_quirk=quirk),
                               rtol=1e-10, atol=1e-12)


def test_matches_loop_with_weights_and_non_default_hyperparameters():
    f, y, p = _batch(n=12, seed=3)
    w = torch.linspace(0.2, 3.0, 12, dtype=torch.float64)
    for kw in [dict(omega=0.5, e=0.3, tau=0.5), dict(omega=2.0, e=0.0, tau=0.2, official_quirk=True)]:
        torch.testing.assert_close(conr_loss(f, y, p, w, **kw), conr_ref(f, y, p, w, **kw), rtol=1e-10, atol=1e-12)


def test_multidimensional_labels_use_l2_distance():
    f, y, p = _batch(n=12, seed=4, k=2)
    got = conr_loss(f, y, p, omega=1.5)
    torch.testing.assert_close(got, conr_ref(f, y, p, omega=1.5), rtol=1e-10, atol=1e-12)
    assert got > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_quirk_matches_official_transcription(seed):
    f, y, p = _batch(n=12, seed=seed)
    torch.testing.assert_close(conr_loss(f, y, p, official_quirk=True), official_conr(f, y[:, None], p[:, None]),
                               rtol=1e-10, atol=1e-12)
    w = torch.linspace(0.5, 2.0, 12, dtype=torch.float64)
    torch.testing.assert_close(conr_loss(f, y, p, w, official_quirk=True, e=0.05),
                               official_conr(f, y[:, None], p[:, None], weights=w[:, None], e=0.05),
                               rtol=1e-10, atol=1e-12)


def test_clean_form_is_below_official_form():
    f, y, p = _batch(seed=5)
    assert conr_loss(f, y, p) < conr_loss(f, y, p, official_quirk=True)


# --- defaults -------------------------------------------------------------------------------------------------------
def test_defaults():
    f, y, p = _batch(n=12, seed=6)
    ref = conr_loss(f, y, p, None, 1.0, 0.01, 0.07, False, "mean")
    torch.testing.assert_close(conr_loss(f, y, p), ref, rtol=0, atol=0)
    torch.testing.assert_close(conr_loss(f, y, p, torch.ones(12, dtype=torch.float64)), ref, rtol=0, atol=0)
    torch.testing.assert_close(ConR()(f, y, p), ref, rtol=0, atol=0)
    for kw in [dict(omega=1.2), dict(e=0.02), dict(tau=0.08), dict(official_quirk=True)]:
        assert not torch.allclose(conr_loss(f, y, p, **kw), ref), kw
        assert not torch.allclose(ConR(**kw)(f, y, p), ref), kw
    m = ConR()
    assert (m.omega, m.e, m.tau, m.official_quirk, m.reduction, m.gather_distributed) == (1.0, 0.01, 0.07, False,
                                                                                          "mean", False)
    assert "omega=1.0" in repr(m)


def test_module_equals_function_with_options():
    f, y, p = _batch(seed=7)
    w = torch.rand(10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ConR(0.7, 0.2, 0.3, True, "sum")(f, y, p, w),
                               conr_loss(f, y, p, w, 0.7, 0.2, 0.3, True, "sum"), rtol=0, atol=0)


# --- reductions -------------------------------------------------------------------------------------------------------
def test_reductions():
    f, y, p = _batch(n=12, seed=8)
    w = torch.linspace(0.5, 2.0, 12, dtype=torch.float64)
    none = conr_loss(f, y, p, w, reduction="none")
    assert none.shape == (12,)
    torch.testing.assert_close(conr_loss(f, y, p, w), none.sum() / 12)
    torch.testing.assert_close(conr_loss(f, y, p, w, reduction="sum"), none.sum())
    # 'none' holds w_i * l_i: halving one weight halves that anchor's term... and its pushing weights
    unweighted = conr_loss(f, y, p, reduction="none")
    assert not torch.allclose(none, unweighted)
    with pytest.raises(ValueError, match=r"^reduction:"):
        conr_loss(f, y, p, reduction="avg")


def test_anchors_without_negatives_count_in_the_mean():
    f = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0.0, 0.5, 3.0, 3.5], dtype=torch.float64)
    p = torch.tensor([0.0, 0.5, 0.0, 0.5], dtype=torch.float64)  # only anchors 0, 1 ... see below
    none = conr_loss(f, y, p, reduction="none")
    torch.testing.assert_close(conr_loss(f, y, p), none.sum() / 4)


# --- properties -------------------------------------------------------------------------------------------------------
def test_no_negatives_gives_zero_and_zero_gradient():
    f, y, _ = _batch(seed=9)
    f.requires_grad_()
    loss = conr_loss(f, y, 10 * y)  # predictions as far apart as 10x the labels: no incorrect proximity
    loss.backward()
    assert loss.item() == 0.0 and f.grad.abs().max().item() == 0.0


def test_no_positive_anchor_contributes_zero_without_nan():
    f = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y = torch.tensor([0.0, 5.0, 5.5], dtype=torch.float64)  # anchor 0 has no positive
    p = torch.zeros(3, dtype=torch.float64)
    none = conr_loss(f, y, p, reduction="none")
    assert none[0].item() == 0.0 and torch.isfinite(none).all() and none[1] > 0
    none.sum().backward()
    assert torch.isfinite(f.grad).all()


def test_e_zero_is_supcon_restricted_to_positives_and_negatives():
    f, y, p = _batch(n=10, seed=10)
    tau = 0.3
    z = torch.nn.functional.normalize(f, dim=1)
    s = z @ z.T / tau
    terms = []
    for i in range(10):
        P = [j for j in range(10) if j != i and abs(y[i] - y[j]) <= 1]
        N = [j for j in range(10) if abs(y[i] - y[j]) > 1 and abs(p[i] - p[j]) <= 1]
        if P and N:
            den = torch.logsumexp(s[i, P + N], 0)
            terms.append(sum(den - s[i, q] for q in P) / len(P))
        else:
            terms.append(torch.zeros((), dtype=torch.float64))
    torch.testing.assert_close(conr_loss(f, y, p, e=0.0, tau=tau), torch.stack(terms).mean(), rtol=1e-10, atol=1e-12)


def test_invariances():
    f, y, p = _batch(n=12, seed=11)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    base = conr_loss(f, y, p)
    torch.testing.assert_close(conr_loss(2.5 * f, y, p), base, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conr_loss(f[perm], y[perm], p[perm]), base, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conr_loss(f, y + 7.0, p + 7.0), base, rtol=1e-12, atol=1e-12)  # shift of labels and preds


def test_larger_pushing_weight_increases_the_loss():
    f, y, p = _batch(n=12, seed=12)
    vals = [conr_loss(f, y, p, e=e).item() for e in (0.0, 0.01, 0.1, 1.0)]
    assert all(a < b for a, b in zip(vals, vals[1:])), vals
    w1, w2 = torch.ones(12, dtype=torch.float64), 2 * torch.ones(12, dtype=torch.float64)
    assert conr_loss(f, y, p, w2, reduction="none").sum() > 2 * conr_loss(f, y, p, w1, reduction="none").sum()


def test_gradient_step_pushes_negatives_apart():
    f, y, p = _batch(n=12, seed=13)
    f.requires_grad_()
    conr_loss(f, y, p).backward()
    neg = (y[:, None] - y[None]).abs().gt(1) & (p[:, None] - p[None]).abs().le(1)

    def mean_neg_cos(x):
        z = torch.nn.functional.normalize(x, dim=1)
        return (z @ z.T)[neg].mean()

    assert mean_neg_cos(f.detach() - 0.01 * f.grad) < mean_neg_cos(f.detach())


def test_labels_preds_weights_get_zero_gradient():
    f, y, p = _batch(seed=14)
    y, p = y.clone().requires_grad_(), p.clone().requires_grad_()
    w = torch.ones(10, dtype=torch.float64, requires_grad=True)
    conr_loss(f.requires_grad_(), y, p, w).backward()
    for t in (y, p, w):
        assert t.grad is not None and t.grad.abs().max().item() == 0.0
    assert f.grad.abs().max() > 0


def test_gradcheck_features():
    f, y, p = _batch(n=8, d=4, seed=15)
    w = torch.linspace(0.5, 1.5, 8, dtype=torch.float64)
    for quirk in (False, True):
        assert torch.autograd.gradcheck(lambda x: conr_loss(x, y, p, w, e=0.1, official_quirk=quirk, reduction="none"),
                                        (f.clone().requires_grad_(),))


def test_float32_and_large_labels():
    f, y, p = _batch(seed=16)
    torch.testing.assert_close(conr_loss(f.float(), y.float(), p.float()).double(), conr_loss(f, y, p),
                               rtol=1e-5, atol=1e-6)
    big = conr_loss(f, 1e4 * y, 1e4 * p, omega=1e4, e=1.0)  # e |y_i - y_j| up to 5e4: no overflow (log domain)
    assert torch.isfinite(big)


def test_example_is_valid():
    (f, y, p), kw = _conr_example(11)
    assert f.shape == (11, 8) and y.shape == (11,) and p.shape == (11,) and kw == {}
    assert conr_loss(f, y, p) > 0


# --- bad inputs -------------------------------------------------------------------------------------------------------
def test_bad_inputs():
    f, y, p = _batch()
    bad = f.clone()
    bad[0, 0] = float("nan")
    cases = [
        (lambda: conr_loss(bad, y, p), r"^features:"),
        (lambda: conr_loss(f, y.clone().fill_(float("inf")), p), r"^labels:"),
        (lambda: conr_loss(f, y, p.clone().fill_(float("nan"))), r"^preds:"),
        (lambda: conr_loss(f, y.long(), p), r"^labels:"),
        (lambda: conr_loss(f, y, p.long()), r"^preds:"),
        (lambda: conr_loss(f[:, 0], y, p), r"^features:"),
        (lambda: conr_loss(f, y[:-1], p[:-1]), r"^labels:"),
        (lambda: conr_loss(f, y, p[:-1]), r"^preds:"),
        (lambda: conr_loss(f, y[:, None, None].expand(10, 1, 1), p[:, None, None].expand(10, 1, 1)), r"^labels:"),
        (lambda: conr_loss(f, y, p, torch.ones(9, dtype=torch.float64)), r"^weights:"),
        (lambda: conr_loss(f, y, p, -torch.ones(10, dtype=torch.float64)), r"^weights:"),
        (lambda: conr_loss(f, y, p, torch.full((10,), float("nan"), dtype=torch.float64)), r"^weights:"),
        (lambda: conr_loss(f[:0], y[:0], p[:0]), r"^features:"),
        (lambda: conr_loss(f[:1], y[:1], p[:1]), r"^features: ConR needs at least 2"),
        (lambda: conr_loss(f, y, p, omega=-1.0), r"^omega:"),
        (lambda: conr_loss(f, y, p, e=-0.1), r"^e:"),
        (lambda: conr_loss(f, y, p, tau=0.0), r"^tau:"),
        (lambda: ConR(tau=0.0), r"^tau:"),
        (lambda: ConR(omega=-1.0), r"^omega:"),
        (lambda: ConR(e=-1.0), r"^e:"),
        (lambda: ConR(reduction="avg"), r"^reduction:"),
    ]
    for fn, word in cases:
        with pytest.raises(ValueError, match=word):
            fn()


def test_omega_and_e_zero_allowed():
    f, y, p = _batch()
    assert torch.isfinite(conr_loss(f, y, p, omega=0.0, e=0.0))


# --- LDS weights --------------------------------------------------------------------------------------------------------
def _labels():
    return torch.tensor([0.1, 0.2, 0.3, 0.4, 1.2, 1.3, 3.5, 9.9], dtype=torch.float64)


def test_lds_no_smoothing_is_inverse_density():
    y = _labels()  # bins of width 0.98 over [0.1, 9.9]: counts 4 | 2 | 1 | 1 (bin 0, 1, 3, 9)
    inv = lds_weights(y, bins=10, ks=1, reweight="inverse")
    expect = torch.tensor([1 / 4] * 4 + [1 / 2] * 2 + [1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(inv, expect / expect.mean())
    sq = lds_weights(y, bins=10, ks=1)
    expect = torch.tensor([1 / 2] * 4 + [1 / math.sqrt(2)] * 2 + [1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(sq, expect / expect.mean())


@pytest.mark.parametrize("kernel", ["gaussian", "triang", "laplace"])
def test_lds_smoothing_by_hand(kernel):
    y = _labels()
    counts = [4, 2, 0, 1, 0, 0, 0, 0, 0, 1]
    half, sigma = 2, 2.0
    x = range(-half, half + 1)
    win = {"gaussian": [math.exp(-v * v / (2 * sigma**2)) for v in x], "triang": [1 - abs(v) / (half + 1) for v in x],
           "laplace": [math.exp(-abs(v) / sigma) for v in x]}[kernel]
    win = [v / max(win) for v in win]
    sm = [sum(win[k + half] * math.sqrt(counts[b + k]) for k in x if 0 <= b + k < 10) for b in range(10)]
    idx = [0, 0, 0, 0, 1, 1, 3, 9]
    w = torch.tensor([1 / sm[b] for b in idx], dtype=torch.float64)
    torch.testing.assert_close(lds_weights(y, 10, kernel=kernel), w / w.mean())
    if kernel == "gaussian":
        torch.testing.assert_close(lds_weights(y, 10), w / w.mean())  # the defaults: gaussian, ks 5, sigma 2, sqrt_inv


def test_lds_defaults_and_dtype():
    y = _labels()
    torch.testing.assert_close(lds_weights(y, 10), lds_weights(y, 10, "gaussian", 5, 2.0, "sqrt_inv"), rtol=0, atol=0)
    for kw in [dict(kernel="laplace"), dict(ks=3), dict(sigma=1.0), dict(reweight="inverse")]:
        assert not torch.allclose(lds_weights(y, 10, **kw), lds_weights(y, 10)), kw
    assert lds_weights(y.float(), 10).dtype == torch.float32
    w = lds_weights(y, 10)
    assert w[6] > w[0]  # the rare label weighs more


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kernel", ["gaussian", "triang", "laplace"])
def test_lds_on_cuda_labels(kernel):
    # issue #11: the smoothing window is built on the labels' device (it was always on the CPU: conv1d raised)
    y = _labels()
    w = lds_weights(y.cuda(), 10, kernel=kernel)
    assert w.device.type == "cuda"
    torch.testing.assert_close(w.cpu(), lds_weights(y, 10, kernel=kernel))


def test_lds_bad_inputs():
    y = _labels()
    for fn, word in [(lambda: lds_weights(y, 0), r"^bins:"), (lambda: lds_weights(y, 10, ks=4), r"^ks:"),
                     (lambda: lds_weights(y, 10, kernel="box"), r"^kernel:"),
                     (lambda: lds_weights(y, 10, reweight="log"), r"^reweight:"),
                     (lambda: lds_weights(y, 10, sigma=0.0), r"^sigma:"),
                     (lambda: lds_weights(y.clone().fill_(float("nan")), 10), r"^train_labels:"),
                     (lambda: lds_weights(y.long(), 10), r"^train_labels:")]:
        with pytest.raises(ValueError, match=word):
            fn()


# --- shot metrics -------------------------------------------------------------------------------------------------------
def test_shot_metrics_by_hand_with_defaults():
    # training bins (width 1): bin 0 has 150 labels (many > 100), bin 1 has 50 (median), bin 2 has 5 (few < 20)
    train = torch.cat([torch.full((150,), 0.5), torch.full((50,), 1.5), torch.full((5,), 2.5)]).double()
    labels = torch.tensor([0.2, 0.7, 1.1, 2.9, 5.0], dtype=torch.float64)
    preds = torch.tensor([0.4, 0.7, 2.1, 0.9, 5.5], dtype=torch.float64)
    out = shot_metrics(preds, labels, train)
    assert {k: v["n"] for k, v in out.items()} == {"all": 5, "many": 2, "median": 1, "few": 2}
    err = [0.2, 0.0, 1.0, 2.0, 0.5]
    assert out["all"]["mae"] == pytest.approx(sum(err) / 5)
    assert out["all"]["mse"] == pytest.approx(sum(v * v for v in err) / 5)
    assert out["many"]["mae"] == pytest.approx(0.1)
    assert out["few"]["mae"] == pytest.approx(1.25)
    assert out["few"]["gmean"] == pytest.approx(math.sqrt(2.0 * 0.5))
    assert out["many"]["gmean"] == pytest.approx(math.sqrt(0.2 * 1e-12))  # an exact hit floored at 1e-12
    # the thresholds: 100 is not many-shot, 20 is median-shot
    t2 = torch.cat([torch.full((100,), 0.5), torch.full((20,), 1.5)]).double()
    o2 = shot_metrics(labels[:3], labels[:3], t2)
    assert (o2["many"]["n"], o2["median"]["n"], o2["few"]["n"]) == (0, 3, 0)
    assert math.isnan(o2["many"]["mae"])
    # bin_width: with width 2 the labels 0.5 and 1.5 share a bin
    o3 = shot_metrics(labels[:3], labels[:3], t2, bin_width=2.0)
    assert o3["many"]["n"] == 3


def test_shot_metrics_bad_inputs():
    y = torch.rand(4, dtype=torch.float64)
    for fn, word in [(lambda: shot_metrics(y[:3], y, y), r"^preds:"), (lambda: shot_metrics(y, y.long(), y), r"^labels:"),
                     (lambda: shot_metrics(y, y, y, bin_width=0.0), r"^bin_width:"),
                     (lambda: shot_metrics(y, y, y, many_thr=5, few_thr=10), r"^few_thr:"),
                     (lambda: shot_metrics(y, y, y.clone().fill_(float("nan"))), r"^train_labels:")]:
        with pytest.raises(ValueError, match=word):
            fn()


# --- closing the gaps found by mutation testing (issue #7) -----------------------------------------------------------
def test_module_accepts_zero_omega_and_e():
    f, y, p = _batch()
    m = ConR(omega=0.0, e=0.0)
    assert (m.omega, m.e) == (0.0, 0.0)
    torch.testing.assert_close(m(f, y, p), conr_loss(f, y, p, omega=0.0, e=0.0), rtol=0, atol=0)


@pytest.mark.parametrize("kernel", ["gaussian", "laplace"])
def test_lds_window_scale_sigma(kernel):
    y = _labels()
    counts, idx, half, sigma = [4, 2, 0, 1, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 1, 3, 9], 2, 3.0
    x = range(-half, half + 1)
    win = [math.exp(-v * v / (2 * sigma**2)) if kernel == "gaussian" else math.exp(-abs(v) / sigma) for v in x]
    sm = [sum(win[k + half] * math.sqrt(counts[b + k]) for k in x if 0 <= b + k < 10) for b in range(10)]
    w = torch.tensor([1 / sm[b] for b in idx], dtype=torch.float64)
    torch.testing.assert_close(lds_weights(y, 10, kernel=kernel, sigma=sigma), w / w.mean())


def test_lds_bins_are_equal_width_over_min_max():
    # labels far from 0 with a range below 1: bins of width 0.1 over [10.0, 10.4]; the maximum joins the last bin
    y = torch.tensor([10.0, 10.05, 10.12, 10.31, 10.35, 10.4], dtype=torch.float64)
    w = lds_weights(y, 4, ks=1, reweight="inverse")
    inv = torch.tensor([1 / 2, 1 / 2, 1 / 1, 1 / 3, 1 / 3, 1 / 3], dtype=torch.float64)  # counts 2 | 1 | 0 | 3
    torch.testing.assert_close(w, inv / inv.mean())
    y2 = torch.tensor([0.0, 0.5, 0.95, 1.0], dtype=torch.float64)  # 2 bins: 0.5, 0.95 and the maximum share bin 1
    inv2 = torch.tensor([1.0, 1 / 3, 1 / 3, 1 / 3], dtype=torch.float64)
    torch.testing.assert_close(lds_weights(y2, 2, ks=1, reweight="inverse"), inv2 / inv2.mean())
    y3 = torch.tensor([0.0, 0.1, 0.2, 1.0], dtype=torch.float64)
    inv3 = torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0], dtype=torch.float64)
    torch.testing.assert_close(lds_weights(y3, 2, ks=1, reweight="inverse"), inv3 / inv3.mean())


def test_lds_smallest_legal_settings_and_more_bad_inputs():
    y = _labels()
    torch.testing.assert_close(lds_weights(y, 1), torch.ones(8, dtype=torch.float64))  # one bin: every weight 1
    for fn, pat in [(lambda: lds_weights(y[:, None], 10), r"^train_labels:"), (lambda: lds_weights(y, 10, ks=-1), r"^ks:"),
                    (lambda: lds_weights(y, 10, ks=3.0), r"^ks:"), (lambda: lds_weights(y, 1.0), r"^bins:")]:
        with pytest.raises(ValueError, match=pat):
            fn()


def test_shot_metrics_defaults_and_more_bad_inputs():
    labels = torch.tensor([0.5, 1.5], dtype=torch.float64)
    t = torch.cat([torch.full((101,), 0.5), torch.full((19,), 1.5)]).double()
    out = shot_metrics(labels, labels, t)  # many_thr = 100: 101 labels are many-shot; few_thr = 20: 19 are few-shot
    assert (out["many"]["n"], out["median"]["n"], out["few"]["n"]) == (1, 0, 1)
    out = shot_metrics(labels, labels, t, many_thr=19, few_thr=19)  # equal thresholds are legal
    assert (out["many"]["n"], out["median"]["n"], out["few"]["n"]) == (1, 1, 0)
    y = torch.rand(4, dtype=torch.float64)
    for fn, pat in [(lambda: shot_metrics(y.long(), y, y), r"^preds:"), (lambda: shot_metrics(y, y[:, None], y), r"^labels:"),
                    (lambda: shot_metrics(y, y, y[:, None]), r"^train_labels:"),
                    (lambda: shot_metrics(y, y, y.long()), r"^train_labels:")]:
        with pytest.raises(ValueError, match=pat):
            fn()


def test_labels_and_preds_are_used_in_the_features_precision():
    f, y, p = _batch(seed=3)
    y32, p32 = (y + 0.123456789).float(), p.float()  # float32 labels: their differences are exact only in float64
    got = conr_loss(f, y32, p32, e=0.5, reduction="none")
    torch.testing.assert_close(got, conr_loss(f, y32.double(), p32.double(), e=0.5, reduction="none"), rtol=1e-14,
                               atol=1e-14)


def test_weights_must_be_a_floating_vector():
    f, y, p = _batch()
    for w in (torch.ones(10, 1, dtype=torch.float64), torch.ones(10, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"^weights:"):
            conr_loss(f, y, p, w)


def test_zero_weight_is_legal_and_silences_its_anchor():
    f, y, p = _batch()
    w = torch.ones(10, dtype=torch.float64)
    w[3] = 0.0
    got = conr_loss(f, y, p, w, reduction="none")
    assert got[3] == 0 and torch.isfinite(got).all()


def test_gathers_only_when_ddp_is_active(monkeypatch):
    import lossbook.ssl.conr_imbalanced_regression as mod
    calls = []
    monkeypatch.setattr(mod, "gather", lambda t: calls.append(tuple(t.shape)) or t)
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append("slice") or slice(0, n))
    real = mod.reduce_over_ranks
    monkeypatch.setattr(mod, "reduce_over_ranks", lambda t, n, r, a: calls.append(("reduce", a)) or real(t, n, r, a))
    f, y, p = _batch()
    ref = conr_loss(f, y, p)
    conr_loss(f, y, p, gather_distributed=True)  # no process group: DDP is not active
    assert calls == [("reduce", False), ("reduce", False)]
    calls.clear()
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    torch.testing.assert_close(conr_loss(f, y, p, gather_distributed=True), ref, rtol=1e-12, atol=1e-12)
    assert sorted(map(str, calls)) == sorted(map(str, [(10, 6), (10, 1), (10, 1), "slice", ("reduce", True)]))


def test_prediction_distances_are_exact_in_the_features_precision():
    # float32 predictions 0.1 and -0.90000004: 1.0000000373 apart in float64, but their float32 difference rounds to
    # 1.0 = omega, which would make the two groups negatives of each other
    f = _batch(n=4, seed=4)[0]
    y = torch.tensor([0.0, 0.5, 3.0, 3.5], dtype=torch.float32)
    p = torch.tensor([0.1, 0.1, -0.9000000357627869, -0.9000000357627869], dtype=torch.float32)
    got = conr_loss(f, y, p, reduction="none")
    torch.testing.assert_close(got, conr_loss(f, y.double(), p.double(), reduction="none"), rtol=0, atol=0)
    assert torch.equal(got, torch.zeros(4, dtype=torch.float64))  # no anchor has a negative


def test_weights_and_half_features_are_used_in_full_precision():
    f, y, p = _batch(seed=5)
    w = torch.rand(10, generator=torch.Generator().manual_seed(1)).float() + 0.5
    torch.testing.assert_close(conr_loss(f, y, p, w, reduction="none"), conr_loss(f, y, p, w.double(), reduction="none"),
                               rtol=1e-14, atol=1e-14)
    fb = f.bfloat16()
    got = conr_loss(fb, y.float(), p.float(), reduction="none")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, conr_loss(fb.float(), y.float(), p.float(), reduction="none"), rtol=0, atol=0)


def test_labels_exactly_omega_apart_are_positives():
    f = _batch(n=6, seed=6)[0]
    y = torch.tensor([0.0, 1.0, 2.0, 5.0, 6.0, 7.5], dtype=torch.float64)  # neighbours exactly omega = 1 apart
    p = torch.full((6,), 2.5, dtype=torch.float64)  # every prediction close: far labels are negatives
    torch.testing.assert_close(conr_loss(f, y, p), conr_ref(f, y, p), rtol=1e-10, atol=1e-12)
    assert conr_loss(f, y, p, reduction="none")[5] == 0  # 7.5 has no label within 1: no positive


def test_predictions_exactly_omega_apart_select_negatives():
    f = _batch(n=6, seed=7)[0]
    y = torch.tensor([0.0, 0.5, 3.0, 3.5, 6.0, 6.5], dtype=torch.float64)
    p = torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, 2.0], dtype=torch.float64)  # neighbouring groups exactly omega apart
    torch.testing.assert_close(conr_loss(f, y, p), conr_ref(f, y, p), rtol=1e-10, atol=1e-12)
    assert (conr_loss(f, y, p, reduction="none") > 0).all()  # every anchor has a negative at p-distance exactly 1


def test_labels_and_preds_summing_to_zero_stay_finite():
    f = _batch(n=6, seed=8)[0]
    y = torch.tensor([-1.5, -1.0, -0.25, 0.25, 1.0, 1.5], dtype=torch.float64)  # the labels and the preds sum to
    p = torch.tensor([-0.5, -0.25, -0.125, 0.125, 0.25, 0.5], dtype=torch.float64)  # exactly 0 (dyadic values)
    assert float(y.sum() + p.sum()) == 0.0
    torch.testing.assert_close(conr_loss(f, y, p), conr_ref(f, y, p), rtol=1e-10, atol=1e-12)
