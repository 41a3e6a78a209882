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


# ---------------------------------------------------------------- mutation-testing pass (#7): pinned defaults, edges
def test_one_hot_level_empty_and_out_of_range_scores_clamp():
    # min_batch=0: an empty batch is legal (a 1-D tensor of 0 scores gives 0 levels)
    out = one_hot_level(torch.zeros(0, dtype=D64), 1.0, 5.0)
    assert out.shape == (0,) and out.dtype == torch.long
    # scores outside [mos_min, mos_max] clamp to the end bins: above -> 'excellent' (0), below -> 'bad' (4)
    got = one_hot_level(torch.tensor([95.0, 200.0, 10.0, 5.0, -50.0], dtype=D64), 10.0, 90.0)
    assert got.tolist() == [0, 0, 4, 4, 4]


def test_expected_score_low_precision_in_float32():
    s = torch.randn(6, 5, dtype=D64)
    mu, sd = expected_score(s.bfloat16())
    assert mu.dtype == torch.float32 and sd.dtype == torch.float32
    mu32, sd32 = expected_score(s.bfloat16().float())
    torch.testing.assert_close(mu, mu32, rtol=0, atol=0)
    torch.testing.assert_close(sd, sd32, rtol=0, atol=0)


def test_level_kl_module_passes_level_ids_and_reduction():
    g = torch.Generator().manual_seed(4)
    q = score_to_soft_label(1 + 4 * torch.rand(6, generator=g, dtype=D64), 0.5 + torch.rand(6, generator=g, dtype=D64),
                            1.0, 5.0)[0]
    V = torch.randn(6, 12, generator=g, dtype=D64)
    ids = torch.tensor([7, 2, 11, 0, 5])
    for red in ("mean", "sum", "none"):
        torch.testing.assert_close(LevelKLLoss(red)(V, q, ids), level_kl_loss(V, q, ids, red), rtol=0, atol=0)
    assert LevelKLLoss(reduction="none")(V, q, ids).shape == (6,)
    torch.testing.assert_close(LevelKLLoss()(V, q, ids), level_kl_loss(V, q, ids, "mean"), rtol=0, atol=0)
    assert not torch.allclose(LevelKLLoss("sum")(V, q, ids), LevelKLLoss()(V, q, ids))


def test_deqa_module_defaults_and_every_setting():
    s, q, mos, std, ids = _batch()
    m = DeQALoss()
    assert (m.w_fid, m.w_kl, m.fixed_pred_std, m.detach_pred_std, m.eps, m.gather_distributed) == (1.0, 1.0, True, True, 1e-8, False)
    # every setting reaches deqa_loss (values that change the loss, each against its functional form)
    for kw in (dict(w_fid=0.5), dict(w_kl=2.0), dict(fixed_pred_std=False), dict(eps=0.3), dict(w_fid=0.0), dict(w_kl=0.0),
               dict(eps=0.0), dict(fixed_pred_std=False, detach_pred_std=False)):
        x1, x2 = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
        a, b = DeQALoss(**kw)(x1, q, mos, std, ids), deqa_loss(x2, q, mos, std, ids, **kw)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        a.backward(), b.backward()
        torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=0)
    # the module's default detach_pred_std=True: gradients as the functional default with the predicted std
    x1, x2 = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    DeQALoss(w_kl=0, fixed_pred_std=False)(x1, q, mos, std, ids).backward()
    deqa_loss(x2, q, mos, std, ids, w_kl=0, fixed_pred_std=False, detach_pred_std=False).backward()
    assert not torch.allclose(x1.grad, x2.grad)
    # the module's messages name the argument; zero weights and eps are legal (strict=False)
    for kw, name in ((dict(w_fid=-1), "w_fid"), (dict(w_kl=-1), "w_kl"), (dict(eps=-1), "eps"), (dict(eps=float("nan")), "eps")):
        with pytest.raises(ValueError, match=rf"^{name}:"):
            DeQALoss(**kw)
    assert DeQALoss(w_fid=0, w_kl=0, eps=0).eps == 0.0


