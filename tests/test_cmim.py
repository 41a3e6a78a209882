"""Tests for lossbook.ssl.cmim (Livne 2024/25, cMIM; A-MIM from Livne, Swersky & Fleet 2019).

No reference library implements cMIM (no official code was found, and the paper's contrastive formula could not be
verified: lossbook's reconstruction is tested here). The references are (a) float64 loops transcribed from the
notebook's equations (tests/references.py, also used by the shared battery, and a differentiable torch loop here for
the gradients), (b) torch.distributions for the Gaussian pieces, F.cross_entropy for the sum (InfoNCE) form, and
(c) the card's identities: 2 A-MIM - VAE = -2 log q, 0 <= sum - mean <= log(B - 1), invariance to a common shift of the
scores and to a permutation of the batch, and the duplicated batch (mean form exactly unchanged, sum form and the
core's InfoNCE not). The 2-process DDP equivalence without sample ids is checked by tests/test_battery.py; with ids here.
"""
import inspect
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from ddp_utils import run_distributed
from references import amim_ref, cmim_contrastive_ref, vae_ref

from lossbook.contrastive import info_nce
from lossbook.ssl.cmim import (AMIMLoss, CMIMContrastiveLoss, VAELoss, amim_loss, cmim_contrastive_loss, cmim_scores,
                               encoder_entropy, gaussian_log_prob, informative_embedding, vae_loss)

LOG_2PI = math.log(2 * math.pi)


def _gauss(n=8, d=5, seed=0, dtype=torch.float64, grad=False):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, d, generator=g, dtype=torch.float64)
    std = 0.3 + torch.rand(n, d, generator=g, dtype=torch.float64)
    z = mu + std * torch.randn(n, d, generator=g, dtype=torch.float64)
    lp = -20 * torch.rand(n, generator=g, dtype=torch.float64)
    out = [t.to(dtype) for t in (lp, z, mu, std)]
    return [t.requires_grad_() for t in out] if grad else out


def _loop(z, mu, std, T=1.0, neg="mean", critic="enc_logdensity", ids=None):
    "Eqs. (6)-(8) anchor by anchor with torch scalars, differentiable."
    B, d = z.shape
    ids = list(range(B)) if ids is None else ids.tolist()
    total = 0
    for i in range(B):
        def s(j):
            if critic == "cosine":
                return F.cosine_similarity(z[i], mu[j], dim=0) / T
            return (-0.5 * (((z[i] - mu[j]) / std[j]) ** 2 + 2 * std[j].log() + LOG_2PI).sum()) / d / T
        negs = [s(j) for j in range(B) if ids[j] != ids[i]]
        lse = torch.logsumexp(torch.stack(negs), 0) - (math.log(len(negs)) if neg == "mean" else 0.0)
        total = total + torch.logaddexp(s(i), lse) - s(i)
    return total / B


