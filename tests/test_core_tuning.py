"""Tests for lossbook.ssl.core_tuning (Zhang et al. 2021, Core-tuning).

References: (a) pytorch-metric-learning's SupConLoss (the card's library) equals our loss with focal=False,
normalize_by="positives", per anchor and reduced; (b) a float64 loop of Eqs. 5-6 (tests/references.py, also used by the
battery) in every mode; (c) the card's properties: eta = 0 without mixup is CE, focal < non-focal, permutation
invariance, hard pairs on constructed data, lambda >= 0.8 for the hard negatives, soft-label rows summing to 1, the
official argmin bug. The 2-process DDP equivalence of focal_supcon_loss is checked by tests/test_battery.py.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from references import focal_supcon_ref

from lossbook.contrastive import supcon_loss
from lossbook.ssl.core_tuning import (CoreTuningLoss, FocalSupConLoss, _beta, core_feature_mixup, focal_supcon_loss,
                                      hard_pair_indices, soft_cross_entropy)


def _data(n=12, d=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 3, 4][:n])
    return z, y


# --- the focal SupCon loss -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("focal", [True, False])
@pytest.mark.parametrize("normalize_by", ["all", "positives"])
@pytest.mark.parametrize("tau", [0.07, 0.5, 2.0])
def test_matches_float64_loop(focal, normalize_by, tau):
    z, y = _data()
    got = focal_supcon_loss(z, y, tau, focal=focal, normalize_by=normalize_by)
    torch.testing.assert_close(got, focal_supcon_ref(z, y, tau, focal, normalize_by), rtol=1e-10, atol=1e-12)


def test_defaults_are_the_official_ones():
    z, y = _data(seed=3)
    torch.testing.assert_close(focal_supcon_loss(z, y), focal_supcon_ref(z, y, 0.07, True, "all"), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(focal_supcon_loss(z, y), focal_supcon_ref(z, y, 0.1, True, "all"))
    m = FocalSupConLoss()
    assert (m.temperature, m.focal, m.normalize_by, m.reduction, m.gather_distributed) == (0.07, True, "all", "mean", False)
    torch.testing.assert_close(m(z, y), focal_supcon_loss(z, y))


def test_pytorch_metric_learning_supcon():
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import losses, reducers
    z, y = _data(seed=1)
    ours = focal_supcon_loss(z, y, 0.07, focal=False, normalize_by="positives", reduction="none")
    per = losses.SupConLoss(temperature=0.07, reducer=reducers.DoNothingReducer())(z, y)["loss"]["losses"]
    has_pos = torch.tensor([(y == y[i]).sum() > 1 for i in range(len(y))])
    torch.testing.assert_close(ours, per[has_pos].to(ours.dtype), rtol=1e-9, atol=1e-10)
    red = losses.SupConLoss(temperature=0.07)(z, y)
    torch.testing.assert_close(focal_supcon_loss(z, y, 0.07, focal=False, normalize_by="positives"), red.to(z.dtype),
                               rtol=1e-9, atol=1e-10)
    assert pml is not None


def test_equals_core_supcon_without_focal_weight():
    z, y = _data(seed=2)
    torch.testing.assert_close(focal_supcon_loss(z, y, 0.3, focal=False, normalize_by="positives"), supcon_loss(z, y, 0.3))


def test_focal_below_unweighted_and_all_below_positives():
    z, y = _data(seed=4)
    a = focal_supcon_loss(z, y, reduction="none")
    b = focal_supcon_loss(z, y, focal=False, reduction="none")
    assert (a < b).all() and (a > 0).all()
    # dividing by N >= |P(a)| gives smaller terms
    c = focal_supcon_loss(z, y, normalize_by="positives", reduction="none")
    assert (a <= c).all() and (a < c).any()


def test_hand_value_three_points():
    Z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    p0 = 1 / (1 + torch.exp(torch.tensor(-1.0, dtype=torch.float64)))
    p1 = torch.tensor(0.5, dtype=torch.float64)
    t = torch.stack([-(1 - p0) * p0.log() / 3, -(1 - p1) * p1.log() / 3])
    torch.testing.assert_close(focal_supcon_loss(Z, torch.tensor([0, 0, 1]), 1.0, reduction="none"), t)
    torch.testing.assert_close(focal_supcon_loss(Z, torch.tensor([0, 0, 1]), 1.0), t.mean())
    torch.testing.assert_close(focal_supcon_loss(Z, torch.tensor([0, 0, 1]), 1.0, reduction="sum"), t.sum())


def test_soft_labels():
    z, y = _data(seed=5)
    e = F.one_hot(y).double()
    torch.testing.assert_close(focal_supcon_loss(z, e), focal_supcon_loss(z, y))
    # a mixed row is a positive only of an identical mix
    s = torch.cat([e, torch.tensor([[0.2, 0.8, 0, 0, 0], [0.2, 0.8, 0, 0, 0], [0.3, 0.7, 0, 0, 0]], dtype=torch.float64)])
    zz = torch.cat([z, torch.randn(3, z.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(9))])
    ids = torch.cat([y, torch.tensor([10, 10, 11])])
    torch.testing.assert_close(focal_supcon_loss(zz, s), focal_supcon_loss(zz, ids))


def test_permutation_invariant():
    z, y = _data(seed=6)
    p = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(focal_supcon_loss(z[p], y[p]), focal_supcon_loss(z, y))


def test_reductions_and_dtypes():
    z, y = _data(seed=7)
    none = focal_supcon_loss(z, y, reduction="none")
    assert none.shape == (11,)  # label 4 occurs once: 11 anchors with a positive
    torch.testing.assert_close(focal_supcon_loss(z, y, reduction="sum"), none.sum())
    torch.testing.assert_close(focal_supcon_loss(z, y, reduction="mean"), none.mean())
    v32 = focal_supcon_loss(z.float(), y)
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), focal_supcon_loss(z, y), rtol=1e-4, atol=1e-5)


def test_gradcheck():
    z, y = _data(n=8, d=4, seed=8)
    z.requires_grad_()
    for kw in ({}, {"focal": False}, {"normalize_by": "positives"}):
        assert torch.autograd.gradcheck(lambda t: focal_supcon_loss(t, y, 0.5, **kw), (z,))


@pytest.mark.parametrize("call,match", [
    (lambda z, y: focal_supcon_loss(z[:, :, None], y), r"^z:"),
    (lambda z, y: focal_supcon_loss(z.masked_fill(torch.eye(12, 6, dtype=torch.bool), float("nan")), y), r"^z:"),
    (lambda z, y: focal_supcon_loss(z.long(), y), r"^z:"),
    (lambda z, y: focal_supcon_loss(z, y[:-1]), r"^labels:"),
    (lambda z, y: focal_supcon_loss(z, F.one_hot(y).double()[:-1]), r"^labels:"),
    (lambda z, y: focal_supcon_loss(z, -F.one_hot(y).double()), r"^labels:"),
    (lambda z, y: focal_supcon_loss(z, F.one_hot(y).double().masked_fill(torch.eye(12, 5, dtype=torch.bool), float("inf"))), r"^labels:"),
    (lambda z, y: focal_supcon_loss(z, torch.arange(12)), r"^labels: no anchor has a positive"),
    (lambda z, y: focal_supcon_loss(z, y, temperature=0.0), r"^temperature:"),
    (lambda z, y: focal_supcon_loss(z, y, normalize_by="batch"), r"^normalize_by:"),
    (lambda z, y: focal_supcon_loss(z, y, reduction="avg"), r"^reduction:"),
    (lambda z, y: focal_supcon_loss(z[:0], y[:0]), r"^z:"),
    (lambda z, y: FocalSupConLoss(normalize_by="x"), r"^normalize_by:"),
    (lambda z, y: FocalSupConLoss(temperature=-1.0), r"^temperature:"),
])
def test_bad_inputs(call, match):
    z, y = _data()
    with pytest.raises(ValueError, match=match):
        call(z, y)


# --- hard pairs and the feature mixup ------------------------------------------------------------------------------------
def test_hard_pairs_on_constructed_data():
    # class 0: angles 0, 10, 80 degrees; class 1: angles 20, 170 degrees; class 2: a single sample at 90 degrees
    ang = torch.tensor([0.0, 10.0, 80.0, 20.0, 170.0, 90.0]).deg2rad()
    h = torch.stack([ang.cos(), ang.sin()], 1).double()
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    p, n = hard_pair_indices(h, y)
    assert p.tolist() == [2, 2, 0, 4, 3, 5]  # least similar same-class sample; the lone sample gets itself
    assert n.tolist() == [3, 3, 5, 1, 5, 2]  # most similar other-class sample
    # one class only: no negative, the anchor itself
    assert hard_pair_indices(h, torch.zeros(6, dtype=torch.long))[1].tolist() == list(range(6))


def test_official_argmin_picks_non_positives():
    # post-ReLU (non-negative) features: every cosine >= 0, so the zeros of S * mask win the argmin
    h = torch.tensor([[1.0, 0.1], [0.9, 0.2], [0.1, 1.0], [0.2, 0.9]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    p_off, _ = hard_pair_indices(h, y, official_argmin=True)
    p, _ = hard_pair_indices(h, y)
    assert p.tolist() == [1, 0, 3, 2]
    # official: argmin lands on the first zero of S * mask (index 0, or the anchor itself for anchor 1), and index 0 is
    # then replaced by the anchor: every anchor is mixed with itself instead of its hardest positive
    assert p_off.tolist() == [0, 1, 2, 3]


def _manual_mixup(h, y, C, alpha, lmin, seed):
    g = torch.Generator().manual_seed(seed)
    e = F.one_hot(y, C).double()
    perm = torch.randperm(len(y), generator=g)
    lam = _beta(alpha, len(y), g).clamp_min(lmin)[:, None]
    hn, yn = (1 - lam) * h + lam * h[perm], (1 - lam) * e + lam * e[perm]
    p, n = hard_pair_indices(h, y)
    lam2 = _beta(alpha, len(y), g)[:, None]
    return torch.cat([h, hn, lam2 * h[p] + (1 - lam2) * h[n]]), torch.cat([e, yn, lam2 * e[p] + (1 - lam2) * e[n]]), perm


def test_mixup_formula_and_defaults():
    h, y = _data(n=10, seed=11)
    ha, ya = core_feature_mixup(h, y, 5, generator=torch.Generator().manual_seed(3))
    hm, ym, perm = _manual_mixup(h, y, 5, 1.0, 0.8, 3)
    torch.testing.assert_close(ha, hm)
    torch.testing.assert_close(ya, ym)
    assert ha.shape == (30, 6) and ya.shape == (30, 5)
    torch.testing.assert_close(ya.sum(1), torch.ones(30, dtype=torch.float64))
    # lambda >= 0.8: the partner's class weighs at least 0.8 in every hard-negative label
    for i in range(10):
        assert ya[10 + i, y[perm[i]]] >= 0.8 - 1e-12
    # a different alpha or floor changes the result
    for kw in ({"alpha": 0.5}, {"neg_lambda_min": 0.5}):
        assert not torch.allclose(core_feature_mixup(h, y, 5, generator=torch.Generator().manual_seed(3), **kw)[0], ha)
    # the same generator seed gives the same draw
    torch.testing.assert_close(core_feature_mixup(h, y, 5, generator=torch.Generator().manual_seed(3))[0], ha)


def test_mixup_gradient_flows_through_both_partners():
    h, y = _data(n=10, seed=12)
    h.requires_grad_()
    ha, _ = core_feature_mixup(h, y, 5, generator=torch.Generator().manual_seed(0))
    ha[10:].sum().backward()
    assert (h.grad.abs().sum(1) > 0).any()


@pytest.mark.parametrize("call,match", [
    (lambda h, y: core_feature_mixup(h[:1], y[:1], 5), r"^h:"),
    (lambda h, y: core_feature_mixup(h, y + 5, 5), r"^y:"),
    (lambda h, y: core_feature_mixup(h, y[:-1], 5), r"^y:"),
    (lambda h, y: core_feature_mixup(h * float("nan"), y, 5), r"^h:"),
    (lambda h, y: core_feature_mixup(h, y, 5, alpha=0.0), r"^alpha:"),
    (lambda h, y: core_feature_mixup(h, y, 5, neg_lambda_min=1.5), r"^neg_lambda_min:"),
    (lambda h, y: core_feature_mixup(h, y, 5, neg_lambda_min=-0.1), r"^neg_lambda_min:"),
    (lambda h, y: hard_pair_indices(h, y[:-1]), r"^y:"),
    (lambda h, y: hard_pair_indices(h[0], y), r"^h:"),
])
def test_mixup_bad_inputs(call, match):
    h, y = _data(n=10)
    with pytest.raises(ValueError, match=match):
        call(h, y)


# --- soft cross-entropy and the whole objective --------------------------------------------------------------------------
def test_soft_cross_entropy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(soft_cross_entropy(x, F.one_hot(y, 4).double()), F.cross_entropy(x, y))
    t = torch.softmax(torch.randn(6, 4, generator=g, dtype=torch.float64), 1)
    per = -(t * F.log_softmax(x, 1)).sum(1)
    torch.testing.assert_close(soft_cross_entropy(x, t, reduction="none"), per)
    torch.testing.assert_close(soft_cross_entropy(x, t, reduction="sum"), per.sum())
    torch.testing.assert_close(soft_cross_entropy(x, t), per.mean())
    with pytest.raises(ValueError, match=r"^soft_targets:"):
        soft_cross_entropy(x, t[:, :3])
    with pytest.raises(ValueError, match=r"^logits:"):
        soft_cross_entropy(x * float("nan"), t)
    with pytest.raises(ValueError, match=r"^reduction:"):
        soft_cross_entropy(x, t, reduction="avg")


def _heads(d=6, C=5):
    torch.manual_seed(0)
    return nn.Linear(d, C, bias=False).double(), nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 4)).double()


def test_core_tuning_loss_limits_and_formula():
    h, y = _data(n=10, seed=13)
    W, G = _heads()
    loss, parts = CoreTuningLoss(W, G, 5, eta=0.0, mixup=False)(h, y)
    torch.testing.assert_close(loss, F.cross_entropy(W(h), y))
    loss, _ = CoreTuningLoss(W, G, 5, mixup=False)(h, y)
    torch.testing.assert_close(loss, F.cross_entropy(W(h), y) + 0.1 * focal_supcon_loss(G(h), y, 0.07))
    # defaults: eta 0.1, alpha 1, tau 0.07, floor 0.8, mixup on, the intended hard-positive rule
    m = CoreTuningLoss(W, G, 5)
    assert (m.eta, m.alpha, m.temperature, m.neg_lambda_min, m.mixup, m.official_argmin) == (0.1, 1.0, 0.07, 0.8, True, False)
    loss, parts = m(h, y, generator=torch.Generator().manual_seed(4))
    ha, ya, _ = _manual_mixup(h, y, 5, 1.0, 0.8, 4)
    ce, con = soft_cross_entropy(W(ha), ya), focal_supcon_loss(G(ha), ya, 0.07)
    torch.testing.assert_close(loss, ce + 0.1 * con)
    torch.testing.assert_close(parts["ce"], ce.detach())
    torch.testing.assert_close(parts["con"], con.detach())


def test_core_tuning_loss_bad_inputs():
    h, y = _data(n=10)
    W, G = _heads()
    with pytest.raises(ValueError, match=r"^eta:"):
        CoreTuningLoss(W, G, 5, eta=-1.0)
    with pytest.raises(ValueError, match=r"^alpha:"):
        CoreTuningLoss(W, G, 5, alpha=0.0)
    with pytest.raises(ValueError, match=r"^temperature:"):
        CoreTuningLoss(W, G, 5, temperature=0.0)
    with pytest.raises(ValueError, match=r"^y:"):
        CoreTuningLoss(W, G, 5, mixup=False)(h, y + 5)
    with pytest.raises(ValueError, match=r"^h:"):
        CoreTuningLoss(W, G, 5, mixup=False)(h * float("nan"), y)


# --- closing the gaps found by mutation testing (issue #7) -----------------------------------------------------------
def test_beta_draws_by_hand():
    beta = lambda a: torch.distributions.Beta(torch.tensor(a, dtype=torch.float64), torch.tensor(a, dtype=torch.float64))
    # no generator: the global RNG, Beta(a, a) in float64
    torch.manual_seed(5)
    got = _beta(0.5, 7, None)
    torch.manual_seed(5)
    torch.testing.assert_close(got, beta(0.5).sample((7,)), rtol=0, atol=0)
    assert got.dtype == torch.float64 and got.shape == (7,)
    # a generator: one seed in [0, 2**62) drawn from it seeds a forked global RNG (which is left as it was)
    g, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    state = torch.get_rng_state()
    got = _beta(2.0, 6, g)
    assert torch.equal(torch.get_rng_state(), state)
    seed = int(torch.randint(0, 2**62, (1,), generator=g2))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        want = beta(2.0).sample((6,))
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_mixup_without_generator_uses_the_global_rng():
    h, y = _data(n=10, seed=14)
    torch.manual_seed(21)
    ha, ya = core_feature_mixup(h, y, 5)
    torch.manual_seed(21)
    perm = torch.randperm(10)
    lam = _beta(1.0, 10, None).clamp_min(0.8)[:, None]
    p, n = hard_pair_indices(h, y)
    lam2 = _beta(1.0, 10, None)[:, None]
    torch.testing.assert_close(ha, torch.cat([h, (1 - lam) * h + lam * h[perm], lam2 * h[p] + (1 - lam2) * h[n]]))
    assert ya.shape == (30, 5)


def test_module_accepts_every_normalize_by():
    z, y = _data()
    torch.testing.assert_close(FocalSupConLoss(normalize_by="positives")(z, y),
                               focal_supcon_loss(z, y, normalize_by="positives"), rtol=0, atol=0)
    assert FocalSupConLoss(normalize_by="positives").normalize_by == "positives"


def test_soft_cross_entropy_checks_and_no_warning():
    import warnings
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    t = torch.softmax(torch.randn(6, 4, generator=g, dtype=torch.float64), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log_softmax over dim 1, named: no implicit-dimension warning
        torch.testing.assert_close(soft_cross_entropy(x, t, reduction="none"), -(t * F.log_softmax(x, 1)).sum(1))
    for call, pat in [(lambda: soft_cross_entropy(x[0], t[0]), r"^logits:"),
                      (lambda: soft_cross_entropy(x.long(), t), r"^logits:"),
                      (lambda: soft_cross_entropy(x, t * float("nan")), r"^soft_targets:"),
                      (lambda: soft_cross_entropy(x, (t > 0.5).long()), r"^soft_targets:")]:
        with pytest.raises(ValueError, match=pat):
            call()


def test_core_tuning_loss_passes_every_setting_through():
    h, y = _data(n=10, seed=15)
    h = h.abs()  # non-negative (post-ReLU) features: the official argmin rule differs from the intended one
    W, G = _heads()
    m = CoreTuningLoss(W, G, 5, temperature=0.5, official_argmin=True)
    assert m.official_argmin is True
    loss, _ = m(h, y, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    ha, ya = core_feature_mixup(h, y, 5, generator=g, official_argmin=True)
    torch.testing.assert_close(loss, soft_cross_entropy(W(ha), ya) + 0.1 * focal_supcon_loss(G(ha), ya, 0.5))
    ha2, _ = core_feature_mixup(h, y, 5, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(ha, ha2)  # the official rule changes the hard positives on these data
    loss, _ = CoreTuningLoss(W, G, 5, temperature=0.5, mixup=False)(h, y)
    torch.testing.assert_close(loss, F.cross_entropy(W(h), y) + 0.1 * focal_supcon_loss(G(h), y, 0.5))


def test_core_tuning_loss_eta_zero_parts_and_checks():
    h, y = _data(n=10, seed=16)
    W, G = _heads()
    loss, parts = CoreTuningLoss(W, G, 5, eta=0.0, mixup=False)(h, y)
    assert set(parts) == {"ce", "con"}
    assert parts["con"].dtype == torch.float64 and float(parts["con"]) == 0.0
    torch.testing.assert_close(parts["ce"], loss.detach())
    loss, parts = CoreTuningLoss(W, G, 5, eta=1.0, mixup=False)(h, y)
    torch.testing.assert_close(loss, F.cross_entropy(W(h), y) + focal_supcon_loss(G(h), y, 0.07))
    m = CoreTuningLoss(W, G, 5, mixup=False)
    for call, pat in [(lambda: m(h[0], y), r"^h:"), (lambda: m(h.long(), y), r"^h:"), (lambda: m(h, y[:-1]), r"^y:")]:
        with pytest.raises(ValueError, match=pat):
            call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_core_tuning_loss_eta_zero_parts_on_cuda():
    # issue #11: with eta = 0 the "con" part was a CPU zero next to a CUDA loss; now it lives with the loss
    h, y = _data(n=10, seed=16)
    W, G = _heads()
    loss, parts = CoreTuningLoss(W, G, 5, eta=0.0, mixup=False)(h, y)
    loss_c, parts_c = CoreTuningLoss(W.cuda(), G.cuda(), 5, eta=0.0, mixup=False)(h.cuda(), y.cuda())
    assert {v.device.type for v in (loss_c, *parts_c.values())} == {"cuda"}
    assert parts_c["con"].dtype == torch.float64 and float(parts_c["con"]) == 0.0
    torch.testing.assert_close(loss_c.cpu(), loss)
    torch.testing.assert_close(parts_c["ce"].cpu(), parts["ce"])


def test_mixup_checks_h_first():
    h, y = _data(n=10)
    for call in (lambda: core_feature_mixup(h[0], y, 5), lambda: core_feature_mixup(h.long(), y, 5)):
        with pytest.raises(ValueError, match=r"^h:"):
            call()


def test_mixup_smallest_batch_extreme_floors_and_dtype():
    h, y = _data(n=10, seed=17)
    ha, ya = core_feature_mixup(h[:2], torch.tensor([0, 1]), 2, generator=torch.Generator().manual_seed(0))  # B = 2
    assert ha.shape == (6, 6) and ya.shape == (6, 2)
    g = lambda: torch.Generator().manual_seed(1)
    ha, _ = core_feature_mixup(h, y, 5, neg_lambda_min=1.0, generator=g())  # lambda = 1: the partner itself
    perm = torch.randperm(10, generator=g())
    torch.testing.assert_close(ha[10:20], h[perm])
    assert core_feature_mixup(h, y, 5, neg_lambda_min=0.0, generator=g())[0].shape == (30, 6)
    ha32, ya32 = core_feature_mixup(h.float(), y, 5, generator=g())
    assert ha32.dtype == torch.float32 and ya32.dtype == torch.float32


def test_hard_pairs_use_cosines_in_enough_precision():
    with pytest.raises(ValueError, match=r"^h:"):
        hard_pair_indices(torch.ones(4, 2, dtype=torch.long), torch.tensor([0, 0, 1, 1]))
    # cosine, not dot product: row norms do not matter
    ang = torch.tensor([0.0, 10.0, 80.0, 20.0, 170.0, 90.0]).deg2rad()
    h = torch.stack([ang.cos(), ang.sin()], 1).double() * torch.tensor([1.0, 5.0, 0.2, 3.0, 0.5, 7.0], dtype=torch.float64)[:, None]
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    p, n = hard_pair_indices(h, y)
    assert p.tolist() == [2, 2, 0, 4, 3, 5] and n.tolist() == [3, 3, 5, 1, 5, 2]
    # float64 features are compared in float64: two negatives 1e-9 rad apart are told apart (float32 would tie)
    ang = torch.tensor([0.0, 0.5, 0.1 + 1e-9, 0.1], dtype=torch.float64)
    h = torch.stack([ang.cos(), ang.sin()], 1)
    assert hard_pair_indices(h, torch.tensor([0, 0, 1, 1]))[1][0] == 3
    # bfloat16 features are compared in float32: cosines 3e-4 apart are told apart (bfloat16 would tie)
    ang = torch.tensor([0.0, 1.5, 0.1763, 0.1745])
    h = torch.stack([ang.cos(), ang.sin()], 1).bfloat16()
    assert hard_pair_indices(h, torch.tensor([0, 0, 1, 1]))[1][0] == 3


def test_official_argmin_with_a_negative_cosine():
    ang = torch.tensor([0.0, 170.0, 90.0, 100.0]).deg2rad()
    h = torch.stack([ang.cos(), ang.sin()], 1).double()
    p_off, _ = hard_pair_indices(h, torch.tensor([0, 0, 1, 1]), official_argmin=True)
    assert p_off.tolist() == [1, 1, 2, 3]  # row 0 finds its negative-cosine positive; row 1's argmin 0 becomes itself


@pytest.mark.parametrize("soft", [False, True])
def test_gathers_only_when_ddp_is_active(monkeypatch, soft):
    import lossbook.ssl.core_tuning as mod
    calls = []
    monkeypatch.setattr(mod, "gather", lambda t: calls.append(tuple(t.shape)) or t)
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append("slice") or slice(0, n))
    z, y = _data()
    labels = F.one_hot(y).double() if soft else y
    ref = focal_supcon_loss(z, labels)
    focal_supcon_loss(z, labels, gather_distributed=True)  # no process group: DDP is not active
    assert calls == []
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    torch.testing.assert_close(focal_supcon_loss(z, labels, gather_distributed=True), ref, rtol=1e-12, atol=1e-12)
    assert sorted(map(str, calls)) == sorted(map(str, [tuple(labels.shape), (12, 6), "slice", "slice"]))


def test_counts_are_summed_over_ranks_only_under_ddp_and_half_inputs_upcast(monkeypatch):
    import lossbook.ssl.core_tuning as mod
    z, y = _data()
    zb = z.float().bfloat16()
    got = focal_supcon_loss(zb, y, reduction="none")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, focal_supcon_loss(zb.float(), y, reduction="none"), rtol=0, atol=0)
    seen = []
    real = mod.all_sum
    monkeypatch.setattr(mod, "all_sum", lambda x, active=True: seen.append(active) or real(x, active))
    focal_supcon_loss(z, y)
    focal_supcon_loss(z, y, gather_distributed=True)  # no process group: DDP is not active
    assert seen == [False, False]