def test_deqa_module_gather_distributed_reaches_ddp_active(monkeypatch):
    from lossbook.calibration import score_distribution_iqa as sdi
    s, q, mos, std, ids = _batch()
    seen = []
    real = sdi.ddp_active
    monkeypatch.setattr(sdi, "ddp_active", lambda g: seen.append(g) or real(g))
    DeQALoss(gather_distributed=True)(s, q, mos, std, ids)
    DeQALoss()(s, q, mos, std, ids)
    deqa_loss(s, q, mos, std, ids, gather_distributed=True)
    deqa_loss(s, q, mos, std, ids)  # the default is False
    assert seen == [True, False, True, False]


def test_deqa_ddp_path_two_identical_ranks_sum_to_the_doubled_batch(monkeypatch):
    "Two ranks with the same batch: gathered = the batch twice; rank 0's and rank 1's parts sum to the doubled batch's loss."
    from lossbook.calibration import score_distribution_iqa as sdi
    full = _batch()
    # B = 1: rank 1's single row has no later row, no local pair: its fidelity part must be exactly 0
    for B, fixed in ((10, True), (10, False), (1, True)):
        s, q, mos, std, ids = (t[:B] for t in full)
        kw = dict(w_fid=0.7, w_kl=1.3, fixed_pred_std=fixed, detach_pred_std=False)
        whole = deqa_loss(torch.cat([s, s]), torch.cat([q, q]), torch.cat([mos, mos]), torch.cat([std, std]),
                          torch.cat([ids, ids]), **kw)
        ids2 = torch.cat([ids, ids])
        n_pairs = int(sum((ids2[i] == ids2[j]).item() for i in range(2 * B) for j in range(i + 1, 2 * B)))
        parts = []
        for r in (0, 1):
            seen = []
            monkeypatch.setattr(sdi, "ddp_active", lambda g: bool(g))
            monkeypatch.setattr(sdi, "gather", lambda x: seen.append("gather") or torch.cat([x, x]))
            monkeypatch.setattr(sdi, "local_slice", lambda n, device=None, r=r: seen.append(("slice", n)) or slice(r * n, (r + 1) * n))
            totals = iter([torch.tensor(2 * B), torch.tensor(n_pairs)])  # all_sum: the global batch, then the global pairs
            monkeypatch.setattr(sdi, "all_sum", lambda x, active=True: seen.append(("sum", active)) or next(totals))
            monkeypatch.setattr(sdi, "sum_over_ranks", lambda part, active=True: seen.append(("ranks", active)) or part)
            parts.append(deqa_loss(s, q, mos, std, ids, gather_distributed=True, **kw))
            assert seen.count("gather") == 5 and ("slice", B) in seen
            assert [x for x in seen if x[0] in ("sum", "ranks")] == [("sum", True), ("sum", True), ("ranks", True)]
        torch.testing.assert_close(parts[0] + parts[1], whole, rtol=1e-12, atol=0)
        assert B == 1 or not torch.allclose(parts[0], parts[1])  # rank 1 pairs its rows only with the later rows
        if B == 1:
            torch.testing.assert_close(parts[1], 1.3 * level_kl_loss(s, q, reduction="sum") / 2, rtol=1e-14, atol=0)
        monkeypatch.undo()
    s, q, mos, std, ids = full
    # outside DDP: nothing is gathered and the counts are local
    seen = []
    monkeypatch.setattr(sdi, "gather", lambda x: seen.append("gather") or x)
    monkeypatch.setattr(sdi, "all_sum", lambda x, active=True: seen.append(("sum", active)) or x.detach())
    monkeypatch.setattr(sdi, "sum_over_ranks", lambda part, active=True: seen.append(("ranks", active)) or part)
    torch.testing.assert_close(deqa_loss(s, q, mos, std, ids, gather_distributed=True), deqa_loss(s, q, mos, std, ids))
    assert "gather" not in seen and all(a is False for _, a in seen)