# --- the Gaussian pieces -------------------------------------------------------------------------------------------------
def test_gaussian_log_prob_and_entropy_against_torch():
    _, z, mu, std = _gauss(6, 4)
    ref = torch.distributions.Normal(mu, std)
    torch.testing.assert_close(gaussian_log_prob(z, mu, std), ref.log_prob(z).sum(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(encoder_entropy(std), ref.entropy().sum(-1), rtol=1e-12, atol=1e-12)


def test_encoder_entropy_against_monte_carlo():
    std = torch.tensor([[0.5, 1.0, 2.0]], dtype=torch.float64)
    mu = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    z = mu + std * torch.randn(100_000, 3, generator=g, dtype=torch.float64)
    mc = -gaussian_log_prob(z, mu, std).mean()
    assert abs(float(mc - encoder_entropy(std)[0])) < 1e-2


# --- A-MIM and the VAE -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,d", [(1, 1), (5, 3), (12, 16)])
def test_amim_vae_equal_loops(n, d):
    lp, z, mu, std = _gauss(n, d, seed=n)
    torch.testing.assert_close(amim_loss(lp, z, mu, std), amim_ref(lp, z, mu, std).double(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vae_loss(lp, z, mu, std), vae_ref(lp, z, mu, std).double(), rtol=1e-12, atol=1e-12)


def test_amim_vae_formulas_per_sample():
    lp, z, mu, std = _gauss(7, 4)
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    a, v = amim_loss(lp, z, mu, std, reduction="none"), vae_loss(lp, z, mu, std, reduction="none")
    torch.testing.assert_close(a, -0.5 * (lp + log_prior + log_q), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v, -(lp + log_prior - log_q), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(2 * a - v, -2 * log_q, rtol=1e-12, atol=1e-12)  # the card's identity


def test_amim_rewards_sharp_codes_vae_broad_ones():
    lp, _, mu, _ = _gauss(5, 3)
    broad, sharp = torch.ones_like(mu), 0.1 * torch.ones_like(mu)
    assert amim_loss(lp, mu, mu, sharp) < amim_loss(lp, mu, mu, broad)
    assert vae_loss(lp, mu, mu, sharp) > vae_loss(lp, mu, mu, broad)


@pytest.mark.parametrize("fn,module", [(amim_loss, AMIMLoss), (vae_loss, VAELoss)])
def test_amim_vae_reductions_and_modules(fn, module):
    args = _gauss(6, 3)
    none = fn(*args, reduction="none")
    assert none.shape == (6,)
    torch.testing.assert_close(fn(*args), none.mean())
    torch.testing.assert_close(fn(*args, reduction="sum"), none.sum())
    torch.testing.assert_close(module()(*args), fn(*args), rtol=0, atol=0)
    torch.testing.assert_close(module("sum")(*args), fn(*args, reduction="sum"), rtol=0, atol=0)
    assert inspect.signature(fn).parameters["reduction"].default == "mean"
    assert module().reduction == "mean"


@pytest.mark.parametrize("fn", [amim_loss, vae_loss])
def test_amim_vae_gradcheck(fn):
    args = _gauss(4, 3, grad=True)
    assert torch.autograd.gradcheck(lambda *a: fn(*a), args)


# --- the contrastive term: values, gradients, modes --------------------------------------------------------------------------
@pytest.mark.parametrize("n,d,T", [(2, 1, 1.0), (5, 3, 0.5), (9, 16, 2.0), (16, 4, 1.0)])
def test_contrastive_equals_loops(n, d, T):
    _, z, mu, std = _gauss(n, d, seed=n, grad=True)
    ours = cmim_contrastive_loss(z, mu, std, temperature=T)
    torch.testing.assert_close(ours, cmim_contrastive_ref(z, mu, std, T).double(), rtol=1e-11, atol=1e-12)
    for neg in ("mean", "sum"):
        for critic in ("enc_logdensity", "cosine"):
            ours = cmim_contrastive_loss(z, mu, std, T, neg=neg, critic=critic)
            ref = _loop(z, mu, std, T, neg, critic)
            torch.testing.assert_close(ours, ref, rtol=1e-11, atol=1e-12)
            grad = lambda v: torch.autograd.grad(v, (z, mu, std), allow_unused=True, materialize_grads=True)
            for a, b in zip(grad(ours), grad(ref)):  # the cosine critic does not use std: zero gradients
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_scores_against_the_broadcast_density():
    _, z, mu, std = _gauss(7, 5)
    S = cmim_scores(z, mu, std)
    torch.testing.assert_close(S, gaussian_log_prob(z[:, None], mu[None], std[None]) / 5, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(cmim_scores(z, mu, std, "cosine"), F.normalize(z, dim=1) @ F.normalize(mu, dim=1).T)
    S32 = cmim_scores(*(t.float() for t in (z, mu, std)))
    torch.testing.assert_close(S32.double(), S, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("critic", ["enc_logdensity", "cosine"])
def test_sum_form_is_cross_entropy(critic):
    _, z, mu, std = _gauss(10, 4)
    S = cmim_scores(z, mu, std, critic)
    torch.testing.assert_close(cmim_contrastive_loss(z, mu, std, 0.7, neg="sum", critic=critic),
                               F.cross_entropy(S / 0.7, torch.arange(10)), rtol=1e-12, atol=1e-12)


def test_hand_value_cosine():
    zz = torch.eye(2, dtype=torch.float64)
    v = cmim_contrastive_loss(zz, zz, torch.ones_like(zz), critic="cosine", temperature=0.5)
    assert abs(v.item() - math.log(1 + math.exp(-2))) < 1e-12


def test_bounds_between_the_forms():
    _, z, mu, std = _gauss(11, 3)
    mean = cmim_contrastive_loss(z, mu, std, reduction="none")
    s = cmim_contrastive_loss(z, mu, std, neg="sum", reduction="none")
    assert (mean >= 0).all() and (s - mean >= -1e-12).all() and (s - mean <= math.log(10) + 1e-12).all()


def test_shift_and_permutation_invariance():
    _, z, mu, std = _gauss(9, 4)
    v = cmim_contrastive_loss(z, mu, std)
    # scaling z, mu and std together shifts every score by the same -log(c): the loss is unchanged
    torch.testing.assert_close(cmim_contrastive_loss(3 * z, 3 * mu, 3 * std), v, rtol=1e-12, atol=1e-12)
    # translating z and mu together leaves every score unchanged
    torch.testing.assert_close(cmim_contrastive_loss(z + 5, mu + 5, std), v, rtol=1e-10, atol=1e-12)
    p = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(cmim_contrastive_loss(z[p], mu[p], std[p]), v, rtol=1e-12, atol=1e-12)
    none = cmim_contrastive_loss(z, mu, std, reduction="none")
    torch.testing.assert_close(cmim_contrastive_loss(z[p], mu[p], std[p], reduction="none"), none[p])


@pytest.mark.parametrize("critic", ["enc_logdensity", "cosine"])
def test_duplicated_batch_mean_form_unchanged_sum_form_not(critic):
    _, z, mu, std = _gauss(8, 4)
    Z, M, S = (torch.cat([t, t]) for t in (z, mu, std))
    ids = torch.arange(8).repeat(2)
    for T in (0.5, 1.0):
        one = cmim_contrastive_loss(z, mu, std, T, critic=critic)
        two = cmim_contrastive_loss(Z, M, S, T, critic=critic, sample_ids=ids)
        torch.testing.assert_close(two, one, rtol=1e-13, atol=1e-13)  # exactly batch-size robust
        grow = cmim_contrastive_loss(Z, M, S, T, "sum", critic, ids) - cmim_contrastive_loss(z, mu, std, T, "sum", critic)
        assert 1e-3 < grow.item() <= math.log(2) + 1e-12
    # the core's InfoNCE on the same duplication changes its value too
    assert abs((info_nce(M, Z) - info_nce(mu, z)).item()) > 1e-3
    # without the ids, a datum's copy is a negative with the positive's own score: the mean form changes
    assert abs((cmim_contrastive_loss(Z, M, S, critic=critic) - cmim_contrastive_loss(z, mu, std, critic=critic)).item()) > 1e-3


def test_sample_ids_mask_only_equal_ids():
    _, z, mu, std = _gauss(6, 3, grad=True)
    ids = torch.tensor([0, 0, 1, 2, 2, 3])
    ours = cmim_contrastive_loss(z, mu, std, 0.8, sample_ids=ids)
    torch.testing.assert_close(ours, _loop(z, mu, std, 0.8, ids=ids), rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(cmim_contrastive_loss(z, mu, std, sample_ids=torch.arange(6)),
                               cmim_contrastive_loss(z, mu, std))


def test_contrastive_gradcheck():
    _, z, mu, std = _gauss(5, 3, grad=True)
    for neg in ("mean", "sum"):
        assert torch.autograd.gradcheck(lambda a, b, c: cmim_contrastive_loss(a, b, c, 0.7, neg), (z, mu, std))


def test_contrastive_reductions_module_dtypes():
    _, z, mu, std = _gauss(7, 4)
    none = cmim_contrastive_loss(z, mu, std, reduction="none")
    assert none.shape == (7,)
    torch.testing.assert_close(cmim_contrastive_loss(z, mu, std), none.mean())
    torch.testing.assert_close(cmim_contrastive_loss(z, mu, std, reduction="sum"), none.sum())
    m = CMIMContrastiveLoss(0.5, "sum", "cosine", "none")
    torch.testing.assert_close(m(z, mu, std), cmim_contrastive_loss(z, mu, std, 0.5, "sum", "cosine", reduction="none"),
                               rtol=0, atol=0)
    v32 = cmim_contrastive_loss(z.float(), mu.float(), std.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), cmim_contrastive_loss(z, mu, std), rtol=1e-5, atol=1e-6)
    v16 = cmim_contrastive_loss(z.half(), mu.half(), std.half())
    assert v16.dtype == torch.float32 and torch.isfinite(v16)


def test_defaults_are_pinned():
    sig = inspect.signature(cmim_contrastive_loss).parameters
    assert sig["temperature"].default == 1.0 and sig["neg"].default == "mean"
    assert sig["critic"].default == "enc_logdensity" and sig["reduction"].default == "mean"
    assert sig["sample_ids"].default is None and sig["gather_distributed"].default is False
    m = CMIMContrastiveLoss()
    assert (m.temperature, m.neg, m.critic, m.reduction, m.gather_distributed) == (1.0, "mean", "enc_logdensity",
                                                                                  "mean", False)
    _, z, mu, std = _gauss(6, 3)
    explicit = cmim_contrastive_loss(z, mu, std, 1.0, "mean", "enc_logdensity", None, "mean", False)
    torch.testing.assert_close(cmim_contrastive_loss(z, mu, std), explicit, rtol=0, atol=0)
    torch.testing.assert_close(m(z, mu, std), explicit, rtol=0, atol=0)
    torch.testing.assert_close(explicit, cmim_contrastive_ref(z, mu, std).double(), rtol=1e-11, atol=1e-12)


# --- bad inputs -------------------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_naming_the_argument():
    lp, z, mu, std = _gauss(6, 3)
    nan = lambda t: torch.where(torch.arange(t.numel()).reshape(t.shape) == 0, float("nan"), t)
    for fn in (lambda a, b, c: cmim_contrastive_loss(a, b, c), lambda a, b, c: amim_loss(lp, a, b, c),
               lambda a, b, c: vae_loss(lp, a, b, c)):
        with pytest.raises(ValueError, match=r"^z:"):
            fn(nan(z), mu, std)
        with pytest.raises(ValueError, match=r"^mu:"):
            fn(z, nan(mu), std)
        with pytest.raises(ValueError, match=r"^std:"):
            fn(z, mu, nan(std))
        with pytest.raises(ValueError, match=r"^std: expected standard deviations > 0"):
            fn(z, mu, std.clone().index_fill_(0, torch.tensor([2]), 0.0))
        with pytest.raises(ValueError, match=r"^z and mu must have the same shape"):
            fn(z, mu[:, :2], std)
        with pytest.raises(ValueError, match=r"^z and std must have the same shape"):
            fn(z, mu, std[:5])
        with pytest.raises(ValueError, match=r"^z: expected 2 dimensions"):
            fn(z[0], mu[0], std[0])
        with pytest.raises(ValueError, match=r"^z: expected at least 1 sample\(s\) in dimension 0, got an empty batch"):
            fn(z[:0], mu[:0], std[:0])
        with pytest.raises(ValueError, match=r"^z: expected a floating-point"):
            fn(z.long(), mu, std)
    with pytest.raises(ValueError, match=r"^log_px_given_z: expected 6 values"):
        amim_loss(lp[:5], z, mu, std)
    with pytest.raises(ValueError, match=r"^log_px_given_z: expected 1 dimension"):
        vae_loss(lp[:, None], z, mu, std)
    with pytest.raises(ValueError, match=r"^log_px_given_z:"):
        amim_loss(nan(lp), z, mu, std)
    with pytest.raises(ValueError, match=r"^reduction:"):
        amim_loss(lp, z, mu, std, reduction="avg")
    with pytest.raises(ValueError, match=r"^reduction:"):
        vae_loss(lp, z, mu, std, reduction="avg")


def test_bad_contrastive_options_raise():
    _, z, mu, std = _gauss(6, 3)
    with pytest.raises(ValueError, match=r"^z: cMIM's contrastive term needs at least 2 distinct samples"):
        cmim_contrastive_loss(z[:1], mu[:1], std[:1])
    with pytest.raises(ValueError, match=r"^z: cMIM's contrastive term needs at least 2 distinct samples"):
        cmim_contrastive_loss(z, mu, std, sample_ids=torch.zeros(6, dtype=torch.long))
    for T in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^temperature:"):
            cmim_contrastive_loss(z, mu, std, temperature=T)
        with pytest.raises(ValueError, match=r"^temperature:"):
            CMIMContrastiveLoss(temperature=T)
    with pytest.raises(ValueError, match=r"^neg: expected one of"):
        cmim_contrastive_loss(z, mu, std, neg="max")
    with pytest.raises(ValueError, match=r"^critic: expected one of"):
        cmim_contrastive_loss(z, mu, std, critic="dot")
    with pytest.raises(ValueError, match=r"^reduction:"):
        cmim_contrastive_loss(z, mu, std, reduction="avg")
    with pytest.raises(ValueError, match=r"^sample_ids: expected 6 ids"):
        cmim_contrastive_loss(z, mu, std, sample_ids=torch.arange(5))
    with pytest.raises(ValueError, match=r"^sample_ids: expected an integer"):
        cmim_contrastive_loss(z, mu, std, sample_ids=torch.arange(6.0))
    for bad in ({"neg": "max"}, {"critic": "dot"}, {"reduction": "avg"}):
        with pytest.raises(ValueError, match=rf"^{next(iter(bad))}:"):
            CMIMContrastiveLoss(**bad)


# --- DDP with sample ids ------------------------------------------------------------------------------------------------------
def _ddp_ids_worker(rank, world, sizes):
    _, z, mu, std = _gauss(sum(sizes), 3, seed=3)
    ids = torch.tensor([0, 1, 2, 0, 3, 1, 4, 5, 2, 6])[: sum(sizes)]
    rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
    z, mu, std = (t[rows].clone().requires_grad_() for t in (z, mu, std))
    v = cmim_contrastive_loss(z, mu, std, 0.5, sample_ids=ids[rows], gather_distributed=True)
    v.backward()
    return v.detach(), [t.grad / world for t in (z, mu, std)]


def test_ddp_with_sample_ids_equals_one_process():
    sizes = (6, 4)
    _, z, mu, std = _gauss(10, 3, seed=3, grad=True)
    ids = torch.tensor([0, 1, 2, 0, 3, 1, 4, 5, 2, 6])
    v = cmim_contrastive_loss(z, mu, std, 0.5, sample_ids=ids)
    grads = torch.autograd.grad(v, (z, mu, std))
    for rank, (v_r, g_r) in enumerate(run_distributed(_ddp_ids_worker, 2, (sizes,))):
        torch.testing.assert_close(v_r, v.detach(), rtol=1e-10, atol=1e-12)
        rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
        for a, b in zip(g_r, grads):
            torch.testing.assert_close(a, b[rows], rtol=1e-9, atol=1e-12)


# --- informative embeddings -----------------------------------------------------------------------------------------------------
def test_informative_embedding():
    torch.manual_seed(0)
    enc = nn.Linear(6, 3)
    dec = nn.Sequential(nn.Linear(3, 7), nn.ReLU(), nn.Linear(7, 4), nn.Tanh(), nn.Linear(4, 6))
    x = torch.randn(5, 6)
    e = informative_embedding(enc, dec, x)
    mu = enc(x).detach()
    h1 = torch.relu(dec[0](mu))
    h2 = torch.tanh(dec[2](h1))
    torch.testing.assert_close(e, torch.cat([mu, h1, h2], 1).detach())
    torch.testing.assert_close(informative_embedding(enc, dec, x, layers=[dec[2]]), torch.cat([mu, dec[2](h1)], 1).detach())
    assert not e.requires_grad
    assert all(not m._forward_hooks for m in dec.modules())  # the hooks are removed
    with pytest.raises(ValueError, match=r"^layers:"):
        informative_embedding(enc, nn.Linear(3, 3), x)
    with pytest.raises(ValueError, match=r"^encode\(x\):"):
        informative_embedding(lambda t: t.sum(1), dec, x)


# --- mutation pass (#7): the gaps its survivors showed ----------------------------------------------------------------------
def test_entropy_and_log_prob_over_the_last_dimension_of_any_shape():
    g = torch.Generator().manual_seed(5)
    std = 0.5 + torch.rand(2, 3, 4, generator=g, dtype=torch.float64)
    z, mu = torch.randn(2, 3, 4, generator=g, dtype=torch.float64), torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    assert encoder_entropy(std).shape == (2, 3) and gaussian_log_prob(z, mu, std).shape == (2, 3)
    torch.testing.assert_close(encoder_entropy(std)[1], encoder_entropy(std[1]), rtol=0, atol=0)


@pytest.mark.parametrize("fn", [amim_loss, vae_loss])
def test_latent_losses_compute_in_the_widest_input_dtype(fn):
    args = _gauss(6, 3)
    for i in range(4):  # one input in float64, the others in float32: computed in float64
        mixed = [a if j == i else a.float() for j, a in enumerate(args)]
        got = fn(*mixed, reduction="none")
        assert got.dtype == torch.float64 and torch.equal(got, fn(*[a.double() for a in mixed], reduction="none")), i
    low = [a.bfloat16() for a in args]  # bf16 inputs: computed in float32
    got = fn(*low, reduction="none")
    assert got.dtype == torch.float32 and torch.equal(got, fn(*[a.float() for a in low], reduction="none"))


def test_module_passes_sample_ids():
    _, z, mu, std = _gauss(6, 3)
    ids = torch.tensor([0, 0, 1, 2, 2, 3])
    m = CMIMContrastiveLoss(0.8)
    want = cmim_contrastive_loss(z, mu, std, 0.8, sample_ids=ids)
    torch.testing.assert_close(m(z, mu, std, ids), want, rtol=0, atol=0)
    assert not torch.allclose(want, m(z, mu, std))


def test_sample_ids_must_be_one_dimensional():
    _, z, mu, std = _gauss(6, 3)
    with pytest.raises(ValueError, match=r"^sample_ids: expected 1 dimensions"):
        cmim_contrastive_loss(z, mu, std, sample_ids=torch.arange(6)[:, None])


def test_contrastive_computes_in_the_widest_input_dtype():
    _, z, mu, std = _gauss(6, 3)
    args = (z, mu, std)
    for i in range(3):
        mixed = [a if j == i else a.float() for j, a in enumerate(args)]
        got = cmim_contrastive_loss(*mixed, reduction="none")
        assert got.dtype == torch.float64
        assert torch.equal(got, cmim_contrastive_loss(*[a.double() for a in mixed], reduction="none")), i
        low = [a.bfloat16() if j == i else a.float() for j, a in enumerate(args)]
        got = cmim_contrastive_loss(*low, reduction="none")
        assert got.dtype == torch.float32
        assert torch.equal(got, cmim_contrastive_loss(*[a.float() for a in low], reduction="none")), i


def test_gathers_only_when_ddp_is_active(monkeypatch):
    import lossbook.ssl.cmim as mod
    calls = []
    monkeypatch.setattr(mod, "gather", lambda t: calls.append(tuple(t.shape)) or t)
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append("slice") or slice(0, n))
    real = mod.reduce_over_ranks
    monkeypatch.setattr(mod, "reduce_over_ranks", lambda t, n, r, a: calls.append(("reduce", a)) or real(t, n, r, a))
    _, z, mu, std = _gauss(6, 3)
    ref = cmim_contrastive_loss(z, mu, std)
    cmim_contrastive_loss(z, mu, std, gather_distributed=True)  # no process group: DDP is not active
    assert calls == [("reduce", False), ("reduce", False)]
    calls.clear()
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    torch.testing.assert_close(cmim_contrastive_loss(z, mu, std, gather_distributed=True), ref, rtol=1e-12, atol=1e-12)
    assert sorted(map(str, calls)) == sorted(map(str, [(6, 3), (6, 3), (6,), "slice", ("reduce", True)]))


def test_mean_and_std_dimensions_are_checked_by_their_own_names():
    lp, z, mu, std = _gauss(6, 3)
    for fn in (lambda m, s: cmim_contrastive_loss(z, m, s), lambda m, s: amim_loss(lp, z, m, s)):
        with pytest.raises(ValueError, match=r"^mu: expected 2 dimensions"):
            fn(mu[0], std)
        with pytest.raises(ValueError, match=r"^std: expected 2 dimensions"):
            fn(mu, std[0])
