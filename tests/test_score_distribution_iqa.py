"""Tests for lossbook.calibration.score_distribution_iqa (DeQA-Score, You et al. 2025).

References: a per-element port of the official `build_soft_labels/gen_soft_label.py` (scipy.stats.norm), scipy's
normal cdf, F.kl_div, and float64 loops over pairs transcribed from Eqs. (7)-(9).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm

from lossbook.calibration.score_distribution_iqa import (
    LEVEL_SCORES,
    DeQALoss,
    LevelKLLoss,
    binary_label,
    deqa_loss,
    expected_score,
    fidelity_loss,
    level_kl_loss,
    normalise_mos,
    one_hot_level,
    score_to_soft_label,
    thurstone_prob,
)

D64 = torch.float64


# ---------------------------------------------------------------- the official soft label, ported per element
def _official_binary(mos):
    probs = [0, 0, 0, 0, 0]
    for idx in range(1, 5):
        left, right = 1 + (idx - 1) - 1e-8, 1 + idx + 1e-8
        if left < mos <= right:
            probs[idx - 1] = (right - mos) / (right - left)
            probs[idx] = (mos - left) / (right - left)
            break
    return probs[::-1]


def _official_soft(mos, std, lo, hi, density="pdf", thre_std=0.2, thre_diff=0.1):
    mu = 4 * (mos - lo) / (hi - lo) + 1
    sd = 4 * std / (hi - lo)
    probs = []
    for x in range(5, 0, -1):
        if density == "cdf":
            probs.append(norm.cdf(x + 0.5, mu, sd) - norm.cdf(x - 0.5, mu, sd))
        else:
            probs.append(norm.pdf(x, loc=mu, scale=sd))
    A = np.array(probs).sum()
    B = np.inner(np.array(probs), np.array([5, 4, 3, 2, 1]))
    alpha = (mu - 3) / (B - 3.0 * A + 1e-9)
    beta = (1.0 - alpha * A) / 5.0
    p = [max(v * alpha + beta, 0) for v in probs]
    diff = abs(np.inner(np.array(p), np.array([5, 4, 3, 2, 1])) - mu)
    if sd < thre_std or diff > thre_diff:
        return _official_binary(mu), True
    return p, False


@pytest.mark.parametrize("density", ["pdf", "cdf"])
@pytest.mark.parametrize("lo,hi", [(1.0, 5.0), (0.0, 100.0), (12.0, 71.5)])
def test_soft_label_matches_official_port(density, lo, hi):
    g = np.random.default_rng(0)
    mos = lo + (hi - lo) * g.uniform(0.02, 0.98, 300)
    std = (hi - lo) / 4 * g.uniform(0.05, 1.2, 300)
    got, used = score_to_soft_label(torch.tensor(mos), torch.tensor(std), lo, hi, density=density)
    for k in range(300):
        want, b = _official_soft(mos[k], std[k], lo, hi, density)
        if abs(4 * (mos[k] - lo) / (hi - lo) + 1 - 3) < 1e-3:
            continue  # near mu' = 3 the official +1e-9 in alpha's denominator matters (see test_mu_three_guard)
        assert bool(used[k]) == b
        # the official code adds 1e-9 to B - 3A, we do not: agreement to ~1e-8 absolute
        np.testing.assert_allclose(got[k].numpy(), want, rtol=1e-6, atol=1e-7)
    assert used.any() and (~used).any()  # both branches were exercised


def test_defaults_thresholds():
    # the default thre_std = 0.2: sigma' = 0.19 -> binary, 0.21 -> soft (a loose thre_diff keeps the mean check quiet)
    _, b1 = score_to_soft_label(torch.tensor([3.4], dtype=D64), torch.tensor([0.19], dtype=D64), 1.0, 5.0, thre_diff=10.0)
    _, b2 = score_to_soft_label(torch.tensor([3.4], dtype=D64), torch.tensor([0.21], dtype=D64), 1.0, 5.0, thre_diff=10.0)
    assert b1.item() and not b2.item()
    # the default thre_diff = 0.1: mu' = 1.2, sigma' = 0.5 is clipped with mean error ~0.04 (kept), a stricter
    # threshold sends it to the binary label, and the default density is 'pdf'
    mu, sd = torch.tensor([1.2], dtype=D64), torch.tensor([0.5], dtype=D64)
    q, b = score_to_soft_label(mu, sd, 1.0, 5.0)
    assert not b.item()
    assert abs(float(q.sum()) - 1) > 1e-3  # clipping broke the sum (official behaviour: no renormalisation)
    _, b_strict = score_to_soft_label(mu, sd, 1.0, 5.0, thre_diff=0.01)
    assert b_strict.item()
    q_pdf, _ = score_to_soft_label(mu, sd, 1.0, 5.0, density="pdf")
    torch.testing.assert_close(q, q_pdf)
    q_cdf, _ = score_to_soft_label(mu, sd, 1.0, 5.0, density="cdf")
    assert not torch.allclose(q, q_cdf)


def test_card_hand_value_and_properties():
    q, b = score_to_soft_label(torch.tensor([3.3], dtype=D64), torch.tensor([0.8], dtype=D64), 1.0, 5.0)
    np.testing.assert_allclose(q[0].numpy(), [0.050, 0.343, 0.469, 0.132, 0.005], atol=1e-3)
    assert abs(float(q.sum()) - 1) < 1e-12
    assert abs(float((q * torch.tensor(LEVEL_SCORES, dtype=D64)).sum()) - 3.3) < 1e-12


def test_mu_three_guard():
    q, b = score_to_soft_label(torch.tensor([3.0], dtype=D64), torch.tensor([0.7], dtype=D64), 1.0, 5.0)
    raw = torch.tensor([norm.pdf(x, 3.0, 0.7) for x in (5, 4, 3, 2, 1)], dtype=D64)
    torch.testing.assert_close(q[0], raw / raw.sum())  # plain normalisation, not the official uniform label
    assert not b.item()
    off, _ = _official_soft(3.0, 0.7, 1.0, 5.0)
    np.testing.assert_allclose(off, [0.2] * 5, atol=1e-6)  # what the official code gives


def test_binary_label_and_one_hot_level():
    mu = torch.tensor([1.0, 1.25, 2.0, 3.7, 5.0], dtype=D64)
    want = torch.tensor([[0, 0, 0, 0, 1], [0, 0, 0, 0.25, 0.75], [0, 0, 0, 1, 0], [0, 0.7, 0.3, 0, 0], [1, 0, 0, 0, 0]],
                        dtype=D64)
    torch.testing.assert_close(binary_label(mu), want)
    for m in [1.0, 1.3, 2.5, 3.0, 3.61, 4.99, 5.0]:
        torch.testing.assert_close(binary_label(torch.tensor([m], dtype=D64))[0],
                                   torch.tensor(_official_binary(m), dtype=D64), rtol=1e-7, atol=1e-7)

    def get_level(mos, lo, hi):  # official get_level, index of the text in [bad .. excellent]
        for idx in range(1, 6):
            if lo + (idx - 1) / 5 * (hi - lo) - 1e-8 < mos <= lo + idx / 5 * (hi - lo) + 1e-8:
                return idx

    g = np.random.default_rng(1)
    mos = np.concatenate([g.uniform(10, 90, 200), [10.0, 26.0, 42.0, 90.0]])
    got = one_hot_level(torch.tensor(mos), 10.0, 90.0)
    assert got.tolist() == [5 - get_level(m, 10.0, 90.0) for m in mos]


def test_normalise_mos():
    mu, sd = normalise_mos(torch.tensor([0.0, 50.0, 100.0], dtype=D64), torch.tensor([0.0, 10.0, 25.0], dtype=D64), 0.0, 100.0)
    torch.testing.assert_close(mu, torch.tensor([1.0, 3.0, 5.0], dtype=D64))
    torch.testing.assert_close(sd, torch.tensor([0.0, 0.4, 1.0], dtype=D64))


# ---------------------------------------------------------------- expected score and KL
def test_expected_score_formula():
    g = torch.Generator().manual_seed(0)
    s = 3 * torch.randn(20, 5, generator=g, dtype=D64)
    mu, sd = expected_score(s)
    pi = s.softmax(1)
    x = torch.tensor([5.0, 4, 3, 2, 1], dtype=D64)
    torch.testing.assert_close(mu, (pi * x).sum(1))
    torch.testing.assert_close(sd, (pi * (x - mu[:, None]) ** 2).sum(1).sqrt())
    assert ((mu >= 1) & (mu <= 5)).all()
    oh = torch.tensor([[50.0, 0, 0, 0, 0]], dtype=D64)  # all mass on 'excellent' -> 5
    assert abs(expected_score(oh)[0].item() - 5) < 1e-12


def test_level_kl_matches_kl_div_and_reductions():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(16, 5, generator=g, dtype=D64)
    q = score_to_soft_label(1 + 4 * torch.rand(16, generator=g, dtype=D64), 0.3 + torch.rand(16, generator=g, dtype=D64),
                            1.0, 5.0)[0]
    torch.testing.assert_close(level_kl_loss(s, q), F.kl_div(s.log_softmax(1), q, reduction="batchmean"))
    none = level_kl_loss(s, q, reduction="none")
    torch.testing.assert_close(none, F.kl_div(s.log_softmax(1), q, reduction="none").sum(1))
    torch.testing.assert_close(level_kl_loss(s, q, reduction="sum"), none.sum())
    torch.testing.assert_close(level_kl_loss(s, q), none.mean())  # default reduction 'mean'
    torch.testing.assert_close(LevelKLLoss()(s, q), level_kl_loss(s, q))
    V = torch.randn(16, 30, generator=g, dtype=D64)
    ids = torch.tensor([4, 9, 0, 21, 13])
    torch.testing.assert_close(level_kl_loss(V, q, ids), F.kl_div(V.log_softmax(1)[:, ids], q, reduction="batchmean"))


# ---------------------------------------------------------------- Thurstone and fidelity
def test_thurstone_matches_scipy_and_default_eps():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(30, generator=g, dtype=D64), torch.randn(30, generator=g, dtype=D64)
    va, vb = torch.rand(30, generator=g, dtype=D64), torch.rand(30, generator=g, dtype=D64)
    want = norm.cdf(((a - b) / torch.sqrt(va + vb + 1e-8)).numpy())
    np.testing.assert_allclose(thurstone_prob(a, b, va, vb).numpy(), want, rtol=1e-12, atol=1e-14)
    tiny = torch.tensor([1e-4], dtype=D64)
    z0 = torch.zeros(1, dtype=D64)
    # the default eps is 1e-8: with zero variances the z-score is 1e-4 / 1e-4 = 1
    np.testing.assert_allclose(thurstone_prob(tiny, z0, z0, z0).numpy(), norm.cdf([1.0]), rtol=1e-12)
    np.testing.assert_allclose(thurstone_prob(a, b, 1.0, 1.0, eps=0).numpy(), 0.5 * (1 + torch.erf((a - b) / 2)).numpy(),
                               rtol=1e-12)


def test_fidelity_formula_default_eps_and_properties():
    g = torch.Generator().manual_seed(3)
    ph, p = torch.rand(40, generator=g, dtype=D64), torch.rand(40, generator=g, dtype=D64)
    want = 1 - torch.sqrt(ph * p + 1e-8) - torch.sqrt((1 - ph) * (1 - p) + 1e-8)
    torch.testing.assert_close(fidelity_loss(ph, p, reduction="none"), want, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(fidelity_loss(ph, p), want.mean())
    torch.testing.assert_close(fidelity_loss(ph, p, reduction="sum"), want.sum())
    assert (fidelity_loss(ph, p, eps=0, reduction="none") >= -1e-15).all()
    assert abs(fidelity_loss(ph, ph, eps=0).item()) < 1e-12


# ---------------------------------------------------------------- the DeQA objective
def _batch(B=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = 2 * torch.randn(B, 5, generator=g, dtype=D64)
    mos = 1 + 4 * torch.rand(B, generator=g, dtype=D64)
    std = 0.1 + 0.9 * torch.rand(B, generator=g, dtype=D64)
    q = score_to_soft_label(mos, std, 1.0, 5.0)[0]
    ids = torch.tensor([0, 1, 0, 0, 1, 1, 0, 2, 2, 0])[:B]
    return s, q, mos, std, ids


def _deqa_loop(s, q, mos, std, ids, w_fid=1.0, w_kl=1.0, fixed=True, eps=1e-8):
    mu, sd = expected_score(s)
    fids = []
    for i in range(len(s)):
        for j in range(i + 1, len(s)):
            if ids[i] != ids[j]:
                continue
            p = norm.cdf(float((mos[i] - mos[j]) / math.sqrt(std[i] ** 2 + std[j] ** 2 + eps)))
            den = math.sqrt(2 + eps) if fixed else math.sqrt(sd[i] ** 2 + sd[j] ** 2 + eps)
            ph = norm.cdf(float(mu[i] - mu[j]) / den)
            fids.append(1 - math.sqrt(ph * p + eps) - math.sqrt((1 - ph) * (1 - p) + eps))
    kl = float(F.kl_div(s.log_softmax(1), q, reduction="batchmean"))
    return w_fid * sum(fids) / len(fids) + w_kl * kl


@pytest.mark.parametrize("w_fid,w_kl,fixed", [(1.0, 1.0, True), (0.5, 2.0, True), (1.0, 1.0, False), (1.0, 0.0, False)])
def test_deqa_matches_pair_loop(w_fid, w_kl, fixed):
    s, q, mos, std, ids = _batch()
    got = deqa_loss(s, q, mos, std, ids, w_fid=w_fid, w_kl=w_kl, fixed_pred_std=fixed)
    assert abs(got.item() - _deqa_loop(s, q, mos, std, ids, w_fid, w_kl, fixed)) < 1e-10


def test_deqa_defaults():
    s, q, mos, std, ids = _batch()
    # defaults: w_fid = w_kl = 1, fixed predicted std, eps 1e-8
    assert abs(deqa_loss(s, q, mos, std, ids).item() - _deqa_loop(s, q, mos, std, ids)) < 1e-10
    torch.testing.assert_close(DeQALoss()(s, q, mos, std, ids), deqa_loss(s, q, mos, std, ids), rtol=0, atol=0)
    # dataset_ids=None: one data set, all pairs
    zeros = torch.zeros(10, dtype=torch.long)
    torch.testing.assert_close(deqa_loss(s, q, mos, std), deqa_loss(s, q, mos, std, zeros))
    # pairs across data sets are never formed: changing another data set's MOS leaves the ids==2 pair alone
    assert not torch.allclose(deqa_loss(s, q, mos, std, ids), deqa_loss(s, q, mos, std, zeros))


def test_detach_pred_std():
    s, q, mos, std, ids = _batch()
    grads = []
    for detach in (True, False):
        x = s.clone().requires_grad_(True)
        deqa_loss(x, q, mos, std, ids, w_kl=0, fixed_pred_std=False, detach_pred_std=detach).backward()
        grads.append(x.grad)
    assert not torch.allclose(grads[0], grads[1])
    x = s.clone().requires_grad_(True)
    deqa_loss(x, q, mos, std, ids, w_kl=0, fixed_pred_std=False).backward()  # default detach_pred_std=True
    torch.testing.assert_close(x.grad, grads[0])
    x = s.clone().requires_grad_(True)
    deqa_loss(x, q, mos, std, ids, w_kl=0).backward()  # fixed std: detach does not matter
    y = s.clone().requires_grad_(True)
    deqa_loss(y, q, mos, std, ids, w_kl=0, detach_pred_std=False).backward()
    torch.testing.assert_close(x.grad, y.grad)


def test_scale_invariance_across_data_sets():
    s, q, mos, std, ids = _batch()
    k = torch.where(ids == 1, 25.0, 1.0).to(D64)
    torch.testing.assert_close(deqa_loss(s, q, mos * k, std * k, ids, eps=0), deqa_loss(s, q, mos, std, ids, eps=0))


def test_gradcheck():
    s, q, mos, std, ids = _batch(B=7)
    x = s.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: deqa_loss(t, q, mos, std, ids), (x,))
    assert torch.autograd.gradcheck(lambda t: deqa_loss(t, q, mos, std, ids, fixed_pred_std=False,
                                                        detach_pred_std=False), (x,))
    assert torch.autograd.gradcheck(lambda t: level_kl_loss(t, q), (x,))
    ph = torch.rand(6, dtype=D64).mul(0.8).add(0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: fidelity_loss(t, torch.full((6,), 0.3, dtype=D64)), (ph,))


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_soft_label():
    m, s = torch.tensor([3.0]), torch.tensor([0.5])
    with pytest.raises(ValueError, match=r"^mos:"):
        score_to_soft_label(torch.tensor([6.0]), s, 1.0, 5.0)
    with pytest.raises(ValueError, match=r"^std:"):
        score_to_soft_label(m, torch.tensor([-0.5]), 1.0, 5.0)
    with pytest.raises(ValueError, match=r"^mos_max:"):
        score_to_soft_label(m, s, 5.0, 1.0)
    with pytest.raises(ValueError, match=r"^mos_min:"):
        score_to_soft_label(m, s, float("nan"), 5.0)
    with pytest.raises(ValueError, match=r"^density:"):
        score_to_soft_label(m, s, 1.0, 5.0, density="gauss")
    with pytest.raises(ValueError, match=r"^thre_std:"):
        score_to_soft_label(m, s, 1.0, 5.0, thre_std=-1)
    with pytest.raises(ValueError, match=r"^thre_diff:"):
        score_to_soft_label(m, s, 1.0, 5.0, thre_diff=-1)
    with pytest.raises(ValueError, match=r"^mos:"):
        score_to_soft_label(torch.tensor([float("nan")]), s, 1.0, 5.0)
    with pytest.raises(ValueError, match=r"^mos and std"):
        score_to_soft_label(torch.tensor([3.0, 3.0]), s, 1.0, 5.0)
    with pytest.raises(ValueError, match=r"^mu:"):
        binary_label(torch.tensor([5.5]))
    with pytest.raises(ValueError, match=r"^mos:"):
        one_hot_level(torch.tensor([3]), 1.0, 5.0)


def test_bad_inputs_losses():
    s, q, mos, std, ids = _batch()
    with pytest.raises(ValueError, match=r"^level_logits:"):
        level_kl_loss(torch.randn(4, 6, dtype=D64), q[:4])
    with pytest.raises(ValueError, match=r"^soft_labels:"):
        level_kl_loss(s, q[:-1])
    with pytest.raises(ValueError, match=r"^soft_labels:"):
        level_kl_loss(s, -q)
    with pytest.raises(ValueError, match=r"^level_ids:"):
        level_kl_loss(torch.randn(10, 8, dtype=D64), q, torch.tensor([0, 1, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"^level_ids:"):
        level_kl_loss(torch.randn(10, 8, dtype=D64), q, torch.tensor([0, 1, 2, 3, 8]))
    with pytest.raises(ValueError, match=r"^reduction:"):
        level_kl_loss(s, q, reduction="avg")
    with pytest.raises(ValueError, match=r"^p_hat:"):
        fidelity_loss(torch.tensor([1.2]), torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"^p:"):
        fidelity_loss(torch.tensor([0.2]), torch.tensor([-0.5]))
    with pytest.raises(ValueError, match=r"^p_hat and p"):
        fidelity_loss(torch.tensor([0.2, 0.3]), torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"^eps:"):
        fidelity_loss(torch.tensor([0.2]), torch.tensor([0.5]), eps=-1)
    with pytest.raises(ValueError, match=r"^var_a:"):
        thurstone_prob(mos, mos, -std, std)
    with pytest.raises(ValueError, match=r"^var_b:"):
        thurstone_prob(mos, mos, 1.0, -1.0)
    with pytest.raises(ValueError, match=r"^mu_a and mu_b"):
        thurstone_prob(mos, mos[:-1], 1.0, 1.0)
    with pytest.raises(ValueError, match=r"^std:"):
        deqa_loss(s, q, mos, -std, ids)
    with pytest.raises(ValueError, match=r"^mos:"):
        deqa_loss(s, q, mos[:-1], std, ids)
    with pytest.raises(ValueError, match=r"^dataset_ids:"):
        deqa_loss(s, q, mos, std, ids[:-1])
    with pytest.raises(ValueError, match=r"^dataset_ids:"):
        deqa_loss(s[:3], q[:3], mos[:3], std[:3], torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"^w_fid:"):
        deqa_loss(s, q, mos, std, ids, w_fid=-1)
    with pytest.raises(ValueError, match=r"^w_kl:"):
        DeQALoss(w_kl=-1)
    with pytest.raises(ValueError, match=r"^level_logits:"):
        deqa_loss(s[:0], q[:0], mos[:0], std[:0], ids[:0])
    # no pair needed when the fidelity term is off
    assert torch.isfinite(deqa_loss(s[:3], q[:3], mos[:3], std[:3], torch.tensor([0, 1, 2]), w_fid=0))