def test_soft_label_range_edges_and_zero_thresholds():
    sd = torch.tensor([0.5, 0.5], dtype=D64)
    # the MOS range's ends are legal (mu' = 1 and 5 exactly), and a rounding error of < 1e-9 on mu' is clamped
    q, b = score_to_soft_label(torch.tensor([10.0, 90.0], dtype=D64), sd * 20, 10.0, 90.0)
    assert torch.isfinite(q).all() and q.shape == (2, 5)
    q2, _ = score_to_soft_label(torch.tensor([1.0 - 2e-10, 5.0 + 2e-10], dtype=D64), sd, 1.0, 5.0)
    q3, _ = score_to_soft_label(torch.tensor([1.0, 5.0], dtype=D64), sd, 1.0, 5.0)
    torch.testing.assert_close(q2, q3, rtol=0, atol=0)
    for bad in (1.0 - 1e-6, 0.5, 5.0 + 1e-6):
        with pytest.raises(ValueError, match=r"^mos:"):
            score_to_soft_label(torch.tensor([bad], dtype=D64), sd[:1], 1.0, 5.0)
    # zero thresholds are legal; sigma' == thre_std is not below it (strict <)
    _, b0 = score_to_soft_label(torch.tensor([3.4], dtype=D64), torch.tensor([0.2], dtype=D64), 1.0, 5.0, thre_std=0.2,
                                thre_diff=10.0)
    assert not b0.item()
    _, b1 = score_to_soft_label(torch.tensor([3.4], dtype=D64), torch.tensor([0.0], dtype=D64), 1.0, 5.0, thre_std=0.0,
                                thre_diff=10.0)
    assert b1.item()  # sigma' = 0: every density underflows, the label is not finite -> the binary label
    _, b2 = score_to_soft_label(torch.tensor([3.4], dtype=D64), torch.tensor([0.8], dtype=D64), 1.0, 5.0, thre_std=0.0,
                                thre_diff=0.0)
    assert isinstance(b2.item(), bool)
    # a tiny sigma' with thre_std = 0: the densities underflow to 0 (A = 0) and the binary label replaces the NaNs
    q4, b4 = score_to_soft_label(torch.tensor([3.5], dtype=D64), torch.tensor([0.01], dtype=D64), 1.0, 5.0, thre_std=0.0,
                                 thre_diff=10.0)
    assert b4.item()
    torch.testing.assert_close(q4[0], torch.tensor([0, 0.5, 0.5, 0, 0], dtype=D64))
    # empty and 0-d inputs are legal
    qe, be = score_to_soft_label(torch.zeros(0, dtype=D64), torch.zeros(0, dtype=D64), 1.0, 5.0)
    assert qe.shape == (0, 5) and be.shape == (0,)
    q0, b0d = score_to_soft_label(torch.tensor(3.3, dtype=D64), torch.tensor(0.8, dtype=D64), 1.0, 5.0)
    assert q0.shape == (5,) and b0d.shape == ()


def test_range_and_input_messages():
    m, s = torch.tensor([3.0], dtype=D64), torch.tensor([0.5], dtype=D64)
    for lo, hi in ((2.0, 2.0), (3.0, 1.0)):
        for fn in (lambda: normalise_mos(m, s, lo, hi), lambda: one_hot_level(m, lo, hi)):
            with pytest.raises(ValueError, match=r"^mos_max: expected mos_max > mos_min"):
                fn()
    with pytest.raises(ValueError, match=r"^mos_max:"):
        normalise_mos(m, s, 1.0, float("inf"))
    with pytest.raises(ValueError, match=r"^mos:"):
        normalise_mos(m.long(), s, 1.0, 5.0)
    with pytest.raises(ValueError, match=r"^std:"):
        normalise_mos(m, s.long(), 1.0, 5.0)
    with pytest.raises(ValueError, match=r"^std: expected standard deviations >= 0"):
        normalise_mos(m, -s, 1.0, 5.0)
    with pytest.raises(ValueError, match=r"^mos and std"):
        normalise_mos(m, s.expand(2), 1.0, 5.0)
    mu, sd = normalise_mos(torch.zeros(0, dtype=D64), torch.zeros(0, dtype=D64), 1.0, 5.0)
    assert mu.shape == (0,) and sd.shape == (0,)
    torch.testing.assert_close(normalise_mos(torch.tensor([2.0], dtype=D64), torch.tensor([0.0], dtype=D64), 2.0, 4.0)[0],
                               torch.tensor([1.0], dtype=D64))
    # binary_label: the [1, 5] range, integer input, empty input
    with pytest.raises(ValueError, match=r"^mu: expected normalised scores in \[1, 5\]"):
        binary_label(torch.tensor([0.999], dtype=D64))
    with pytest.raises(ValueError, match=r"^mu:"):
        binary_label(torch.tensor([3]))
    assert binary_label(torch.zeros(0, dtype=D64)).shape == (0, 5)
    torch.testing.assert_close(binary_label(torch.tensor([[4.5]], dtype=D64)), torch.tensor([[[0.5, 0.5, 0, 0, 0]]], dtype=D64))


