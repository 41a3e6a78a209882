"""Tests for lossbook.calibration.rankmixup (Noh et al. 2023, RankMixup: MRL and M-NDCG).

No library implements MRL or M-NDCG: the references are plain float64 loops transcribed from the notebook's
Eqs. (1)-(7) (the same equations as the official code, cvlab-yonsei/RankMixup), F.cross_entropy for the CE part,
torchmetrics for the ECE the notebook reports, and the properties of the card (limits, gradients, invariances).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.calibration import rankmixup as rk
from lossbook.calibration.rankmixup import (
    MixupRankingLoss,
    MNDCGLoss,
    RankMixupLoss,
    mixup_batch,
    mixup_ranking_loss,
    mndcg_loss,
    rankmixup_loss,
    same_class_mask,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _logits(B=12, C=7, M=None, seed=0, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shape = (B, C) if M is None else (M, B, C)
    return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)


def _mix_labels(B=12, C=7, M=3, seed=0, alpha=2.0):
    g = torch.Generator().manual_seed(100 + seed)
    y = torch.randint(C, (B,), generator=g)
    _, y_mix, lams, perms = mixup_batch(torch.zeros(B, 1, dtype=torch.float64), F.one_hot(y, C).double(), alpha, M, g)
    return y, y_mix.view(M, B, C), lams, perms


def _conf(row, use_prob):
    if not use_prob:
        return max(row)
    m = max(row)
    return 1.0 / math.fsum(math.exp(v - m) for v in row)


def _mrl_loop(raw, mix, margin, use_prob, mask=None):
    "Eq. (3)/(4), one sample at a time: max(0, conf(mix) - conf(raw) + m), 0 where masked out."
    out = []
    for i, (r, m) in enumerate(zip(raw.tolist(), mix.tolist())):
        v = max(0.0, _conf(m, use_prob) - _conf(r, use_prob) + margin)
        out.append(v if mask is None or bool(mask[i]) else 0.0)
    return torch.tensor(out, dtype=torch.float64)


def _mndcg_loop(raw, mix, y_mix):
    "Eqs. (5)-(7), one sample at a time, with an explicit stable sort by descending relevance."
    M, B = mix.shape[0], raw.shape[0]
    out = []
    for i in range(B):
        items = [(max(y_mix[j, i].tolist()), _conf(mix[j, i].tolist(), True), j) for j in range(M)]
        items.sort(key=lambda t: (-t[0], t[2]))
        rel = [1.0] + [t[0] for t in items]
        conf = [_conf(raw[i].tolist(), True)] + [t[1] for t in items]
        dcg = sum(c / math.log2(t + 1) for t, c in enumerate(conf, start=1))
        idcg = sum(r / math.log2(t + 1) for t, r in enumerate(rel, start=1))
        out.append(1 - (dcg / idcg if idcg > dcg else idcg / dcg))
    return torch.tensor(out, dtype=torch.float64)


def _with_conf(conf, C=4):
    "Logits whose softmax has maximum `conf` (at class 0), the rest spread evenly."
    conf = torch.as_tensor(conf, dtype=torch.float64)
    rest = ((1 - conf) / (C - 1)).log()
    return torch.stack([conf.log()] + [rest] * (C - 1), -1)


# ---------------------------------------------------------------- references: MRL
@pytest.mark.parametrize("margin,use_prob", [(2.0, False), (0.5, False), (0.0, False), (0.1, True), (0.7, True)])
def test_mrl_matches_loop(margin, use_prob):
    raw, mix = _logits(seed=1), _logits(seed=2)
    got = mixup_ranking_loss(raw, mix, margin=margin, use_prob=use_prob, reduction="none")
    torch.testing.assert_close(got, _mrl_loop(raw, mix, margin, use_prob), rtol=1e-12, atol=1e-12)


def test_mrl_defaults_are_official_logit_version_with_margin_2():
    raw, mix = _logits(seed=3), _logits(seed=4)
    ref = _mrl_loop(raw, mix, 2.0, False)
    torch.testing.assert_close(mixup_ranking_loss(raw, mix), ref.mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mixup_ranking_loss(raw, mix), mixup_ranking_loss(raw, mix, 2.0, False, None, "mean"))
    assert not torch.isclose(mixup_ranking_loss(raw, mix), mixup_ranking_loss(raw, mix, margin=1.0))
    assert not torch.isclose(mixup_ranking_loss(raw, mix), mixup_ranking_loss(raw, mix, use_prob=True))


def test_mrl_hand_value_zero_region_and_gradient():
    zr = torch.tensor([[3.0, 0.0, 1.0], [0.0, 2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    zm = torch.tensor([[2.0, 1.5, 0.0], [0.5, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(mixup_ranking_loss(zr, zm, reduction="none"), torch.tensor([1.0, 0.5], dtype=torch.float64))
    mixup_ranking_loss(zr, zm, reduction="sum").backward()
    # only the arg-max entries get a gradient: -1 on the raw one, +1 on the mixed one
    assert torch.equal(zr.grad, torch.tensor([[-1.0, 0, 0], [0, -1.0, 0]], dtype=torch.float64))
    assert torch.equal(zm.grad, torch.tensor([[1.0, 0, 0], [1.0, 0, 0]], dtype=torch.float64))
    # every raw max-logit leads its mix max-logit by >= m: zero loss and zero gradient
    raw = _logits(seed=5)
    mix = raw - 3.0  # every logit 3 lower
    assert mixup_ranking_loss(raw, mix, margin=3.0).item() <= 1e-12
    assert mixup_ranking_loss(raw, mix, margin=2.5).item() == 0.0
    assert mixup_ranking_loss(raw, mix, margin=3.0 + 1e-9).item() > 0.0


def test_mrl_mask_is_a_masked_mean():
    raw, mix = _logits(B=10, seed=6), _logits(B=10, seed=7)
    mask = torch.tensor([True, False] * 5)
    ref = _mrl_loop(raw, mix, 2.0, False)
    torch.testing.assert_close(mixup_ranking_loss(raw, mix, mask=mask), ref[mask].mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mixup_ranking_loss(raw, mix, mask=mask, reduction="sum"), ref[mask].sum())
    torch.testing.assert_close(mixup_ranking_loss(raw, mix, mask=mask, reduction="none"), ref * mask)
    none_kept = mixup_ranking_loss(raw, mix, mask=torch.zeros(10, dtype=torch.bool))
    assert none_kept.item() == 0.0 and torch.isfinite(none_kept)
    all_kept = mixup_ranking_loss(raw, mix, mask=torch.ones(10, dtype=torch.bool))
    torch.testing.assert_close(all_kept, mixup_ranking_loss(raw, mix))
    # the official broadcast: (B,) * (B, 1) -> (B, B), whose mean is mean(hinge) * mean(mask)
    official = (mask.double() * F.relu(mix.max(1, keepdim=True).values - raw.max(1, keepdim=True).values + 2.0))
    assert official.shape == (10, 10)
    torch.testing.assert_close(official.mean(), ref.mean() * 0.5)
    assert not torch.isclose(official.mean(), mixup_ranking_loss(raw, mix, mask=mask))


def test_same_class_mask():
    y_mix = torch.tensor([[0.3, 0.7, 0.0], [1.0, 0.0, 0.0], [0.6, 0.4, 0.0], [1 - 1e-8, 1e-8, 0.0], [0.999, 0.001, 0],
                          [1 - 5e-7, 5e-7, 0.0], [1 - 2e-6, 2e-6, 0.0]], dtype=torch.float64)
    assert same_class_mask(y_mix).tolist() == [True, False, True, False, True, False, True]  # tol 1e-6
    assert same_class_mask(y_mix, tol=0.01).tolist() == [True, False, True, False, False, False, False]
    assert same_class_mask(y_mix, tol=1e-7).tolist() == [True, False, True, False, True, True, True]
    assert same_class_mask(y_mix, tol=0.0).tolist() == [True, False, True, True, True, True, True]
    # mixup of a same-class pair: lambda * 1 + (1 - lambda) * 1 is one-hot up to rounding
    y, y_mix3, lams, perms = _mix_labels(B=40, C=3, M=1, seed=2)
    same = y == y[perms[0]]
    assert same.any() and (~same).any()
    assert torch.equal(same_class_mask(y_mix3[0]), ~same)


# ---------------------------------------------------------------- references: M-NDCG
@pytest.mark.parametrize("M,seed", [(1, 0), (2, 1), (3, 2), (5, 3)])
def test_mndcg_matches_loop(M, seed):
    raw, mix = _logits(seed=seed), _logits(M=M, seed=seed + 10)
    _, y_mix, _, _ = _mix_labels(M=M, seed=seed)
    got = mndcg_loss(raw, mix, y_mix, reduction="none")
    torch.testing.assert_close(got, _mndcg_loop(raw, mix, y_mix), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mndcg_loss(raw, mix, y_mix), got.mean())  # the default reduction is the mean


def test_mndcg_hand_value_sort_and_both_branches():
    d = 1 / torch.log2(torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64))
    r = torch.tensor([0.6, 0.9], dtype=torch.float64)
    ym = torch.stack([torch.tensor([v, 1 - v, 0.0, 0.0], dtype=torch.float64) for v in r])[:, None, :]
    zr = _with_conf([0.95])
    # under-confident mixups: IDCG > DCG, NDCG = DCG / IDCG; the 0.9 item is ranked before the 0.6 item
    zm = _with_conf(torch.tensor([0.5, 0.8], dtype=torch.float64))[:, None, :]
    dcg, idcg = 0.95 * d[0] + 0.8 * d[1] + 0.5 * d[2], d[0] + 0.9 * d[1] + 0.6 * d[2]
    torch.testing.assert_close(mndcg_loss(zr, zm, ym), 1 - dcg / idcg)
    # over-confident mixups: DCG > IDCG, NDCG = IDCG / DCG
    zm = _with_conf(torch.tensor([0.99, 0.98], dtype=torch.float64))[:, None, :]
    dcg = 0.95 * d[0] + 0.98 * d[1] + 0.99 * d[2]
    torch.testing.assert_close(mndcg_loss(zr, zm, ym), 1 - idcg / dcg)
    # a wrong order would give another value: the sort matters
    wrong = 0.95 * d[0] + 0.99 * d[1] + 0.98 * d[2]
    assert not torch.isclose(mndcg_loss(zr, zm, ym), 1 - idcg / wrong)


def test_mndcg_zero_when_confidences_equal_relevances():
    r = torch.tensor([0.9, 0.55, 0.7], dtype=torch.float64)
    ym = torch.stack([torch.tensor([v, 1 - v, 0, 0], dtype=torch.float64) for v in r])[:, None, :]
    zr = _with_conf([1 - 1e-13])
    zm = _with_conf(r)[:, None, :]
    assert mndcg_loss(zr, zm, ym).item() == pytest.approx(0.0, abs=1e-10)


def test_mndcg_symmetric_in_dcg_and_idcg():
    "Confidences whose DCG is k times IDCG give the same loss as confidences whose DCG is IDCG / k: 1 - 1/k."
    d = 1 / torch.log2(torch.tensor([2.0, 3.0], dtype=torch.float64))
    r1 = 0.5  # one mixup, relevance 0.5: IDCG = d0 + 0.5 d1
    idcg = float(d[0] + r1 * d[1])
    ym = torch.zeros(1, 1, 10, dtype=torch.float64)
    ym[..., 0], ym[..., 1] = r1, 1 - r1
    c0 = 0.99
    for k in (1.1, 1.2):
        c_hi = (k * idcg - c0 * float(d[0])) / float(d[1])  # DCG = k IDCG
        c_lo = (idcg / k - c0 * float(d[0])) / float(d[1])  # DCG = IDCG / k
        assert 0.1 < c_lo < c_hi < 1
        lo = mndcg_loss(_with_conf([c0], C=10), _with_conf([c_lo], C=10)[:, None, :], ym)
        hi = mndcg_loss(_with_conf([c0], C=10), _with_conf([c_hi], C=10)[:, None, :], ym)
        torch.testing.assert_close(lo, hi)
        torch.testing.assert_close(lo, torch.tensor(1 - 1 / k, dtype=torch.float64))


def test_mndcg_bounds_ties_and_same_class_relevance():
    raw, mix = _logits(B=200, seed=8, scale=4), _logits(B=200, M=3, seed=9, scale=4)
    y, y_mix, lams, perms = _mix_labels(B=200, M=3, seed=4)
    per = mndcg_loss(raw, mix, y_mix, reduction="none")
    assert (per >= 0).all() and (per < 1).all()
    rel = y_mix.max(-1).values  # (M, B)
    for j in range(3):
        same = y == y[perms[j]]
        torch.testing.assert_close(rel[j][same], torch.ones(int(same.sum()), dtype=torch.float64))
        lam = float(lams[j])
        torch.testing.assert_close(rel[j][~same], torch.full((int((~same).sum()),), max(lam, 1 - lam), dtype=torch.float64))
    # tied relevances (two one-hot copies): the stable sort keeps the copy order
    tied = torch.zeros(2, 1, 4, dtype=torch.float64)
    tied[..., 0] = 1.0
    zm = _with_conf(torch.tensor([0.7, 0.4], dtype=torch.float64))[:, None, :]
    d = 1 / torch.log2(torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64))
    dcg = 0.9 * d[0] + 0.7 * d[1] + 0.4 * d[2]
    torch.testing.assert_close(mndcg_loss(_with_conf([0.9]), zm, tied), 1 - dcg / d.sum())
    zm_swapped = zm.flip(0)
    dcg_swapped = 0.9 * d[0] + 0.4 * d[1] + 0.7 * d[2]
    torch.testing.assert_close(mndcg_loss(_with_conf([0.9]), zm_swapped, tied), 1 - dcg_swapped / d.sum())


def test_class_permutation_invariance():
    raw, mix = _logits(seed=11), _logits(M=3, seed=12)
    _, y_mix, _, _ = _mix_labels(seed=5)
    p = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mndcg_loss(raw[:, p], mix[..., p], y_mix[..., p], "none"), mndcg_loss(raw, mix, y_mix, "none"))
    for use_prob in (False, True):
        torch.testing.assert_close(mixup_ranking_loss(raw[:, p], mix[0][:, p], use_prob=use_prob, reduction="none"),
                                   mixup_ranking_loss(raw, mix[0], use_prob=use_prob, reduction="none"))


def test_gradcheck():
    raw = _logits(B=4, C=5, seed=13).requires_grad_(True)
    mix = _logits(B=4, C=5, M=3, seed=14).requires_grad_(True)
    _, y_mix, _, _ = _mix_labels(B=4, C=5, M=3, seed=6)
    assert torch.autograd.gradcheck(lambda a, b: mndcg_loss(a, b, y_mix, "none"), (raw, mix))
    assert torch.autograd.gradcheck(lambda a, b: mixup_ranking_loss(a, b[0], margin=1.3, reduction="none"), (raw, mix))
    assert torch.autograd.gradcheck(lambda a, b: mixup_ranking_loss(a, b[0], margin=0.2, use_prob=True), (raw, mix))


# ---------------------------------------------------------------- mixup_batch
def test_mixup_batch_equation_and_shapes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 1, 3, 3, generator=g, dtype=torch.float64)
    y = F.one_hot(torch.randint(4, (9,), generator=g), 4).double()
    x_mix, y_mix, lams, perms = mixup_batch(x, y, alpha=1.0, num=4, generator=g)
    assert x_mix.shape == (36, 1, 3, 3) and y_mix.shape == (36, 4) and lams.shape == (4,) and perms.shape == (4, 9)
    assert lams.dtype == torch.float64 and ((lams > 0) & (lams < 1)).all()
    for j in range(4):
        torch.testing.assert_close(x_mix[9 * j: 9 * (j + 1)], lams[j] * x + (1 - lams[j]) * x[perms[j]])
        torch.testing.assert_close(y_mix[9 * j: 9 * (j + 1)], lams[j] * y + (1 - lams[j]) * y[perms[j]])
        assert sorted(perms[j].tolist()) == list(range(9))
    torch.testing.assert_close(y_mix.sum(1), torch.ones(36, dtype=torch.float64))
    assert len(set(lams.tolist())) == 4  # one lambda per copy, shared by the batch


def test_mixup_batch_limits_and_default_num():
    x = torch.randn(5, 3, dtype=torch.float64)
    y = F.one_hot(torch.tensor([0, 1, 2, 1, 0]), 3).double()
    x0, y0, l0, _ = mixup_batch(x, y, alpha=0.0)
    assert torch.equal(x0, x) and torch.equal(y0, y) and l0.tolist() == [1.0]  # alpha -> 0: lambda = 1
    x1, y1, l1, p1 = mixup_batch(x[:1], y[:1], alpha=2.0)  # a batch of one: the permutation is the identity
    torch.testing.assert_close(x1, x[:1]) ; torch.testing.assert_close(y1, y[:1])
    assert p1.tolist() == [[0]] and x1.shape == (1, 3)  # num defaults to 1


def test_mixup_batch_generators():
    x, y = torch.randn(8, 2), F.one_hot(torch.arange(8) % 4, 4).float()
    a = mixup_batch(x, y, 2.0, 3, torch.Generator().manual_seed(7))
    b = mixup_batch(x, y, 2.0, 3, torch.Generator().manual_seed(7))
    c = mixup_batch(x, y, 2.0, 3, torch.Generator().manual_seed(8))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[2], c[2])
    # the generator path leaves the global RNG alone; without a generator the global RNG decides
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    mixup_batch(x, y, 2.0, 2, torch.Generator().manual_seed(1))
    assert torch.equal(before, torch.random.get_rng_state())
    torch.manual_seed(3)
    d = mixup_batch(x, y, 2.0, 2)
    torch.manual_seed(3)
    e = mixup_batch(x, y, 2.0, 2)
    assert all(torch.equal(u, v) for u, v in zip(d, e))
    assert x.dtype == a[0].dtype == a[1].dtype == torch.float32


def test_beta_draws_have_beta_mean_and_variance():
    g = torch.Generator().manual_seed(0)
    lams = torch.tensor([rk._beta(2.0, g) for _ in range(3000)], dtype=torch.float64)
    assert abs(lams.mean().item() - 0.5) < 0.02
    assert abs(lams.var().item() - 1 / 20) < 0.006  # Beta(a, a): variance 1 / (4 (2a + 1))
    assert rk._beta(0.0, g) == 1.0


# ---------------------------------------------------------------- the objective, Eq. (2)
def test_rankmixup_loss_parts_and_defaults():
    B, C, M = 8, 6, 3
    y, y_mix, _, _ = _mix_labels(B=B, C=C, M=M, seed=7)
    raw, mix = _logits(B=B, C=C, seed=15), _logits(B=B, C=C, M=M, seed=16).reshape(M * B, C)
    y_mix = y_mix.reshape(M * B, C)
    total, parts = rankmixup_loss(raw, y, mix, y_mix)  # defaults: M-NDCG, alpha 0.1
    ce = F.cross_entropy(raw, y)
    nd = mndcg_loss(raw, mix.view(M, B, C), y_mix.view(M, B, C))
    torch.testing.assert_close(parts["ce"], ce)
    torch.testing.assert_close(parts["rank"], nd)
    torch.testing.assert_close(total, ce + 0.1 * nd)
    t2, _ = rankmixup_loss(raw, y, mix, y_mix, "mndcg", 0.5)
    torch.testing.assert_close(t2, ce + 0.5 * nd)
    # MRL: each copy against its raw sample, same-class pairs masked out, margin 2 on max logits by default
    total, parts = rankmixup_loss(raw, y, mix, y_mix, kind="mrl")
    mask = same_class_mask(y_mix)
    ref = _mrl_loop(raw.repeat(M, 1), mix, 2.0, False, mask)
    torch.testing.assert_close(parts["rank"], ref.sum() / mask.sum())
    torch.testing.assert_close(total, ce + 0.1 * parts["rank"])
    _, p_all = rankmixup_loss(raw, y, mix, y_mix, kind="mrl", mask_same_class=False)
    torch.testing.assert_close(p_all["rank"], _mrl_loop(raw.repeat(M, 1), mix, 2.0, False).mean())
    _, p_prob = rankmixup_loss(raw, y, mix, y_mix, kind="mrl", margin=0.3, use_prob=True)
    torch.testing.assert_close(p_prob["rank"], _mrl_loop(raw.repeat(M, 1), mix, 0.3, True, mask).sum() / mask.sum())
    t0, _ = rankmixup_loss(raw, y, mix, y_mix, alpha=0.0)
    torch.testing.assert_close(t0, ce)


def test_rankmixup_module_passes_every_setting():
    B, C, M = 8, 6, 1
    y, y_mix, _, _ = _mix_labels(B=B, C=C, M=M, seed=8)
    raw, mix = _logits(B=B, C=C, seed=17), _logits(B=B, C=C, M=M, seed=18).reshape(M * B, C)
    y_mix = y_mix.reshape(M * B, C)
    for kw in ({}, {"kind": "mrl"}, {"kind": "mrl", "alpha": 0.7, "margin": 0.4}, {"kind": "mrl", "use_prob": True, "margin": 0.05},
               {"kind": "mrl", "mask_same_class": False}, {"kind": "mndcg", "alpha": 2.0}):
        t_mod, p_mod = RankMixupLoss(**kw)(raw, y, mix, y_mix)
        t_fn, p_fn = rankmixup_loss(raw, y, mix, y_mix, **kw)
        assert torch.equal(t_mod, t_fn) and all(torch.equal(p_mod[k], p_fn[k]) for k in ("ce", "rank"))
    defaults = RankMixupLoss()
    assert (defaults.kind, defaults.alpha, defaults.margin, defaults.use_prob, defaults.mask_same_class) == \
        ("mndcg", 0.1, 2.0, False, True)
    assert "kind='mndcg'" in repr(defaults) and "mask_same_class=True" in repr(defaults)


# ---------------------------------------------------------------- reductions, modules, dtypes, devices
def test_reductions():
    raw, mix = _logits(seed=19), _logits(M=3, seed=20)
    _, y_mix, _, _ = _mix_labels(seed=9)
    for fn in (lambda r: mixup_ranking_loss(raw, mix[0], reduction=r), lambda r: mndcg_loss(raw, mix, y_mix, reduction=r)):
        none = fn("none")
        assert none.shape == (12,)
        torch.testing.assert_close(fn("mean"), none.mean())
        torch.testing.assert_close(fn("sum"), none.sum())


def test_modules_equal_functions_and_defaults():
    raw, mix = _logits(seed=21), _logits(M=3, seed=22)
    _, y_mix, _, _ = _mix_labels(seed=10)
    mask = torch.arange(12) % 3 > 0
    assert torch.equal(MixupRankingLoss()(raw, mix[0]), mixup_ranking_loss(raw, mix[0]))
    assert torch.equal(MixupRankingLoss(0.3, True, "sum")(raw, mix[0], mask),
                       mixup_ranking_loss(raw, mix[0], 0.3, True, mask, "sum"))
    assert torch.equal(MixupRankingLoss(margin=1.0, reduction="none")(raw, mix[0]),
                       mixup_ranking_loss(raw, mix[0], margin=1.0, reduction="none"))
    assert torch.equal(MNDCGLoss()(raw, mix, y_mix), mndcg_loss(raw, mix, y_mix))
    assert torch.equal(MNDCGLoss("none")(raw, mix, y_mix), mndcg_loss(raw, mix, y_mix, "none"))
    m = MixupRankingLoss()
    assert (m.margin, m.use_prob, m.reduction) == (2.0, False, "mean")
    assert repr(m).endswith("(margin=2.0, use_prob=False, reduction='mean')")
    assert MNDCGLoss().reduction == "mean" and "reduction='mean'" in repr(MNDCGLoss())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_devices(dtype, device):
    raw64, mix64 = _logits(seed=23), _logits(M=3, seed=24)
    _, ym64, _, _ = _mix_labels(seed=11)
    raw = raw64.to(device, dtype).requires_grad_(True)
    mix, ym = mix64.to(device, dtype).requires_grad_(True), ym64.to(device, dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for got, ref in ((mndcg_loss(raw, mix, ym), mndcg_loss(raw64, mix64, ym64)),
                     (mixup_ranking_loss(raw, mix[0]), mixup_ranking_loss(raw64, mix64[0]))):
        assert got.dtype == dtype and got.device.type == device
        torch.testing.assert_close(got.double().cpu(), ref, rtol=tol, atol=tol)
    (mndcg_loss(raw, mix, ym) + mixup_ranking_loss(raw, mix[0])).backward()
    assert raw.grad.dtype == dtype and torch.isfinite(raw.grad).all() and torch.isfinite(mix.grad).all()
    x_mix, y_mix, _, perms = mixup_batch(raw.detach(), ym[0], 1.0, 2)
    assert x_mix.device.type == device and perms.device.type == device


def test_ece_is_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    from lossbook.metrics import expected_calibration_error
    g = torch.Generator().manual_seed(0)
    p = (3 * torch.randn(500, 10, generator=g)).softmax(1)
    y = torch.randint(10, (500,), generator=g)
    ref = tm.multiclass_calibration_error(p, y, num_classes=10, n_bins=15, norm="l1")
    assert expected_calibration_error(p, y, 15) == pytest.approx(float(ref), abs=1e-6)


# ---------------------------------------------------------------- bad inputs: each message starts with the argument's name
def _bad_calls():
    raw, mix = _logits(B=4, C=3, seed=0), _logits(B=4, C=3, M=2, seed=1)
    _, ym, _, _ = _mix_labels(B=4, C=3, M=2, seed=0)
    y = torch.tensor([0, 1, 2, 0])
    nan = raw.clone(); nan[0, 0] = float("nan")
    inf_mix = mix.clone(); inf_mix[0, 0, 0] = float("inf")
    neg = ym.clone(); neg[0, 0, 0] = -0.1
    x = torch.randn(4, 5)
    flat_mix, flat_ym = mix.reshape(8, 3), ym.reshape(8, 3)
    return [
        (lambda: mixup_ranking_loss(nan, raw), "logits_raw"),
        (lambda: mixup_ranking_loss(raw, nan), "logits_mix"),
        (lambda: mixup_ranking_loss(raw[:0], raw[:0]), "logits_raw"),
        (lambda: mixup_ranking_loss(raw.long(), raw), "logits_raw"),
        (lambda: mixup_ranking_loss(raw, raw.long()), "logits_mix"),
        (lambda: mixup_ranking_loss(raw[:, :1], raw[:, :1]), "logits_raw"),
        (lambda: mixup_ranking_loss(raw, raw[:3]), "logits_mix"),
        (lambda: mixup_ranking_loss(raw[0], raw[0]), "logits_raw"),
        (lambda: mixup_ranking_loss(raw, raw, margin=-0.1), "margin"),
        (lambda: mixup_ranking_loss(raw, raw, margin=float("nan")), "margin"),
        (lambda: mixup_ranking_loss(raw, raw, reduction="avg"), "reduction"),
        (lambda: mixup_ranking_loss(raw, raw, mask=torch.ones(4)), "mask"),
        (lambda: mixup_ranking_loss(raw, raw, mask=torch.ones(3, dtype=torch.bool)), "mask"),
        (lambda: mixup_ranking_loss(raw, raw, mask=torch.ones(4, 1, dtype=torch.bool)), "mask"),
        (lambda: MixupRankingLoss(margin=-1.0), "margin"),
        (lambda: MixupRankingLoss(reduction="avg"), "reduction"),
        (lambda: mndcg_loss(nan, mix, ym), "logits_raw"),
        (lambda: mndcg_loss(raw, inf_mix, ym), "logits_mix"),
        (lambda: mndcg_loss(raw, mix, ym.clone().fill_(float("nan"))), "y_mix"),
        (lambda: mndcg_loss(raw[:0], mix, ym), "logits_raw"),
        (lambda: mndcg_loss(raw, mix[:, :3], ym), "logits_mix"),
        (lambda: mndcg_loss(raw, mix[0], ym), "logits_mix"),
        (lambda: mndcg_loss(raw, mix, ym[:, :3]), "y_mix"),
        (lambda: mndcg_loss(raw, mix, ym[0]), "y_mix"),
        (lambda: mndcg_loss(raw, mix, ym.long()), "y_mix"),
        (lambda: mndcg_loss(raw, mix.long(), ym), "logits_mix"),
        (lambda: mndcg_loss(raw, mix, neg), "y_mix"),
        (lambda: mndcg_loss(raw, mix[:0], ym[:0]), "logits_mix"),
        (lambda: mndcg_loss(raw[:, :1], mix[..., :1], ym[..., :1]), "logits_raw"),
        (lambda: mndcg_loss(raw, mix, ym, reduction="avg"), "reduction"),
        (lambda: MNDCGLoss(reduction="avg"), "reduction"),
        (lambda: mixup_batch(x, F.one_hot(y, 3).float(), alpha=-1.0), "alpha"),
        (lambda: mixup_batch(x, F.one_hot(y, 3).float(), alpha=1.0, num=0), "num"),
        (lambda: mixup_batch(x, F.one_hot(y, 3).float(), alpha=1.0, num=1.5), "num"),
        (lambda: mixup_batch(x, F.one_hot(y, 3).float(), alpha=1.0, num=True), "num"),
        (lambda: mixup_batch(x, F.one_hot(y[:3], 3).float(), alpha=1.0), "y_onehot"),
        (lambda: mixup_batch(x, y, alpha=1.0), "y_onehot"),
        (lambda: mixup_batch(x, F.one_hot(y, 3), alpha=1.0), "y_onehot"),
        (lambda: mixup_batch(x.long(), F.one_hot(y, 3).float(), alpha=1.0), "x"),
        (lambda: mixup_batch(x[:0], F.one_hot(y, 3).float()[:0], alpha=1.0), "x"),
        (lambda: same_class_mask(ym.long()), "y_mix"),
        (lambda: same_class_mask(ym, tol=-1e-3), "tol"),
        (lambda: rankmixup_loss(raw, y, flat_mix, flat_ym, kind="ndcg"), "kind"),
        (lambda: rankmixup_loss(raw, y, flat_mix, flat_ym, alpha=-0.1), "alpha"),
        (lambda: rankmixup_loss(raw, y[:3], flat_mix, flat_ym), "target"),
        (lambda: rankmixup_loss(raw, y + 3, flat_mix, flat_ym), "target"),
        (lambda: rankmixup_loss(raw, y.float(), flat_mix, flat_ym), "target"),
        (lambda: rankmixup_loss(nan, y, flat_mix, flat_ym), "logits_raw"),
        (lambda: rankmixup_loss(raw, y, flat_mix[:7], flat_ym[:7]), "logits_mix"),
        (lambda: rankmixup_loss(raw, y, flat_mix[:, :2], flat_ym[:, :2]), "logits_mix"),
        (lambda: rankmixup_loss(raw, y, flat_mix, flat_ym[:4]), "y_mix"),
        (lambda: rankmixup_loss(raw, y, flat_mix, ym), "y_mix"),
        (lambda: rankmixup_loss(raw, y, mix, ym), "logits_mix"),
        (lambda: RankMixupLoss(kind="ndcg"), "kind"),
        (lambda: RankMixupLoss(alpha=-1.0), "alpha"),
        (lambda: RankMixupLoss(margin=-1.0), "margin"),
    ]


@pytest.mark.parametrize("i", range(len(_bad_calls())))
def test_bad_inputs_name_the_argument(i):
    call, name = _bad_calls()[i]
    with pytest.raises((ValueError, TypeError), match=rf"^{name}:"):
        call()


def test_rankmixup_loss_validates_margin_for_both_kinds_and_y_mix_sign():
    raw = _logits(B=4, C=3, seed=0)
    y = torch.tensor([0, 1, 2, 0])
    mix = _logits(B=4, C=3, M=1, seed=1).reshape(4, 3)
    ym = F.one_hot(y, 3).double() * 0.6 + 0.4 / 3
    for kind in ("mrl", "mndcg"):
        with pytest.raises(ValueError, match=r"^margin:"):
            rankmixup_loss(raw, y, mix, ym, kind=kind, margin=-1.0)
    with pytest.raises(ValueError, match=r"^y_mix:"):
        rankmixup_loss(raw, y, mix, -ym, kind="mndcg")


# ---------------------------------------------------------------- mutation pass (#7): the gaps its survivors showed
def test_two_classes_and_zero_margin_alpha_are_legal():
    raw, mix = _logits(B=5, C=2, seed=30), _logits(B=5, C=2, M=2, seed=31)
    _, ym, _, _ = _mix_labels(B=5, C=2, M=2, seed=3)
    torch.testing.assert_close(mixup_ranking_loss(raw, mix[0], reduction="none"), _mrl_loop(raw, mix[0], 2.0, False))
    torch.testing.assert_close(mndcg_loss(raw, mix, ym, "none"), _mndcg_loop(raw, mix, ym))
    assert MixupRankingLoss(margin=0.0).margin == 0.0
    m = RankMixupLoss(kind="mrl", alpha=0.0, margin=0.0)
    assert (m.alpha, m.margin) == (0.0, 0.0)
    y = torch.tensor([0, 1, 1, 0, 1])
    total, parts = rankmixup_loss(raw, y, mix.reshape(10, 2), ym.reshape(10, 2), kind="mrl", margin=0.0)
    torch.testing.assert_close(total, parts["ce"] + 0.1 * parts["rank"])
    torch.testing.assert_close(m(raw, y, mix.reshape(10, 2), ym.reshape(10, 2))[0], F.cross_entropy(raw, y))


def test_mrl_mask_with_one_kept_sample_is_that_sample():
    raw, mix = _logits(B=6, seed=32), _logits(B=6, seed=33)
    per = mixup_ranking_loss(raw, mix, margin=3.0, reduction="none")
    mask = torch.zeros(6, dtype=torch.bool)
    mask[4] = True
    assert per[4] > 0
    torch.testing.assert_close(mixup_ranking_loss(raw, mix, margin=3.0, mask=mask), per[4], rtol=1e-14, atol=0)
    assert mixup_ranking_loss(raw, mix, margin=3.0, mask=torch.zeros(6, dtype=torch.bool)).item() == 0.0


def test_mixed_and_half_precision_inputs():
    raw, mix = _logits(B=6, C=5, seed=34), _logits(B=6, C=5, M=3, seed=35)
    _, ym, _, _ = _mix_labels(B=6, C=5, M=3, seed=4)
    args = (raw, mix, ym)
    ref = mndcg_loss(*args, "none")
    for i in range(3):  # one input in float64, the others in float32: computed in float64
        mixed = [a.float() if j != i else a for j, a in enumerate(args)]
        got = mndcg_loss(*mixed, "none")
        up = [a.double() for a in mixed]
        assert got.dtype == torch.float64 and torch.equal(got, mndcg_loss(*up, "none")), i
        half = [a.to(torch.bfloat16) if j == i else a.float() for j, a in enumerate(args)]  # bf16 is computed in float32
        got = mndcg_loss(*half, "none")
        assert got.dtype == torch.float32 and torch.equal(got, mndcg_loss(*[a.float() for a in half], "none")), i
    del ref
    pair = (raw, mix[0])
    for i in range(2):
        mixed = [a.float() if j != i else a for j, a in enumerate(pair)]
        got = mixup_ranking_loss(*mixed, margin=0.5, reduction="none")
        assert got.dtype == torch.float64
        assert torch.equal(got, mixup_ranking_loss(*[a.double() for a in mixed], margin=0.5, reduction="none")), i
        half = [a.to(torch.bfloat16) if j == i else a.float() for j, a in enumerate(pair)]
        got = mixup_ranking_loss(*half, margin=0.5, use_prob=True, reduction="none")
        want = mixup_ranking_loss(*[a.float() for a in half], margin=0.5, use_prob=True, reduction="none")
        assert got.dtype == torch.float32 and torch.equal(got, want), i


def test_shape_messages_name_the_expected_sizes():
    raw, mix = _logits(B=4, C=3, seed=0), _logits(B=4, C=3, M=2, seed=1)
    _, ym, _, _ = _mix_labels(B=4, C=3, M=2, seed=0)
    with pytest.raises(ValueError, match=r"^logits_mix: expected shape \(M, 4, 3\) to match logits_raw \(4, 3\)"):
        mndcg_loss(raw, mix[:, :3], ym[:, :3])
    with pytest.raises(ValueError, match=r"^logits_mix: expected 3 dimensions"):
        mndcg_loss(raw, torch.tensor(1.0, dtype=torch.float64), ym)
    with pytest.raises(ValueError, match=r"^mask: expected a bool tensor of shape \(4,\)"):
        mixup_ranking_loss(raw, raw, mask=torch.ones(3, dtype=torch.bool))
    x = torch.randn(4, 5)
    with pytest.raises(ValueError, match=r"^y_onehot: expected 4 rows to match x's batch"):
        mixup_batch(x, F.one_hot(torch.tensor([0, 1, 2]), 3).float(), 1.0)
    with pytest.raises(ValueError, match=r"^y_onehot: expected 2 dimensions"):
        mixup_batch(x, torch.tensor([0.0, 1.0, 2.0, 0.0]), 1.0)


def test_rankmixup_mrl_without_mask_checks_y_mix_dtype():
    raw = _logits(B=4, C=3, seed=0)
    y = torch.tensor([0, 1, 2, 0])
    mix = _logits(B=4, C=3, M=1, seed=1).reshape(4, 3)
    with pytest.raises(ValueError, match=r"^y_mix:"):
        rankmixup_loss(raw, y, mix, F.one_hot(y, 3), kind="mrl", mask_same_class=False)


def test_same_class_mask_on_copy_major_labels():
    _, ym, _, _ = _mix_labels(B=5, C=4, M=3, seed=5)
    want = torch.stack([same_class_mask(ym[j]) for j in range(3)])
    assert torch.equal(same_class_mask(ym), want) and ym.shape[1] != ym.shape[2]


def test_beta_draw_is_seeded_from_the_generator():
    import random as _random
    g, h = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    for _ in range(3):
        seed = int(torch.randint(0, 2**62, (1,), generator=h))
        assert rk._beta(0.7, g) == _random.Random(seed).betavariate(0.7, 0.7)


def test_registry_examples_cast_every_tensor():
    (raw, mix), kw = rk._mrl_example(5, torch.float32, "cpu", 0)
    assert raw.shape == mix.shape == (5, 10) and raw.dtype == mix.dtype == torch.float32 and kw == {}
    (raw, mix, ym), _ = rk._mndcg_example(5, torch.float32, "cpu", 0)
    assert raw.dtype == mix.dtype == ym.dtype == torch.float32 and mix.shape == ym.shape == (3, 5, 10)


def test_mndcg_ties_keep_copy_order_with_many_copies():
    # torch's unstable CPU sort reorders ties from about 16 items on: stable=True is what keeps the copy order
    B, C, M = 3, 4, 64
    raw, mix = _logits(B=B, C=C, seed=36), _logits(B=B, C=C, M=M, seed=37)
    g = torch.Generator().manual_seed(6)
    rel = torch.tensor([0.5, 0.75, 1.0], dtype=torch.float64)[torch.randint(3, (M, B), generator=g)]
    ym = torch.zeros(M, B, C, dtype=torch.float64)
    ym[..., 0], ym[..., 1] = rel, 1 - rel
    torch.testing.assert_close(mndcg_loss(raw, mix, ym, "none"), _mndcg_loop(raw, mix, ym), rtol=1e-12, atol=1e-14)
