"""Tests for lossbook.classification.ldr_losses (Zhu, Ying & Yang, ICML 2023: LDR-KL, ALDR-KL and the baselines).

References: plain float64 loops transcribed from Eqs. (1)-(2), (7), (9)-(13) of the notebook, and a CPU transcription
of the official loss file's `LDRLoss_V1` / `ALDRLoss_V1` (with `.cuda()` removed and log K in float64).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.classification.ldr_losses import (
    ALDRKLLoss,
    LDRKLLoss,
    aldr_kl_lambdas,
    aldr_kl_loss,
    gce_loss,
    label_distribution_weights,
    mae_loss,
    normalize_scores,
    sce_loss,
    ldr_kl_loss,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MODES = ["none", "l1", "softplus_mean"]


def _data(B=12, K=10, dtype=torch.float64, seed=0, device="cpu", scale=2.0):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(B, K, generator=g, dtype=torch.float64) * scale + 0.3
    y = torch.randint(0, K, (B,), generator=g)
    return o.to(device=device, dtype=dtype), y.to(device)


# ---------------------------------------------------------------- float64 loops from the equations
def _norm_ref(row, mode):
    K = len(row)
    if mode == "none":
        return list(row)
    if mode == "softplus_mean":
        row = [max(v, 0.0) + math.log1p(math.exp(-abs(v))) for v in row]
    den = sum(abs(v) for v in row) / K
    return [v / den for v in row]


def _ldr_row(f, c, lam, margin):
    K = len(f)
    d = [(margin if k != c else 0.0) + f[k] - f[c] for k in range(K)]
    m = max(v / lam for v in d)
    return lam * (m + math.log(sum(math.exp(v / lam - m) for v in d) / K))


def _ldr_ref(o, y, lam=1.0, margin=1.0, normalize="none"):
    return torch.tensor([_ldr_row(_norm_ref(r, normalize), c, lam, margin) for r, c in zip(o.tolist(), y.tolist())],
                        dtype=torch.float64)


def _aldr_ref(o, y, old, lam0=1.0, margin=1.0, alpha=2.0, normalize="l1"):
    "Eqs. (9)-(10) row by row; returns (losses, new lambdas)."
    losses, lams = [], []
    for r, c, lo in zip(o.tolist(), y.tolist(), old.tolist()):
        f = _norm_ref(r, normalize)
        K = len(f)
        m = max(v / lo for v in f)
        e = [math.exp(v / lo - m) for v in f]
        p = [v / sum(e) + 1e-5 for v in e]
        p = [v / sum(p) for v in p]
        kl = sum(v * math.log(K * v) for v in p)
        lam = lam0 * (1 - kl / (alpha * math.log(K)))
        losses.append(_ldr_row(f, c, lam, margin) - alpha * math.log(K) / (2 * lam0) * (lam - lam0) ** 2)
        lams.append(lam)
    return torch.tensor(losses, dtype=torch.float64), torch.tensor(lams, dtype=torch.float64)


# ---------------------------------------------------------------- the official code, transcribed for the CPU
def _diff_logits(y_pred, y_true):
    return y_pred - torch.sum(y_pred * y_true, dim=1, keepdim=True)


def _official_ldr_v1(y_pred, y_true, threshold=2.0, Lambda=1.0):
    y_pred = F.softplus(y_pred)
    y_pred = y_pred / torch.mean(y_pred, dim=1, keepdim=True)
    d = (threshold * (1 - y_true) + _diff_logits(y_pred, y_true)) / Lambda
    mx = torch.max(d, dim=1, keepdim=True).values.detach()
    return (Lambda * (torch.log(torch.mean(torch.exp(d - mx), dim=1, keepdim=True)) + mx)).mean()


class _OfficialALDR:
    def __init__(self, N, threshold=1.0, Lambda=1.0, alpha=1.0, softplus=False):
        self.threshold, self.ref, self.alpha, self.softplus = threshold, torch.tensor(Lambda, dtype=torch.float64), alpha, softplus
        self.Lambda = torch.tensor([Lambda] * N, dtype=torch.float64).view(-1, 1)

    def __call__(self, y_pred, y_true, ids):
        K = y_pred.shape[1]
        if self.softplus:
            y_pred = F.softplus(y_pred)
        y_pred = y_pred / (torch.norm(y_pred, dim=1, p=1.0, keepdim=True) / K)
        p = F.normalize(F.softmax(y_pred / self.Lambda[ids], dim=1) + 1e-5, p=1.0)
        kl = torch.sum(p * torch.log(K * p), dim=1, keepdim=True)
        logK = math.log(K)
        lambdas = self.ref - self.ref * kl / (self.alpha * logK)
        self.Lambda[ids] = lambdas.detach()
        extra = -1 / 2 * self.alpha * logK / self.ref * (self.Lambda[ids] - self.ref) ** 2
        d = (self.threshold * (1 - y_true) + _diff_logits(y_pred, y_true)) / self.Lambda[ids]
        mx = torch.max(d, dim=1, keepdim=True).values.detach()
        return (self.Lambda[ids] * (torch.log(torch.mean(torch.exp(d - mx), dim=1, keepdim=True)) + mx) + extra).mean()


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("normalize", MODES)
@pytest.mark.parametrize("lam,margin", [(1.0, 1.0), (0.1, 0.0), (10.0, 2.0), (0.37, 0.5)])
def test_ldr_matches_float64_loop(normalize, lam, margin):
    o, y = _data()
    got = ldr_kl_loss(o, y, lam=lam, margin=margin, normalize=normalize, reduction="none")
    torch.testing.assert_close(got, _ldr_ref(o, y, lam, margin, normalize), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lam,margin", [(1.0, 2.0), (0.1, 0.1), (10.0, 1.0)])
def test_ldr_matches_official_ldr_v1(lam, margin):
    o, y = _data(B=32)
    want = _official_ldr_v1(o, F.one_hot(y, 10).double(), threshold=margin, Lambda=lam)
    torch.testing.assert_close(ldr_kl_loss(o, y, lam=lam, margin=margin, normalize="softplus_mean"), want,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("softplus", [False, True])
def test_aldr_module_matches_official_aldr_v1_over_steps(softplus):
    N, K = 40, 10
    official = _OfficialALDR(N, threshold=0.7, Lambda=2.0, alpha=3.0, softplus=softplus)
    ours = ALDRKLLoss(N, lam0=2.0, margin=0.7, alpha=3.0, normalize="softplus_mean" if softplus else "l1")
    g = torch.Generator().manual_seed(3)
    for step in range(4):
        o, y = _data(B=16, seed=step, scale=1.0 + step)
        ids = torch.randperm(N, generator=g)[:16]
        want = official(o, F.one_hot(y, K).double(), ids)
        torch.testing.assert_close(ours(o, y, ids), want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.lambdas, official.Lambda.squeeze(1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("normalize", MODES)
def test_aldr_matches_float64_loop(normalize):
    o, y = _data()
    old = torch.linspace(0.2, 3.0, 12, dtype=torch.float64)
    want_loss, want_lam = _aldr_ref(o, y, old, lam0=1.5, margin=0.4, alpha=2.5, normalize=normalize)
    got = aldr_kl_loss(o, y, old, lam0=1.5, margin=0.4, alpha=2.5, normalize=normalize, reduction="none")
    torch.testing.assert_close(got, want_loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(aldr_kl_lambdas(o, old, lam0=1.5, alpha=2.5, normalize=normalize), want_lam,
                               rtol=1e-10, atol=1e-12)


def test_baselines_match_formulas():
    o, y = _data()
    p = torch.softmax(o, 1)
    py = p[torch.arange(len(y)), y]
    torch.testing.assert_close(gce_loss(o, y, q=0.3, reduction="none"), (1 - py**0.3) / 0.3)
    torch.testing.assert_close(mae_loss(o, y, reduction="none"), (F.one_hot(y, 10) - p).abs().sum(1))
    ce = F.cross_entropy(o, y, reduction="none")
    rce = -(p * torch.log(F.one_hot(y, 10).double().clamp_min(math.exp(-2.5)))).sum(1)  # log 0 := -A, A = 2.5
    torch.testing.assert_close(sce_loss(o, y, alpha=0.3, beta=0.8, A=2.5, reduction="none"), 0.3 * ce + 0.8 * rce)
    # the official SCELoss(balance=b, A=4): (1 - b) CE + b A (1 - p_y)
    b = 0.95
    torch.testing.assert_close(sce_loss(o, y, alpha=1 - b, beta=b), ((1 - b) * ce + b * 4.0 * (1 - py)).mean())


# ---------------------------------------------------------------- identities and properties of LDR-KL
@pytest.mark.parametrize("tau", [0.05, 1.0, 7.0])
def test_margin_zero_is_temperature_scaled_ce_values_and_grads(tau):
    o, y = _data()
    a, b = o.clone().requires_grad_(), o.clone().requires_grad_()
    la = ldr_kl_loss(a, y, lam=tau, margin=0.0)
    lb = tau * F.cross_entropy(b / tau, y) - tau * math.log(10)
    torch.testing.assert_close(la, lb, rtol=1e-12, atol=1e-12)
    la.backward(), lb.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_variational_form_and_worst_case_distribution():
    o, y = _data(B=20)
    for lam, c in [(0.3, 1.0), (2.0, 0.5)]:
        d = o - o.gather(1, y[:, None]) + c * (1 - F.one_hot(y, 10).double())
        obj = lambda p: (p * d).sum(1) - lam * (p * torch.log(10 * p)).sum(1)
        p_star = label_distribution_weights(o, y, lam=lam, margin=c)
        torch.testing.assert_close(p_star, torch.softmax(d / lam, 1))
        torch.testing.assert_close(p_star.sum(1), torch.ones(20, dtype=torch.float64))
        torch.testing.assert_close(obj(p_star), ldr_kl_loss(o, y, lam=lam, margin=c, reduction="none"))
        g = torch.Generator().manual_seed(1)
        for _ in range(10):
            p = torch.softmax(2 * torch.randn(20, 10, generator=g, dtype=torch.float64), 1)
            assert (obj(p) < obj(p_star) + 1e-12).all()


def test_label_distribution_weights_defaults_and_normalisation():
    o, y = _data()
    torch.testing.assert_close(label_distribution_weights(o, y),
                               label_distribution_weights(o, y, lam=1.0, margin=1.0, normalize="none"), rtol=0, atol=0)
    assert not torch.allclose(label_distribution_weights(o, y), label_distribution_weights(o, y, lam=2.0))
    assert not torch.allclose(label_distribution_weights(o, y), label_distribution_weights(o, y, margin=0.0))
    f = normalize_scores(o, "l1")
    torch.testing.assert_close(label_distribution_weights(o, y, normalize="l1"), label_distribution_weights(f, y))
    with pytest.raises(ValueError, match=r"^lam:"):
        label_distribution_weights(o, y, lam=0.0)
    with pytest.raises(ValueError, match=r"^margin:"):
        label_distribution_weights(o, y, margin=-1.0)


def test_limits_in_lambda_and_monotonicity():
    o, y = _data(B=30)
    c = 1.0
    d = o - o.gather(1, y[:, None]) + c * (1 - F.one_hot(y, 10).double())
    hinge = d.max(1).values
    for lam in (1e-2, 1e-3):
        gap = hinge - ldr_kl_loss(o, y, lam=lam, margin=c, reduction="none")
        assert (gap >= -1e-12).all() and (gap <= lam * math.log(10) + 1e-12).all()
    torch.testing.assert_close(ldr_kl_loss(o, y, lam=1e5, margin=c, reduction="none"), d.mean(1), rtol=0, atol=1e-3)
    lams = [1e-3, 0.01, 0.1, 0.5, 1.0, 3.0, 10.0, 100.0]
    vals = torch.stack([ldr_kl_loss(o, y, lam=lam, margin=c, reduction="none") for lam in lams])
    assert (vals[1:] <= vals[:-1] + 1e-12).all()


def test_convex_in_scores():
    g = torch.Generator().manual_seed(2)
    for lam, c in [(0.5, 1.0), (3.0, 0.0)]:
        for i in range(4):
            f = torch.randn(6, generator=g, dtype=torch.float64) * 2
            H = torch.autograd.functional.hessian(lambda x: ldr_kl_loss(x[None], torch.tensor([i]), lam=lam, margin=c), f)
            assert torch.linalg.eigvalsh(H).min() > -1e-10


def test_shift_invariance_and_symmetry_of_the_average_limit():
    o, y = _data()
    for t in (-3.0, 10.0):
        torch.testing.assert_close(ldr_kl_loss(o + t, y, lam=0.7), ldr_kl_loss(o, y, lam=0.7), rtol=1e-12, atol=1e-12)
    # l1 / softplus_mean are scale invariant / shift variant respectively: scaling does not change the l1 loss
    torch.testing.assert_close(ldr_kl_loss(5 * o, y, normalize="l1"), ldr_kl_loss(o, y, normalize="l1"))
    lam, c = 1e6, 1.5
    tot = sum(ldr_kl_loss(o, torch.full_like(y, k), lam=lam, margin=c, reduction="none") for k in range(10))
    torch.testing.assert_close(tot, torch.full((12,), c * 9, dtype=torch.float64), rtol=0, atol=1e-4)


def test_normalisations():
    o, _ = _data()
    l1 = normalize_scores(o, "l1")
    torch.testing.assert_close(l1, o / (o.abs().sum(1, keepdim=True) / 10))
    sp = normalize_scores(o, "softplus_mean")
    torch.testing.assert_close(sp, F.softplus(o) / F.softplus(o).mean(1, keepdim=True))
    assert normalize_scores(o) is not o and torch.equal(normalize_scores(o), l1)  # the default is 'l1'
    assert normalize_scores(o, "none") is o
    z = torch.zeros(2, 4, dtype=torch.float64)
    assert torch.equal(normalize_scores(z, "l1"), z)
    # the ranking of the scores is kept
    assert torch.equal(l1.argmax(1), o.argmax(1)) and torch.equal(sp.argmax(1), o.argmax(1))
    with pytest.raises(ValueError, match=r"^normalize:"):
        normalize_scores(o, "max")


def test_one_hot_target_equals_labels():
    o, y = _data()
    oh = F.one_hot(y, 10).double()
    for fn in (ldr_kl_loss, aldr_kl_loss, gce_loss, sce_loss, mae_loss):
        torch.testing.assert_close(fn(o, oh), fn(o, y), rtol=0, atol=0)
    torch.testing.assert_close(label_distribution_weights(o, oh), label_distribution_weights(o, y))
    soft = oh * 0.9 + 0.01
    with pytest.raises(ValueError, match=r"^target:.*one-hot"):
        ldr_kl_loss(o, soft)
    two = oh.clone()
    two[0, (y[0] + 1) % 10] = 1.0
    with pytest.raises(ValueError, match=r"^target:.*one-hot"):
        ldr_kl_loss(o, two)
    with pytest.raises(ValueError, match=r"^logits and target"):
        ldr_kl_loss(o, oh[:, :5])


# ---------------------------------------------------------------- ALDR-KL
def test_aldr_lambda_at_uniform_and_interval():
    torch.testing.assert_close(aldr_kl_lambdas(torch.full((3, 7), 2.5, dtype=torch.float64), lam0=3.0),
                               torch.full((3,), 3.0, dtype=torch.float64), rtol=0, atol=1e-12)
    o, _ = _data(B=200, scale=30.0)
    for lam0, alpha in [(1.0, 2.0), (0.1, 1.01), (10.0, 5.0)]:
        for old in (1e-3, 1.0, 1e3):
            lam = aldr_kl_lambdas(o, torch.full((200,), old, dtype=torch.float64), lam0=lam0, alpha=alpha)
            assert (lam <= lam0 + 1e-12).all() and (lam >= lam0 * (1 - 1 / alpha) - 1e-12).all()
    # a peaked softmax gives a smaller lambda than a flat one
    flat, peaked = torch.zeros(1, 10, dtype=torch.float64), torch.zeros(1, 10, dtype=torch.float64)
    flat[0, 0], peaked[0, 0] = 0.1, 50.0
    assert aldr_kl_lambdas(peaked, torch.tensor([0.1], dtype=torch.float64)) < aldr_kl_lambdas(flat)


def test_aldr_defaults_pinned():
    o, y = _data()
    old = torch.linspace(0.5, 1.5, 12, dtype=torch.float64)
    base = aldr_kl_loss(o, y, old)
    torch.testing.assert_close(base, aldr_kl_loss(o, y, old, lam0=1.0, margin=1.0, alpha=2.0, normalize="l1",
                                                  reduction="mean"), rtol=0, atol=0)
    for kw in ({"lam0": 2.0}, {"margin": 0.5}, {"alpha": 3.0}, {"normalize": "none"}, {"normalize": "softplus_mean"}):
        assert not torch.allclose(base, aldr_kl_loss(o, y, old, **kw)), kw
    torch.testing.assert_close(aldr_kl_loss(o, y), aldr_kl_loss(o, y, torch.ones(12, dtype=torch.float64)), rtol=0, atol=0)
    lam = aldr_kl_lambdas(o, old)
    torch.testing.assert_close(lam, aldr_kl_lambdas(o, old, lam0=1.0, alpha=2.0, normalize="l1"), rtol=0, atol=0)
    for kw in ({"lam0": 2.0}, {"alpha": 3.0}, {"normalize": "none"}):
        assert not torch.allclose(lam, aldr_kl_lambdas(o, old, **kw)), kw
    torch.testing.assert_close(aldr_kl_lambdas(o), aldr_kl_lambdas(o, torch.ones(12, dtype=torch.float64)))
    # the regulariser of Eq. (10) is in the value: lambda_0 fixed for all gives plain LDR-KL only when lambda = lambda_0
    ref_loss, ref_lam = _aldr_ref(o, y, old)
    torch.testing.assert_close(aldr_kl_loss(o, y, old, reduction="none"), ref_loss)
    assert (ref_lam < 1.0).any()


def test_aldr_module_buffer_and_settings():
    N = 30
    crit = ALDRKLLoss(N, lam0=0.5, margin=0.2, alpha=4.0, normalize="softplus_mean", reduction="sum")
    assert crit.lambdas.shape == (N,) and crit.lambdas.dtype == torch.float64 and (crit.lambdas == 0.5).all()
    o, y = _data(B=5)
    idx = torch.tensor([29, 0, 4, 17, 8])
    val = crit(o, y, idx)
    torch.testing.assert_close(val, aldr_kl_loss(o, y, torch.full((5,), 0.5, dtype=torch.float64), lam0=0.5, margin=0.2,
                                                 alpha=4.0, normalize="softplus_mean", reduction="sum"), rtol=0, atol=0)
    untouched = torch.ones(N, dtype=torch.bool)
    untouched[idx] = False
    assert (crit.lambdas[untouched] == 0.5).all()
    torch.testing.assert_close(crit.lambdas[idx], aldr_kl_lambdas(o, torch.full((5,), 0.5, dtype=torch.float64),
                                                                  lam0=0.5, alpha=4.0, normalize="softplus_mean"))
    # the second call reads the stored lambdas
    old = crit.lambdas[idx].clone()
    torch.testing.assert_close(crit(o, y, idx), aldr_kl_loss(o, y, old, lam0=0.5, margin=0.2, alpha=4.0,
                                                             normalize="softplus_mean", reduction="sum"))
    # defaults
    d = ALDRKLLoss(N)
    assert (d.lam0, d.margin, d.alpha, d.normalize, d.reduction) == (1.0, 1.0, 2.0, "l1", "mean")
    torch.testing.assert_close(d(o, y, idx), aldr_kl_loss(o, y), rtol=0, atol=0)
    none = ALDRKLLoss(N, reduction="none")(o, y, idx)
    assert none.shape == (5,)
    assert "num_samples=30" in repr(crit) and "normalize='softplus_mean'" in repr(crit) and "alpha=4.0" in repr(crit)
    # state_dict keeps the buffer
    assert "lambdas" in crit.state_dict()


def test_aldr_module_bad_inputs():
    o, y = _data(B=4)
    crit = ALDRKLLoss(10)
    with pytest.raises(ValueError, match=r"^index:"):
        crit(o, y, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match=r"^index:"):
        crit(o, y, torch.tensor([0, 1, 1, 2]))
    with pytest.raises(ValueError, match=r"^index:"):
        crit(o, y, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"^index:"):
        crit(o, y, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"^logits:"):
        crit(o[:, :1], y, torch.arange(4))
    with pytest.raises(ValueError, match=r"^logits:"):
        crit(o.long(), y, torch.arange(4))
    with pytest.raises(ValueError, match=r"^target:"):
        crit(o, y[:3], torch.arange(4))
    for bad in (0, -3, 2.5, True, None):
        with pytest.raises(ValueError, match=r"^num_samples:"):
            ALDRKLLoss(bad)
    for kw, name in [({"lam0": 0.0}, "lam0"), ({"margin": -0.1}, "margin"), ({"alpha": 1.0}, "alpha"),
                     ({"alpha": 0.5}, "alpha"), ({"normalize": "l2"}, "normalize"), ({"reduction": "avg"}, "reduction")]:
        with pytest.raises(ValueError, match=rf"^{name}:"):
            ALDRKLLoss(10, **kw)
    assert ALDRKLLoss(1).lambdas.shape == (1,)
    assert ALDRKLLoss(3, alpha=1.0001).alpha == 1.0001
    assert ALDRKLLoss(3, margin=0.0).margin == 0.0


def test_aldr_functional_bad_inputs():
    o, y = _data(B=4)
    good = torch.ones(4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^lambdas:.*> 0"):
        aldr_kl_loss(o, y, torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^lambdas:.*> 0"):
        aldr_kl_lambdas(o, -good)
    with pytest.raises(ValueError, match=r"^lambdas:.*4 values"):
        aldr_kl_loss(o, y, good[:3])
    with pytest.raises(ValueError, match=r"^lambdas:"):
        aldr_kl_loss(o, y, good[:, None])
    with pytest.raises(ValueError, match=r"^lambdas:"):
        aldr_kl_loss(o, y, torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^lambdas:"):
        aldr_kl_loss(o, y, torch.tensor([1.0, float("nan"), 1.0, 1.0], dtype=torch.float64))
    for kw, name in [({"lam0": -1.0}, "lam0"), ({"margin": -1.0}, "margin"), ({"alpha": 1.0}, "alpha"),
                     ({"normalize": "x"}, "normalize"), ({"reduction": "avg"}, "reduction")]:
        with pytest.raises(ValueError, match=rf"^{name}:"):
            aldr_kl_loss(o, y, good, **kw)
    for kw, name in [({"lam0": 0.0}, "lam0"), ({"alpha": 1.0}, "alpha"), ({"normalize": "x"}, "normalize")]:
        with pytest.raises(ValueError, match=rf"^{name}:"):
            aldr_kl_lambdas(o, good, **kw)
    with pytest.raises(ValueError, match=r"^logits:"):
        aldr_kl_lambdas(o[0])
    aldr_kl_loss(o, y, good, alpha=1.0 + 1e-9, margin=0.0)  # the smallest legal values pass


# ---------------------------------------------------------------- defaults, modules, reductions
def test_ldr_defaults_pinned():
    o, y = _data()
    base = ldr_kl_loss(o, y)
    torch.testing.assert_close(base, ldr_kl_loss(o, y, lam=1.0, margin=1.0, normalize="none", reduction="mean"),
                               rtol=0, atol=0)
    for kw in ({"lam": 2.0}, {"margin": 0.5}, {"normalize": "l1"}, {"normalize": "softplus_mean"}):
        assert not torch.allclose(base, ldr_kl_loss(o, y, **kw)), kw
    m = LDRKLLoss()
    assert (m.lam, m.margin, m.normalize, m.reduction) == (1.0, 1.0, "none", "mean")
    torch.testing.assert_close(m(o, y), base, rtol=0, atol=0)
    assert repr(m) == "LDRKLLoss(lam=1.0, margin=1.0, normalize='none', reduction='mean')"


def test_baseline_defaults_pinned():
    o, y = _data()
    torch.testing.assert_close(gce_loss(o, y), gce_loss(o, y, q=0.7, reduction="mean"), rtol=0, atol=0)
    assert not torch.allclose(gce_loss(o, y), gce_loss(o, y, q=0.5))
    torch.testing.assert_close(sce_loss(o, y), sce_loss(o, y, alpha=0.1, beta=1.0, A=4.0, reduction="mean"), rtol=0, atol=0)
    for kw in ({"alpha": 0.2}, {"beta": 0.5}, {"A": 5.0}):
        assert not torch.allclose(sce_loss(o, y), sce_loss(o, y, **kw)), kw
    torch.testing.assert_close(mae_loss(o, y), mae_loss(o, y, reduction="mean"), rtol=0, atol=0)


@pytest.mark.parametrize("normalize", MODES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_module_passes_every_setting(normalize, reduction):
    o, y = _data()
    m = LDRKLLoss(lam=0.3, margin=0.25, normalize=normalize, reduction=reduction)
    torch.testing.assert_close(m(o, y), ldr_kl_loss(o, y, 0.3, 0.25, normalize, reduction), rtol=0, atol=0)


@pytest.mark.parametrize("fn", [ldr_kl_loss, aldr_kl_loss, gce_loss, sce_loss, mae_loss])
def test_reductions(fn):
    o, y = _data()
    none = fn(o, y, reduction="none")
    assert none.shape == (12,)
    torch.testing.assert_close(fn(o, y, reduction="sum"), none.sum())
    torch.testing.assert_close(fn(o, y), none.mean())
    with pytest.raises(ValueError, match=r"^reduction:"):
        fn(o, y, reduction="avg")


# ---------------------------------------------------------------- gradients, dtypes, devices
@pytest.mark.parametrize("normalize", MODES)
def test_gradcheck(normalize):
    o, y = _data(B=4, K=5)
    o = (o.abs() + 0.5) * torch.sign(o)  # keep away from 0, where the L1 normalisation is not smooth
    o.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: ldr_kl_loss(x, y, lam=0.7, margin=0.3, normalize=normalize, reduction="none"), (o,))
    # ALDR-KL at lambda held fixed (its lambda is detached by design, so a finite difference would move it): the
    # first term of Eq. (10) is LDR-KL at that lambda, checked in test_aldr_gradient_treats_lambda_as_constant


def test_gradcheck_baselines():
    o, y = _data(B=4, K=5)
    o.requires_grad_(True)
    for fn in (lambda x: gce_loss(x, y, q=0.4, reduction="none"), lambda x: sce_loss(x, y, reduction="none"),
               lambda x: mae_loss(x, y, reduction="none")):
        assert torch.autograd.gradcheck(fn, (o,))


def test_aldr_gradient_treats_lambda_as_constant():
    "The gradient of (10) is the gradient of LDR-KL at the new lambda_i held fixed (lambda is detached)."
    o, y = _data(B=6)
    old = torch.full((6,), 1.0, dtype=torch.float64)
    lam = aldr_kl_lambdas(o, old)
    a, b = o.clone().requires_grad_(), o.clone().requires_grad_()
    aldr_kl_loss(a, y, old, reduction="sum").backward()
    f = normalize_scores(b, "l1")
    total = sum(ldr_kl_loss(f[i:i + 1], y[i:i + 1], lam=float(lam[i])) for i in range(6))
    total.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_devices_and_dtypes(device, dtype):
    o, y = _data(dtype=dtype, device=device)
    for fn in (ldr_kl_loss, gce_loss, sce_loss, mae_loss, aldr_kl_loss):
        v = fn(o, y)
        assert v.dtype == dtype and v.device.type == device
    crit = ALDRKLLoss(20).to(device)
    v = crit(o, y, torch.arange(12, device=device))
    assert v.dtype == dtype and crit.lambdas.device.type == device
    o64, y64 = _data()
    torch.testing.assert_close(ldr_kl_loss(o, y, normalize="l1").double().cpu(), ldr_kl_loss(o64, y64, normalize="l1"),
                               rtol=1e-5, atol=1e-6)


def test_small_lambda_and_large_scores_stay_finite():
    o, y = _data(dtype=torch.float32)
    for lam in (1e-4, 1e4):
        for s in (1e-4, 1e4):
            x = (o * s).requires_grad_()
            v = ldr_kl_loss(x, y, lam=lam)
            v.backward()
            assert torch.isfinite(v) and torch.isfinite(x.grad).all()


def test_smallest_legal_inputs():
    o = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    y = torch.tensor([1])
    want = math.log((math.exp(0.0) + math.exp(1.0 + 0.3 + 0.2)) / 2)
    assert ldr_kl_loss(o, y).item() == pytest.approx(want, abs=1e-14)
    for fn in (aldr_kl_loss, gce_loss, sce_loss, mae_loss):
        assert torch.isfinite(fn(o, y))
    assert ldr_kl_loss(o, y, margin=0.0).item() == pytest.approx(F.cross_entropy(o, y).item() - math.log(2), abs=1e-14)
    assert gce_loss(o, y, q=1.0).item() == pytest.approx(mae_loss(o, y).item() / 2, abs=1e-14)
    assert sce_loss(o, y, alpha=0.0, beta=0.0).item() == 0.0


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("fn", [ldr_kl_loss, aldr_kl_loss, gce_loss, sce_loss, mae_loss])
def test_bad_inputs_name_the_argument(fn):
    o, y = _data(B=4)
    cases = [
        ((o[0], y), r"^logits:"),
        ((o[:, :1], y), r"^logits:"),
        ((o.long(), y), r"^logits:"),
        ((o[:0], y[:0]), r"^logits:"),
        ((torch.where(torch.eye(4, 10, dtype=torch.bool), float("nan"), o), y), r"^logits:"),
        ((torch.where(torch.eye(4, 10, dtype=torch.bool), float("inf"), o), y), r"^logits:"),
        ((o, y[:3]), r"^target:"),
        ((o, y.float()), r"^target:"),
        ((o, torch.tensor([0, 1, 2, 10])), r"^target:"),
        ((o, torch.tensor([0, 1, -1, 2])), r"^target:"),
    ]
    for args, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn(*args)


def test_bad_hyper_parameters_name_the_argument():
    o, y = _data(B=4)
    for kw, name in [({"lam": 0.0}, "lam"), ({"lam": -1.0}, "lam"), ({"lam": float("inf")}, "lam"),
                     ({"margin": -0.5}, "margin"), ({"normalize": "l2"}, "normalize"), ({"reduction": "avg"}, "reduction")]:
        with pytest.raises(ValueError, match=rf"^{name}:"):
            ldr_kl_loss(o, y, **kw)
        with pytest.raises(ValueError, match=rf"^{name}:"):
            LDRKLLoss(**kw)
    ldr_kl_loss(o, y, margin=0.0)  # margin 0 is legal
    for kw, name in [({"q": 0.0}, "q"), ({"q": 1.5}, "q")]:
        with pytest.raises(ValueError, match=rf"^{name}:"):
            gce_loss(o, y, **kw)
    gce_loss(o, y, q=1.0)
    for kw, name in [({"alpha": -0.1}, "alpha"), ({"beta": -1.0}, "beta"), ({"A": 0.0}, "A")]:
        with pytest.raises(ValueError, match=rf"^{name}:"):
            sce_loss(o, y, **kw)
    sce_loss(o, y, alpha=0.0, beta=0.0)


# ---------------------------------------------------------------- mutation pass (#7): the gaps its survivors showed
def test_half_precision_inputs_are_computed_in_float32():
    o, y = _data(B=6)
    lo = o.to(torch.bfloat16)
    up = lo.float()
    old = torch.linspace(0.6, 1.4, 6)
    for fn in (ldr_kl_loss, gce_loss, sce_loss, mae_loss):
        v = fn(lo, y, reduction="none")
        assert v.dtype == torch.float32 and torch.equal(v, fn(up, y, reduction="none")), fn.__name__
    torch.testing.assert_close(aldr_kl_loss(lo, y, old, reduction="none"), aldr_kl_loss(up, y, old, reduction="none"),
                               rtol=0, atol=0)
    torch.testing.assert_close(aldr_kl_lambdas(lo, old), aldr_kl_lambdas(up, old), rtol=0, atol=0)
    a, b = ALDRKLLoss(6), ALDRKLLoss(6)
    torch.testing.assert_close(a(lo, y, torch.arange(6)), b(up, y, torch.arange(6)), rtol=0, atol=0)
    torch.testing.assert_close(a.lambdas, b.lambdas, rtol=0, atol=0)


def test_scalar_and_vector_logits_are_refused_by_name():
    o, y = _data(B=4)
    for bad in (torch.tensor(1.0, dtype=torch.float64), o[0]):
        with pytest.raises(ValueError, match=r"^logits: expected 2 dimensions"):
            aldr_kl_lambdas(bad)
        with pytest.raises(ValueError, match=r"^logits: expected 2 dimensions"):
            ALDRKLLoss(10)(bad, y, torch.arange(4))


def test_non_finite_one_hot_target_is_refused_by_name():
    o, y = _data(B=4)
    oh = F.one_hot(y, 10).double()
    for v in (float("nan"), float("inf")):
        bad = oh.clone()
        bad[0, 0] = v
        with pytest.raises(ValueError, match=r"^target: "):
            ldr_kl_loss(o, bad)


def test_corrupted_lambda_buffer_is_refused():
    o, y = _data(B=4)
    crit = ALDRKLLoss(10)
    crit.lambdas[2] = 0.0  # e.g. a damaged state_dict: Eq. (9) itself never goes below lam0 (1 - 1/alpha)
    with pytest.raises(ValueError, match=r"^lambdas: expected values > 0"):
        crit(o, y, torch.tensor([0, 1, 2, 3]))
    crit(o, y, torch.tensor([4, 5, 6, 7]))  # the other samples still train


def test_zero_margin_module_and_non_positive_alpha_by_name():
    assert LDRKLLoss(margin=0.0).margin == 0.0
    o, y = _data(B=4)
    for bad in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^alpha: expected a finite number > 0"):
            ALDRKLLoss(10, alpha=bad)
        with pytest.raises(ValueError, match=r"^alpha: expected a finite number > 0"):
            aldr_kl_loss(o, y, alpha=bad)


def test_registry_examples_cast_every_tensor():
    from lossbook.classification import ldr_losses as ldr
    (o, y), kw = ldr._logits_example(5, torch.float32, "cpu", 1)
    assert o.shape == (5, 10) and o.dtype == torch.float32 and y.shape == (5,) and kw == {}
    (o, y), kw = ldr._aldr_example(5, torch.float32, "cpu", 1)
    assert o.dtype == kw["lambdas"].dtype == torch.float32 and kw["lambdas"].shape == (5,)