def test_level_kl_edges_and_messages():
    s = torch.randn(3, 5, dtype=D64)
    one_hot = torch.eye(5, dtype=D64)[[0, 2, 4]]  # zeros are legal probabilities (0 log 0 = 0)
    torch.testing.assert_close(level_kl_loss(s, one_hot, reduction="none"), -s.log_softmax(1)[[0, 1, 2], [0, 2, 4]])
    # the smallest batch
    torch.testing.assert_close(level_kl_loss(s[:1], one_hot[:1]), -s[:1].log_softmax(1)[0, 0])
    cases = [
        (lambda: level_kl_loss(s, one_hot[:, :4]), r"^soft_labels: expected shape \(3, 5\)"),
        (lambda: level_kl_loss(s, one_hot[None]), r"^soft_labels: expected 2 dimensions"),
        (lambda: level_kl_loss(s, one_hot.long()), r"^soft_labels:"),
        (lambda: level_kl_loss(s, -one_hot), r"^soft_labels: expected non-negative"),
        (lambda: level_kl_loss(s[0], one_hot[0]), r"^level_logits:"),
        (lambda: level_kl_loss(s.long(), one_hot), r"^level_logits:"),
        (lambda: level_kl_loss(torch.randn(3, 8, dtype=D64), one_hot), r"^level_logits: expected 5 level logits"),
        (lambda: level_kl_loss(torch.randn(3, 8, dtype=D64), one_hot, torch.tensor([0, 1, 2, 3])), r"^level_ids: expected 5 distinct"),
        (lambda: level_kl_loss(torch.randn(3, 8, dtype=D64), one_hot, torch.tensor([0, 1, 2, 3, 4, 5])), r"^level_ids: expected 5 distinct"),
        (lambda: level_kl_loss(torch.randn(3, 8, dtype=D64), one_hot, torch.tensor([0.0, 1, 2, 3, 4])), r"^level_ids:"),
        (lambda: level_kl_loss(torch.randn(3, 8, dtype=D64), one_hot, torch.tensor([0.0, 0, 2, 3, 4])), r"^level_ids: expected an integer"),
        (lambda: level_kl_loss(torch.randn(3, 8, dtype=D64), one_hot, torch.tensor([[0, 1, 2, 3, 4]])), r"^level_ids:"),
        (lambda: level_kl_loss(torch.randn(3, 8, dtype=D64), one_hot, torch.tensor([0, 1, 2, 3, -1])), r"^level_ids:"),
        (lambda: expected_score(torch.randn(3, 4, dtype=D64)), r"^level_logits:"),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()
    # a (B, V) vocabulary whose 5 ids are its last columns; bf16 logits are computed in float32
    V = torch.randn(3, 7, dtype=D64)
    ids = torch.tensor([6, 5, 4, 3, 2])
    torch.testing.assert_close(level_kl_loss(V, one_hot, ids, "none"), -V.log_softmax(1)[[0, 1, 2], [6, 4, 2]])
    assert level_kl_loss(s.bfloat16(), one_hot.bfloat16()).dtype == torch.float32
    torch.testing.assert_close(level_kl_loss(s.bfloat16(), one_hot.bfloat16()), level_kl_loss(s.bfloat16().float(), one_hot.float()))


def test_thurstone_and_fidelity_edges_and_messages():
    a, b = torch.tensor([0.3, -1.0], dtype=D64), torch.tensor([0.1, 0.5], dtype=D64)
    z0 = torch.zeros(2, dtype=D64)
    # zero variances (tensor or float) are legal; float and tensor variances agree
    torch.testing.assert_close(thurstone_prob(a, b, z0, z0, eps=1.0), thurstone_prob(a, b, 0.0, 0.0, eps=1.0), rtol=0, atol=0)
    torch.testing.assert_close(thurstone_prob(a, b, 0.0, 0.0, eps=1.0), torch.tensor(norm.cdf((a - b).numpy()), dtype=D64))
    torch.testing.assert_close(thurstone_prob(a, b, 1.5, z0 + 2.5, eps=0.0), torch.tensor(norm.cdf(((a - b) / 2).numpy()), dtype=D64))
    torch.testing.assert_close(thurstone_prob(a, b, z0 + 3.0, 0.0, eps=1.0), torch.tensor(norm.cdf(((a - b) / 2).numpy()), dtype=D64))
    cases = [
        (lambda: thurstone_prob(a.long(), b, 1.0, 1.0), r"^mu_a:"),
        (lambda: thurstone_prob(a, b.long(), 1.0, 1.0), r"^mu_b:"),
        (lambda: thurstone_prob(a, b, z0.long(), 1.0), r"^var_a:"),
        (lambda: thurstone_prob(a, b, 1.0, z0.long()), r"^var_b:"),
        (lambda: thurstone_prob(a, b, z0[:1], 1.0), r"^mu_a and var_a"),
        (lambda: thurstone_prob(a, b, 1.0, z0[:1]), r"^mu_a and var_b"),
        (lambda: thurstone_prob(a, b, z0 - 1, 1.0), r"^var_a: expected variances >= 0"),
        (lambda: thurstone_prob(a, b, 1.0, z0 - 1), r"^var_b: expected variances >= 0"),
        (lambda: thurstone_prob(a, b, -1.0, 1.0), r"^var_a:"),
        (lambda: thurstone_prob(a, b, float("nan"), 1.0), r"^var_a:"),
        (lambda: thurstone_prob(a, b, 1.0, 1.0, eps=-1e-9), r"^eps:"),
        (lambda: fidelity_loss(torch.tensor([0, 1]), b), r"^p_hat: expected a floating-point tensor"),
        (lambda: fidelity_loss(b, torch.tensor([0, 1])), r"^p: expected a floating-point tensor"),
        (lambda: fidelity_loss(torch.tensor([-0.1]), torch.tensor([0.5])), r"^p_hat: expected probabilities in \[0, 1\]"),
        (lambda: fidelity_loss(torch.tensor([0.5]), torch.tensor([1.1])), r"^p: expected probabilities in \[0, 1\]"),
        (lambda: fidelity_loss(torch.tensor([0.5]), torch.tensor([0.5]), reduction="avg"), r"^reduction:"),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()
    # the probabilities 0 and 1 are legal: a right certain prediction costs -2 sqrt(eps) + 1 - sqrt(1 + eps) ~ 0
    e = fidelity_loss(torch.tensor([0.0, 1.0, 0.0], dtype=D64), torch.tensor([0.0, 1.0, 1.0], dtype=D64), eps=0.0, reduction="none")
    torch.testing.assert_close(e, torch.tensor([0.0, 0.0, 1.0], dtype=D64), rtol=0, atol=0)
    torch.testing.assert_close(fidelity_loss(torch.tensor([0.25], dtype=D64), torch.tensor([1.0], dtype=D64), eps=0.0),
                               torch.tensor(0.5, dtype=D64))


def test_deqa_smallest_batches_low_precision_and_messages():
    s, q, mos, std, ids = _batch()
    # one image: no pair, the fidelity term needs w_fid = 0 and the loss is w_kl times the KL
    one = deqa_loss(s[:1], q[:1], mos[:1], std[:1], w_fid=0.0, w_kl=1.5)
    torch.testing.assert_close(one, 1.5 * level_kl_loss(s[:1], q[:1]), rtol=1e-14, atol=0)
    for detach in (True, False):  # also with the predicted std
        one_var = deqa_loss(s[:1], q[:1], mos[:1], std[:1], w_fid=0.0, w_kl=1.5, fixed_pred_std=False, detach_pred_std=detach)
        torch.testing.assert_close(one_var, one, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"^dataset_ids: no two images of the batch share a data set"):
        deqa_loss(s[:1], q[:1], mos[:1], std[:1])
    # two images, one pair: the loss is w_fid times the pair's fidelity plus w_kl times the mean KL
    two = deqa_loss(s[:2], q[:2], mos[:2], std[:2], w_fid=0.5, w_kl=2.0)
    torch.testing.assert_close(two, torch.tensor(_deqa_loop(s[:2], q[:2], mos[:2], std[:2], torch.zeros(2), 0.5, 2.0), dtype=D64),
                               rtol=1e-12, atol=0)
    # zero std and zero eps are legal
    z = deqa_loss(s, q, mos, torch.zeros_like(std), ids, eps=0.0)
    assert torch.isfinite(z)
    # low precision: computed in float32; mixed dtypes promote
    lp = deqa_loss(s.bfloat16(), q.bfloat16(), mos.bfloat16(), std.bfloat16(), ids)
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp, deqa_loss(s.bfloat16().float(), q.bfloat16().float(), mos.bfloat16().float(),
                                             std.bfloat16().float(), ids), rtol=0, atol=0)
    assert deqa_loss(s.float(), q, mos, std, ids).dtype == D64
    torch.testing.assert_close(deqa_loss(s, q, mos.float(), std.float(), ids),
                               deqa_loss(s, q, mos.float().double(), std.float().double(), ids), rtol=0, atol=0)
    cases = [
        (lambda: deqa_loss(s, q[:, :4], mos, std, ids), r"^soft_labels: expected shape \(10, 5\)"),
        (lambda: deqa_loss(s, q[:-1], mos, std, ids), r"^soft_labels: expected shape \(10, 5\)"),
        (lambda: deqa_loss(s, q[None], mos, std, ids), r"^soft_labels: expected 2 dimensions"),
        (lambda: deqa_loss(s, q.long(), mos, std, ids), r"^soft_labels: expected a floating-point tensor"),
        (lambda: deqa_loss(s, -q, mos, std, ids), r"^soft_labels: expected non-negative"),
        # the inputs are checked in signature order, before the options: negative soft labels are named first
        (lambda: deqa_loss(s, -q, mos, -std, ids, w_fid=-1), r"^soft_labels: expected non-negative"),
        (lambda: deqa_loss(s, q, mos[:, None], std, ids), r"^mos: expected 1 dimensions"),
        (lambda: deqa_loss(s, q, mos, std[:, None], ids), r"^std: expected 1 dimensions"),
        (lambda: deqa_loss(s, q, mos.long(), std, ids), r"^mos:"),
        (lambda: deqa_loss(s, q, mos, std[:-1], ids), r"^std: expected 10 values to match level_logits, got 9"),
        (lambda: deqa_loss(s, q, mos[:-1], std, ids), r"^mos: expected 10 values to match level_logits, got 9"),
        (lambda: deqa_loss(s, q, mos, std.long(), ids), r"^std:"),
        (lambda: deqa_loss(s, q, mos, -std, ids), r"^std: expected standard deviations >= 0"),
        (lambda: deqa_loss(s, q, mos, std, ids.double()), r"^dataset_ids:"),
        (lambda: deqa_loss(s, q, mos, std, ids, w_kl=-1), r"^w_kl:"),
        (lambda: deqa_loss(s, q, mos, std, ids, eps=-1), r"^eps:"),
        (lambda: deqa_loss(s, q, mos, std, ids, eps=float("nan")), r"^eps:"),
        (lambda: deqa_loss(s[:, :4], q, mos, std, ids), r"^level_logits:"),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()
    # soft labels with zeros (binary labels) are legal
    hard = torch.eye(5, dtype=D64)[torch.arange(10) % 5]
    assert torch.isfinite(deqa_loss(s, hard, mos, std, ids))


def test_dtype_promotion_and_eps_reach_every_term():
    s, q, mos, std, ids = _batch()
    f = lambda t: t.float()
    # the loss is computed in the promoted dtype of all four floating inputs: any one of them in float64 decides
    for k in range(4):
        args = [f(t) if j != k else t for j, t in enumerate((s, q, mos, std))]
        out = deqa_loss(*args, ids)
        assert out.dtype == D64
        torch.testing.assert_close(out, deqa_loss(*[t.double() for t in args], ids), rtol=0, atol=0)
    for a, b in ((s, f(q)), (f(s), q)):
        out = level_kl_loss(a, b, reduction="none")
        assert out.dtype == D64
        torch.testing.assert_close(out, level_kl_loss(a.double(), b.double(), reduction="none"), rtol=0, atol=0)
    qb = q.bfloat16()
    torch.testing.assert_close(level_kl_loss(s.float(), qb), level_kl_loss(s.float(), qb.float()), rtol=0, atol=0)
    # eps reaches both Thurstone probabilities and the fidelity loss
    for fixed in (True, False):
        got = deqa_loss(s, q, mos, std, ids, fixed_pred_std=fixed, eps=0.5)
        assert abs(got.item() - _deqa_loop(s, q, mos, std, ids, fixed=fixed, eps=0.5)) < 1e-10


def test_binary_label_gradient_puts_mu_five_in_the_top_bin():
    # mu' = 5 lies in [4, 5] (floor clamped to 4): p_excellent = mu' - 4, p_good = 5 - mu'
    mu = torch.tensor([5.0, 2.5], dtype=D64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(binary_label, mu)
    torch.testing.assert_close(jac[0, :, 0], torch.tensor([1.0, -1.0, 0, 0, 0], dtype=D64))
    torch.testing.assert_close(jac[1, :, 1], torch.tensor([0, 0, 1.0, -1.0, 0], dtype=D64))


def test_soft_label_threshold_ties_exact_bounds_and_mixed_rows():
    mos, sd = torch.tensor([3.3], dtype=D64), torch.tensor([0.8], dtype=D64)
    q, b = score_to_soft_label(mos, sd, 1.0, 5.0)
    assert not b.item()
    diff = float(((q * torch.tensor(LEVEL_SCORES, dtype=D64)).sum(-1) - mos).abs())
    # |mean - mu'| equal to thre_diff is not above it (strict >)
    assert not score_to_soft_label(mos, sd, 1.0, 5.0, thre_diff=diff)[1].item()
    assert score_to_soft_label(mos, sd, 1.0, 5.0, thre_diff=diff / 2)[1].item() or diff == 0.0
    # mu' exactly 1e-9 outside [1, 5] is still accepted (strict <, >)
    q2, _ = score_to_soft_label(torch.tensor([1.0 - 1e-9, 5.0 + 1e-9], dtype=D64), sd.expand(2), 1.0, 5.0)
    torch.testing.assert_close(q2, score_to_soft_label(torch.tensor([1.0, 5.0], dtype=D64), sd.expand(2), 1.0, 5.0)[0],
                               rtol=0, atol=0)
    # a row whose densities underflow takes the binary label, its neighbour keeps its soft label
    q3, b3 = score_to_soft_label(torch.tensor([3.5, 3.3], dtype=D64), torch.tensor([0.01, 0.8], dtype=D64), 1.0, 5.0,
                                 thre_std=0.0, thre_diff=10.0)
    assert b3.tolist() == [True, False]
    torch.testing.assert_close(q3[1], q[0], rtol=0, atol=0)


def test_mu_three_guard_is_relative_to_A():
    # sigma' = 0.25: A = 1.597; mu' = 3 + 7e-8 gives |B - 3A| = 1.2e-9 < 1e-9 A: still the plain normalisation
    mu, sd = torch.tensor([3 + 7e-8], dtype=D64), torch.tensor([0.25], dtype=D64)
    q, b = score_to_soft_label(mu, sd, 1.0, 5.0)
    raw = torch.distributions.Normal(mu[:, None], sd[:, None]).log_prob(torch.tensor(LEVEL_SCORES, dtype=D64)).exp()
    assert not b.item()
    torch.testing.assert_close(q, raw / raw.sum(-1, keepdim=True), rtol=1e-12, atol=0)
