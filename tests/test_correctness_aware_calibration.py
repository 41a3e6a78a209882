"""Tests for lossbook.calibration.correctness_aware_calibration (Liu et al. 2024, the correctness-aware calibration loss).

No library implements the CA loss: the references are plain float64 loops transcribed from the notebook's Eq. (4)
(the official `Temperature_adaptive.set_temperature`), Eq. (2) (the official `temp_args`), and the card's properties
(limits, gradient signs, the narrow-misclassification toy, the clamp).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.calibration import correctness_aware_calibration as cac
from lossbook.calibration.correctness_aware_calibration import (
    AdaptiveTemperatureCalibrator,
    CALoss,
    CALossFromLogits,
    TemperatureScaling,
    ca_loss,
    ca_loss_from_logits,
    transform_consistency_features,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _conf(B=12, seed=0, p=0.6, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    conf = 0.05 + 0.9 * torch.rand(B, generator=g, dtype=torch.float64)
    correct = torch.rand(B, generator=g) < p
    return conf.to(dtype), correct


def _logits(B=12, C=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = 2 * torch.randn(B, C, generator=g, dtype=torch.float64)
    t = 0.5 + 1.5 * torch.rand(B, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(B, generator=g) < 0.6, z.argmax(1), torch.randint(C, (B,), generator=g))
    return z.to(dtype), t.to(dtype), y


def _ref_ca(conf, correct, balance=True):
    "Eq. (4), one sample at a time, in Python floats, as the official code: sum(w * (c_hat - c)^2) / sum(w); 0 when sum(w) = 0."
    c = [float(v) for v in correct.tolist()]
    x = conf.tolist()
    acc = sum(c) / len(c)
    w = [(1 - acc if ci == 1 else acc) if balance else 1.0 for ci in c]
    num = sum(wi * (xi - ci) ** 2 for wi, xi, ci in zip(w, x, c))
    den = sum(w)
    return 0.0 if den == 0 else num / den


# ---------------------------------------------------------------- ca_loss: references and modes
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("balance", [True, False])
def test_ca_loss_matches_float64_loop(seed, balance):
    conf, correct = _conf(seed=seed)
    got = ca_loss(conf, correct, balance=balance)
    assert got.item() == pytest.approx(_ref_ca(conf, correct, balance), rel=1e-12, abs=1e-15)


def test_ca_loss_is_half_correct_mse_plus_half_wrong_mse():
    conf, correct = _conf(B=20, seed=3)
    want = 0.5 * ((1 - conf[correct]) ** 2).mean() + 0.5 * (conf[~correct] ** 2).mean()
    torch.testing.assert_close(ca_loss(conf, correct), want, rtol=1e-12, atol=1e-15)


def test_ca_loss_defaults_pinned():
    conf, _ = _conf(seed=4)
    correct = torch.arange(12) % 4 != 0  # 9 correct, 3 wrong: the weights differ
    base = ca_loss(conf, correct)
    torch.testing.assert_close(base, ca_loss(conf, correct, balance=True, eps=1e-12, reduction="mean",
                                             gather_distributed=False), rtol=0, atol=0)
    assert not torch.allclose(base, ca_loss(conf, correct, balance=False))
    # eps floors the mean weight: a large floor changes the value by the ratio mean(w) / eps
    w_mean = 2 * correct.double().mean() * (1 - correct.double().mean())
    torch.testing.assert_close(ca_loss(conf, correct, eps=10.0), base * w_mean / 10.0, rtol=1e-12, atol=0)


def test_ca_loss_reductions():
    conf, correct = _conf(seed=5)
    none = ca_loss(conf, correct, reduction="none")
    assert none.shape == (12,)
    torch.testing.assert_close(none.mean(), ca_loss(conf, correct), rtol=1e-12, atol=0)
    torch.testing.assert_close(none.sum(), ca_loss(conf, correct, reduction="sum"), rtol=1e-12, atol=0)
    # 'none': w_i (c_hat_i - c_i)^2 / mean(w)
    c = correct.double()
    acc = c.mean()
    w = torch.where(correct, 1 - acc, acc)
    torch.testing.assert_close(none, w * (conf - c) ** 2 / w.mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(ca_loss(conf, correct, balance=False, reduction="none"), (conf - c) ** 2, rtol=0, atol=0)


def test_ca_loss_equal_counts_is_plain_mse():
    conf = torch.tensor([0.9, 0.2, 0.6, 0.4], dtype=torch.float64)
    correct = torch.tensor([True, False, True, False])
    torch.testing.assert_close(ca_loss(conf, correct), ca_loss(conf, correct, balance=False), rtol=1e-12, atol=0)


def test_ca_loss_zero_iff_confidence_equals_correctness():
    _, correct = _conf(seed=6)
    assert ca_loss(correct.double(), correct).item() == 0.0
    conf = correct.double().clone()
    conf[0] = 0.5
    assert ca_loss(conf, correct).item() > 0


@pytest.mark.parametrize("value", [True, False])
def test_ca_loss_degenerate_batch_is_zero_not_nan(value):
    conf = torch.tensor([0.3, 0.7, 0.9], dtype=torch.float64, requires_grad=True)
    correct = torch.full((3,), value)
    loss = ca_loss(conf, correct)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(conf.grad, torch.zeros(3, dtype=torch.float64))
    # unbalanced: the plain MSE is still defined
    assert ca_loss(conf.detach(), correct, balance=False).item() == pytest.approx(
        float(((conf.detach() - float(value)) ** 2).mean()))


def test_ca_loss_integer_correctness_equals_bool():
    conf, correct = _conf(seed=7)
    torch.testing.assert_close(ca_loss(conf, correct.long()), ca_loss(conf, correct), rtol=0, atol=0)
    torch.testing.assert_close(ca_loss(conf, correct.to(torch.uint8)), ca_loss(conf, correct), rtol=0, atol=0)


def test_ca_loss_smallest_batch():
    conf = torch.tensor([0.8, 0.3], dtype=torch.float64)
    correct = torch.tensor([True, False])
    # one of each: w = 0.5 each, loss = mean of 0.2^2 and 0.3^2
    assert ca_loss(conf, correct).item() == pytest.approx((0.04 + 0.09) / 2, rel=1e-12)
    assert ca_loss(conf[:1], correct[:1]).item() == 0.0  # a single sample is degenerate: 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_ca_loss_dtypes_devices(dtype, device):
    conf, correct = _conf(seed=8, dtype=dtype)
    out = ca_loss(conf.to(device), correct.to(device))
    assert out.dtype == dtype and out.device.type == device
    assert out.item() == pytest.approx(_ref_ca(conf.double(), correct), rel=1e-5)


def test_ca_loss_module_equals_function_for_every_setting():
    conf, correct = _conf(seed=9)
    for kw in ({}, {"balance": False}, {"eps": 5.0}, {"reduction": "none"}, {"reduction": "sum"}):
        torch.testing.assert_close(CALoss(**kw)(conf, correct), ca_loss(conf, correct, **kw), rtol=0, atol=0)
    m = CALoss(balance=False, eps=0.5, reduction="sum", gather_distributed=True)
    assert (m.balance, m.eps, m.reduction, m.gather_distributed) == (False, 0.5, "sum", True)
    d = CALoss()
    assert (d.balance, d.eps, d.reduction, d.gather_distributed) == (True, 1e-12, "mean", False)
    assert "balance=True" in repr(d) and "reduction='mean'" in repr(d)


def test_ca_loss_gradient_direction():
    conf = torch.tensor([0.6, 0.6], dtype=torch.float64, requires_grad=True)
    ca_loss(conf, torch.tensor([True, False])).backward()
    assert conf.grad[0] < 0 < conf.grad[1]  # raise confidence on the correct sample, lower it on the wrong one


def test_ca_loss_gradcheck():
    conf, correct = _conf(B=6, seed=10)
    conf.requires_grad_()
    assert torch.autograd.gradcheck(lambda c: ca_loss(c, correct), (conf,))
    assert torch.autograd.gradcheck(lambda c: ca_loss(c, correct, reduction="none"), (conf,))


# ---------------------------------------------------------------- ca_loss: bad inputs
@pytest.mark.parametrize("bad,match", [
    (lambda c, k: (c.clone().fill_(float("nan")), k), r"^confidence:"),
    (lambda c, k: ((c * 10).long(), k), r"^confidence:"),
    (lambda c, k: (c[None], k), r"^confidence:"),
    (lambda c, k: (c[:0], k[:0]), r"^confidence:"),
    (lambda c, k: (c, k.double()), r"^correct:"),
    (lambda c, k: (c, k.long() * 2), r"^correct:"),
    (lambda c, k: (c, k[:-1]), r"^correct:"),
    (lambda c, k: (c, k[None]), r"^correct:"),
])
def test_ca_loss_bad_inputs(bad, match):
    conf, correct = _conf()
    with pytest.raises(ValueError, match=match):
        ca_loss(*bad(conf, correct))


def test_ca_loss_bad_options():
    conf, correct = _conf()
    for eps in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"^eps:"):
            ca_loss(conf, correct, eps=eps)
        with pytest.raises(ValueError, match=r"^eps:"):
            CALoss(eps=eps)
    with pytest.raises(ValueError, match=r"^reduction:"):
        ca_loss(conf, correct, reduction="avg")
    with pytest.raises(ValueError, match=r"^reduction:"):
        CALoss(reduction="avg")
    with pytest.raises(TypeError, match=r"^correct:"):
        ca_loss(conf, [True] * 12)


# ---------------------------------------------------------------- DDP paths without processes
def test_ca_loss_ddp_path_uses_global_counts(monkeypatch):
    "Two identical ranks: counts double, the balancing is unchanged, each rank's mean part is half the loss."
    conf, correct = _conf(seed=11)
    single = ca_loss(conf, correct)
    seen = []
    monkeypatch.setattr(cac, "ddp_active", lambda g: seen.append(("ddp", g)) or bool(g))
    monkeypatch.setattr(cac, "all_sum", lambda x, active=True: seen.append(("sum", active)) or x.detach() * (2 if active else 1))
    monkeypatch.setattr(cac, "reduce_over_ranks",
                        lambda terms, n, red, active: seen.append(("reduce", active)) or terms.sum() / n)
    part = ca_loss(conf, correct, gather_distributed=True)
    torch.testing.assert_close(part, single / 2, rtol=1e-12, atol=0)
    assert ("ddp", True) in seen and ("reduce", True) in seen
    assert [a for k, a in seen if k == "sum"] == [True, True, True]
    seen.clear()
    torch.testing.assert_close(ca_loss(conf, correct), single, rtol=1e-12, atol=0)
    assert ("ddp", False) in seen and all(a is False for k, a in seen if k in ("sum", "reduce"))


def test_gather_distributed_reaches_ca_loss_from_logits(monkeypatch):
    z, t, y = _logits()
    seen = []
    real = cac.ddp_active
    monkeypatch.setattr(cac, "ddp_active", lambda g: seen.append(g) or real(g))
    ca_loss_from_logits(z, t, y, gather_distributed=True)
    CALossFromLogits(gather_distributed=True)(z, t, y)
    ca_loss_from_logits(z, t, y)
    assert seen == [True, True, False]


# ---------------------------------------------------------------- ca_loss_from_logits
def _ref_from_logits(z, t, y, balance=True):
    "Eq. (1) + (4) in Python floats: correctness from the raw arg-max, confidence = max softmax(z / T)."
    zs = z.tolist()
    ts = t.tolist() if isinstance(t, torch.Tensor) and t.ndim else [float(t)] * len(zs)
    confs, correct = [], []
    for row, ti, yi in zip(zs, ts, y.tolist()):
        m = max(row)
        e = [math.exp((v - m) / ti) for v in row]
        confs.append(max(e) / sum(e))
        correct.append(row.index(m) == yi)
    return _ref_ca(torch.tensor(confs, dtype=torch.float64), torch.tensor(correct), balance)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("balance", [True, False])
def test_from_logits_matches_loop(seed, balance):
    z, t, y = _logits(seed=seed)
    got = ca_loss_from_logits(z, t, y, balance=balance).item()
    assert got == pytest.approx(_ref_from_logits(z, t, y, balance), rel=1e-12)


def test_from_logits_scalar_temperatures():
    z, _, y = _logits(seed=2)
    want = _ref_from_logits(z, 1.7, y)
    for t in (1.7, torch.tensor(1.7, dtype=torch.float64), torch.full((12,), 1.7, dtype=torch.float64)):
        assert ca_loss_from_logits(z, t, y).item() == pytest.approx(want, rel=1e-12)


def test_from_logits_correctness_from_uncalibrated_argmax():
    "The correctness does not depend on T; a T that would change nothing in the arg-max still changes the loss."
    z, t, y = _logits(seed=3)
    conf = (z / t[:, None]).softmax(1).max(1).values
    torch.testing.assert_close(ca_loss_from_logits(z, t, y), ca_loss(conf, z.argmax(1) == y), rtol=1e-12, atol=0)
    for T in (0.1, 1.0, 10.0):
        assert torch.equal((z / T).argmax(1), z.argmax(1))


def test_from_logits_defaults_and_module():
    z, t, y = _logits(seed=4)
    base = ca_loss_from_logits(z, t, y)
    torch.testing.assert_close(base, ca_loss_from_logits(z, t, y, balance=True, eps=1e-12, reduction="mean",
                                                         gather_distributed=False), rtol=0, atol=0)
    assert not torch.allclose(base, ca_loss_from_logits(z, t, y, balance=False))
    for kw in ({}, {"balance": False}, {"eps": 3.0}, {"reduction": "none"}, {"reduction": "sum"}):
        torch.testing.assert_close(CALossFromLogits(**kw)(z, t, y), ca_loss_from_logits(z, t, y, **kw), rtol=0, atol=0)
    d = CALossFromLogits()
    assert (d.balance, d.eps, d.reduction, d.gather_distributed) == (True, 1e-12, "mean", False)
    m = CALossFromLogits(balance=False, eps=2.0, reduction="none", gather_distributed=True)
    assert (m.balance, m.eps, m.reduction, m.gather_distributed) == (False, 2.0, "none", True)
    assert "balance=True" in repr(d)
    with pytest.raises(ValueError, match=r"^eps:"):
        CALossFromLogits(eps=0)
    with pytest.raises(ValueError, match=r"^reduction:"):
        CALossFromLogits(reduction="x")


def test_from_logits_reductions():
    z, t, y = _logits(seed=5)
    none = ca_loss_from_logits(z, t, y, reduction="none")
    torch.testing.assert_close(none.mean(), ca_loss_from_logits(z, t, y), rtol=1e-12, atol=0)
    torch.testing.assert_close(none.sum(), ca_loss_from_logits(z, t, y, reduction="sum"), rtol=1e-12, atol=0)


def test_from_logits_gradcheck():
    z, t, y = _logits(B=6, C=4, seed=6)
    z.requires_grad_()
    t.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ca_loss_from_logits(a, b, y), (z, t))


def test_from_logits_gradient_sign_in_temperature():
    "d loss / d T < 0 for a wrong sample and > 0 for a correct one (confidence > 1/C)."
    z = torch.tensor([[2.0, 0.5, 0.0], [2.0, 0.5, 0.0], [0.0, 1.5, 0.2]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    t = torch.ones(3, dtype=torch.float64, requires_grad=True)
    ca_loss_from_logits(z, t, y, reduction="sum").backward()
    assert t.grad[0] > 0 and t.grad[1] < 0 and t.grad[2] > 0


def test_narrow_misclassification_toy():
    "The card's toy: one T by CE sharpens the narrowly wrong sample, one T by CA flattens it."
    z = torch.cat([torch.tensor([[0.2, 0.6]]), torch.tensor([[3.0, 0.0]]).repeat(9, 1)]).double()
    y = torch.zeros(10, dtype=torch.long)
    t_ce = float(TemperatureScaling().fit(z, y, "nll").temperature)
    t_ca = float(TemperatureScaling().fit(z, y, "ca").temperature)
    assert t_ca > 1.0 > t_ce
    conf = lambda t: (z[0] / t).softmax(0).max().item()
    assert conf(t_ca) < conf(1.0) < conf(t_ce)


@pytest.mark.parametrize("bad,match", [
    (lambda z, t, y: (z[:, :1], t, y), r"^logits:"),
    (lambda z, t, y: (z[0], t, y), r"^logits:"),
    (lambda z, t, y: (z.clone().fill_(float("inf")), t, y), r"^logits:"),
    (lambda z, t, y: (z, t, y + 100), r"^labels:"),
    (lambda z, t, y: (z, t, y[:-1]), r"^labels:"),
    (lambda z, t, y: (z, t, y.double()), r"^labels:"),
    (lambda z, t, y: (z, t[:-1], y), r"^temperature:"),
    (lambda z, t, y: (z, t[:, None], y), r"^temperature:"),
    (lambda z, t, y: (z, -t, y), r"^temperature:"),
    (lambda z, t, y: (z, t * 0, y), r"^temperature:"),
    (lambda z, t, y: (z, t.long(), y), r"^temperature:"),
    (lambda z, t, y: (z, t.clone().fill_(float("nan")), y), r"^temperature:"),
    (lambda z, t, y: (z, 0.0, y), r"^temperature:"),
    (lambda z, t, y: (z, -1.0, y), r"^temperature:"),
    (lambda z, t, y: (z, torch.tensor(0.0, dtype=torch.float64), y), r"^temperature:"),
])
def test_from_logits_bad_inputs(bad, match):
    z, t, y = _logits()
    with pytest.raises(ValueError, match=match):
        ca_loss_from_logits(*bad(z, t, y))


# ---------------------------------------------------------------- transform_consistency_features, Eq. (2)
def test_features_match_loop():
    g = torch.Generator().manual_seed(0)
    zo = torch.randn(5, 6, generator=g, dtype=torch.float64)
    views = [torch.randn(5, 6, generator=g, dtype=torch.float64) for _ in range(3)]
    for k in (1, 4, 6):
        got = transform_consistency_features(zo, views, k=k)
        assert got.shape == (5, 3 * k)
        for i in range(5):
            order = sorted(range(6), key=lambda j: -zo[i, j].item())[:k]
            want = [views[v].softmax(1)[i, j].item() for v in range(3) for j in order]
            assert got[i].tolist() == pytest.approx(want, rel=1e-12)
    torch.testing.assert_close(transform_consistency_features(zo, views), transform_consistency_features(zo, views, k=4))
    torch.testing.assert_close(transform_consistency_features(zo, tuple(views), k=2),
                               transform_consistency_features(zo, views, k=2))


def test_features_bad_inputs():
    zo = torch.randn(4, 5)
    with pytest.raises(ValueError, match=r"^k:"):
        transform_consistency_features(zo, [zo], k=0)
    with pytest.raises(ValueError, match=r"^k:"):
        transform_consistency_features(zo, [zo], k=6)
    with pytest.raises(ValueError, match=r"^k:"):
        transform_consistency_features(zo, [zo], k=2.0)
    with pytest.raises(ValueError, match=r"^k:"):
        transform_consistency_features(zo, [zo], k=True)
    with pytest.raises(ValueError, match=r"^logits_views:"):
        transform_consistency_features(zo, [])
    with pytest.raises(ValueError, match=r"^logits_views:"):
        transform_consistency_features(zo, zo)
    with pytest.raises(ValueError, match=r"^logits_views\[1\]:"):
        transform_consistency_features(zo, [zo, zo[:, :4]])
    with pytest.raises(ValueError, match=r"^logits_views\[0\]:"):
        transform_consistency_features(zo, [zo.clone().fill_(float("nan"))])
    with pytest.raises(ValueError, match=r"^logits_orig:"):
        transform_consistency_features(zo[0], [zo])


# ---------------------------------------------------------------- the calibrators
def test_adaptive_head_defaults_and_init():
    torch.manual_seed(0)
    head = AdaptiveTemperatureCalibrator()
    assert head.embed[0].in_features == 12 and head.embed[0].out_features == 5 and head.head.in_features == 5
    assert (head.t_min, head.t_max) == (0.1, 10.0)
    assert head.head.bias.item() == 1.0
    ref = torch.nn.Linear(5, 1)
    assert head.head.weight.abs().max() <= 0.1 * 1 / math.sqrt(5) + 1e-7  # default init bound scaled by 0.1
    zero = AdaptiveTemperatureCalibrator(init_scale=0.0, t_init=2.5)
    u = torch.rand(7, 12)
    torch.testing.assert_close(zero.temperature(u), torch.full((7,), 2.5))
    assert "t_min=0.1, t_max=10.0" in repr(head)
    del ref


def test_adaptive_head_init_scale_default():
    torch.manual_seed(1)
    a = AdaptiveTemperatureCalibrator()
    torch.manual_seed(1)
    b = AdaptiveTemperatureCalibrator(init_scale=1.0)
    torch.testing.assert_close(a.head.weight, 0.1 * b.head.weight)


def test_adaptive_head_forward_and_clamp():
    torch.manual_seed(0)
    head = AdaptiveTemperatureCalibrator(in_dim=6, hidden=3, t_min=0.2, t_max=4.0)
    z, u = torch.randn(9, 5), torch.rand(9, 6)
    zc, t = head(z, u)
    torch.testing.assert_close(zc, z / t[:, None])
    assert torch.equal(zc.argmax(1), z.argmax(1))
    with torch.no_grad():
        head.head.bias.fill_(100.0)
    assert torch.equal(head.temperature(u).detach(), torch.full((9,), 4.0))
    with torch.no_grad():
        head.head.bias.fill_(-100.0)
    assert torch.equal(head.temperature(u).detach(), torch.full((9,), 0.2))
    # inside the clamp, T is the affine head on the ReLU features
    with torch.no_grad():
        head.head.bias.fill_(1.0)
    want = (head.head(head.embed(u)).squeeze(1)).clamp(0.2, 4.0)
    torch.testing.assert_close(head.temperature(u), want)


def test_adaptive_head_bad_arguments():
    for kw, name in (({"in_dim": 0}, "in_dim"), ({"hidden": 0}, "hidden"), ({"in_dim": 2.0}, "in_dim"),
                     ({"hidden": True}, "hidden"), ({"t_min": 0}, "t_min"), ({"t_max": -1}, "t_max"),
                     ({"t_min": 5.0, "t_max": 5.0}, "t_max"), ({"t_init": 20.0}, "t_init"), ({"t_init": 0.05}, "t_init"),
                     ({"t_init": 0}, "t_init"), ({"init_scale": -1.0}, "init_scale")):
        with pytest.raises(ValueError, match=rf"^{name}:"):
            AdaptiveTemperatureCalibrator(**kw)
    AdaptiveTemperatureCalibrator(t_init=0.1)  # the bounds themselves are allowed
    AdaptiveTemperatureCalibrator(t_init=10.0)
    head = AdaptiveTemperatureCalibrator()
    with pytest.raises(ValueError, match=r"^feats:"):
        head.temperature(torch.rand(3, 11))
    with pytest.raises(ValueError, match=r"^feats:"):
        head(torch.randn(3, 10), torch.rand(4, 12))
    with pytest.raises(ValueError, match=r"^logits:"):
        head(torch.randn(3), torch.rand(3, 12))


def test_temperature_scaling_fit_matches_grid_search():
    z, _, y = _logits(B=200, C=5, seed=7)
    ts = TemperatureScaling()
    assert (ts.t_min, ts.t_max, ts.n_grid) == (0.05, 20.0, 521) and float(ts.temperature) == 1.0
    grid = torch.logspace(math.log10(0.05), math.log10(20.0), 521, dtype=torch.float64)
    want_nll = grid[torch.stack([F.cross_entropy(z / t, y) for t in grid]).argmin()]
    want_ca = grid[torch.stack([ca_loss_from_logits(z, t, y) for t in grid]).argmin()]
    assert float(ts.fit(z, y).temperature) == pytest.approx(float(want_nll))
    assert float(TemperatureScaling().fit(z, y, loss="ca").temperature) == pytest.approx(float(want_ca))
    torch.testing.assert_close(ts(z), z / want_nll)
    small = TemperatureScaling(t_min=2.0, t_max=3.0, n_grid=3).fit(z, y)
    assert float(small.temperature) in (2.0, pytest.approx(math.sqrt(6.0)), 3.0)
    assert "temperature=" in repr(ts)


def test_temperature_scaling_bad_arguments():
    z, _, y = _logits()
    with pytest.raises(ValueError, match=r"^loss:"):
        TemperatureScaling().fit(z, y, loss="brier")
    with pytest.raises(ValueError, match=r"^labels:"):
        TemperatureScaling().fit(z, y[:-1])
    with pytest.raises(ValueError, match=r"^logits:"):
        TemperatureScaling().fit(z[0], y)
    with pytest.raises(ValueError, match=r"^logits:"):
        TemperatureScaling()(z[0])
    for kw, name in (({"t_min": 0}, "t_min"), ({"t_max": 0}, "t_max"), ({"t_min": 3.0, "t_max": 2.0}, "t_max"),
                     ({"n_grid": 1}, "n_grid"), ({"n_grid": 2.5}, "n_grid"), ({"n_grid": True}, "n_grid")):
        with pytest.raises(ValueError, match=rf"^{name}:"):
            TemperatureScaling(**kw)
    TemperatureScaling(n_grid=2)


# ---------------------------------------------------------------- tests asked for by mutation testing (issue #7)
def test_transform_consistency_features_checks_every_tensor_by_name():
    zo = torch.randn(3, 5, dtype=torch.float64)
    views = [torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)]
    with pytest.raises(ValueError, match=r"^logits_orig: expected a floating-point tensor"):
        transform_consistency_features(torch.arange(15).reshape(3, 5), views)
    with pytest.raises(ValueError, match=r"^logits_views: expected a non-empty list of \(B, C\) logit tensors, one per "
                                         r"transformed view$"):
        transform_consistency_features(zo, [])
    with pytest.raises(ValueError, match=r"^logits_views\[0\]: expected 2 dimensions"):
        transform_consistency_features(zo, [views[0][None], views[1]])
    with pytest.raises(ValueError, match=r"^logits_views\[1\]: expected a floating-point tensor"):
        transform_consistency_features(zo, [views[0], torch.ones(3, 5, dtype=torch.long)])


def test_from_logits_computes_in_the_inputs_promoted_dtype():
    z, t, y = _logits(B=8, C=5, seed=3)
    want = ca_loss_from_logits(z, t, y)
    for zz, tt in ((z.float(), t), (z, t.float())):  # float64 wins whichever argument carries it
        got = ca_loss_from_logits(zz, tt, y)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, ca_loss_from_logits(zz.double(), tt.double(), y), rtol=0, atol=0)
    torch.testing.assert_close(ca_loss_from_logits(z.float(), t, y), want, rtol=1e-6, atol=1e-7)
    # a 0-d float64 temperature promotes too (a 0-d tensor alone would not promote float32 logits in z / t)
    t0 = torch.tensor(1.3, dtype=torch.float64)
    got = ca_loss_from_logits(z.float(), t0, y, reduction="none")
    assert got.dtype == torch.float64
    assert torch.equal(got, ca_loss_from_logits(z.float().double(), t0, y, reduction="none"))
    # bf16 logits compute in float32 (a number temperature is first made a tensor of the logits' dtype)
    zb, tb = z.to(torch.bfloat16), float(torch.tensor(1.3, dtype=torch.bfloat16))
    assert torch.equal(ca_loss_from_logits(zb, 1.3, y, reduction="none"),
                       ca_loss_from_logits(zb.float(), tb, y, reduction="none"))


def test_adaptive_head_smallest_sizes_and_relu_formula():
    torch.manual_seed(0)
    tiny = AdaptiveTemperatureCalibrator(in_dim=1, hidden=1)
    assert tiny.embed[0].in_features == 1 and tiny.head.in_features == 1
    head = AdaptiveTemperatureCalibrator(in_dim=4, hidden=6, t_min=0.01, t_max=100.0, init_scale=1.0)
    u = torch.randn(20, 4, dtype=torch.float32)
    w1, b1, w2, b2 = head.embed[0].weight, head.embed[0].bias, head.head.weight, head.head.bias
    pre = u @ w1.T + b1
    assert (pre < 0).any() and (pre > 0).any()
    want = (F.relu(pre) @ w2.T + b2).squeeze(1).clamp(0.01, 100.0)
    torch.testing.assert_close(head.temperature(u), want)
    assert not torch.allclose(want, (pre @ w2.T + b2).squeeze(1).clamp(0.01, 100.0))


def test_adaptive_head_messages_name_the_argument():
    head = AdaptiveTemperatureCalibrator(in_dim=3)
    with pytest.raises(ValueError, match=r"^feats: expected 2 dimensions"):
        head.temperature(torch.rand(3))
    with pytest.raises(ValueError, match=r"^feats: expected a floating-point tensor"):
        head.temperature(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^logits: expected a floating-point tensor"):
        head(torch.ones(2, 5, dtype=torch.long), torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"^feats: expected 2 rows to match logits, got shape \(4, 3\)$"):
        head(torch.randn(2, 5), torch.rand(4, 3))


def test_temperature_scaling_float64_buffer_and_forward():
    with pytest.raises(ValueError, match=r"^t_max: expected a value above t_min=2.0"):
        TemperatureScaling(t_min=2.0, t_max=2.0)
    ts = TemperatureScaling(t_min=0.5, t_max=3.0, n_grid=7)
    assert ts.temperature.dtype == torch.float64
    z, _, y = _logits(B=50, C=4, seed=2)
    grid = torch.logspace(math.log10(0.5), math.log10(3.0), 7, dtype=torch.float64)
    ts.fit(z, y)
    assert ts.temperature.item() in grid.tolist()  # the exact float64 grid value, not a float32 rounding of it
    with pytest.raises(ValueError, match=r"^logits: expected a floating-point tensor"):
        ts(torch.ones(2, 4, dtype=torch.long))
    with torch.no_grad():
        ts.temperature.fill_(1.1)
    zb = torch.randn(64, 4, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    assert torch.equal(ts(zb), zb / torch.tensor(1.1, dtype=torch.bfloat16))  # T cast to the logits' dtype first


def test_ca_loss_correct_shape_messages():
    conf, correct = _conf(B=6)
    with pytest.raises(ValueError, match=r"^correct: expected 1 dimensions"):
        ca_loss(conf, correct[:, None])
    with pytest.raises(ValueError, match=r"^correct: expected 6 values to match confidence's batch, got 0$"):
        ca_loss(conf, correct[:0])
