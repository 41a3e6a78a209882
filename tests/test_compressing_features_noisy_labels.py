"""Tests for lossbook.classification.compressing_features_noisy_labels (Chen et al. 2022, nested dropout + co-teaching).

No library implements these: the references are transcriptions of the official code (`GaussianDist`, `SampleSelection`,
the `rateSchedule` ramp, `TestNested`'s tie-break) and plain float64 loops of Eqs. (2)-(4).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossbook.classification.compressing_features_noisy_labels import (
    NestedDropout,
    NestedDropoutLoss,
    coteaching_select,
    forget_rate_schedule,
    nested_dropout_distribution,
    nested_dropout_loss,
    nested_mask,
    nested_truncation_accuracy,
    sample_truncation,
    select_best_k,
    truncated_logits,
)

DTYPES = [torch.float32, torch.float64]


def _data(B=9, D=6, C=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, D, generator=g, dtype=torch.float64).relu()
    W = torch.randn(D, C, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (B,), generator=g)
    return h.to(dtype), W.to(dtype), y


def _official_gaussian_dist(mu, std, N):
    "`GaussianDist` of nested/train_resnet.py, transcribed."
    dist = np.array([np.exp(-((i - mu) / std) ** 2) for i in range(1, N + 1)])
    return dist / np.sum(dist)


def _ce_loop(h, W, y, k):
    out = []
    for row, c in zip(h.tolist(), y.tolist()):
        o = [math.fsum(row[i] * W[i][j] for i in range(k)) for j in range(len(W[0]))]
        m = max(o)
        out.append(m + math.log(sum(math.exp(v - m) for v in o)) - o[c])
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- Eq. (1): the truncation prior
@pytest.mark.parametrize("mu,sigma,D", [(0.0, 10.0, 512), (0.0, 100.0, 512), (3.0, 2.0, 20), (0.0, 1.0, 1), (-2.0, 0.5, 7)])
def test_distribution_matches_official_gaussian_dist(mu, sigma, D):
    got = nested_dropout_distribution(D, mu, sigma)
    assert got.dtype == torch.float64 and got.shape == (D,)
    np.testing.assert_allclose(got.numpy(), _official_gaussian_dist(mu, sigma, D), rtol=1e-12, atol=1e-300)


def test_distribution_defaults_pinned():
    torch.testing.assert_close(nested_dropout_distribution(30), nested_dropout_distribution(30, 0.0, 10.0), rtol=0, atol=0)
    np.testing.assert_allclose(nested_dropout_distribution(30).numpy(), _official_gaussian_dist(0.0, 10.0, 30), rtol=1e-12)
    assert not torch.allclose(nested_dropout_distribution(30), nested_dropout_distribution(30, 0.0, 9.0))
    assert not torch.allclose(nested_dropout_distribution(30), nested_dropout_distribution(30, 1.0, 10.0))


def test_distribution_properties():
    p = nested_dropout_distribution(64, 0.0, 10.0)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (p[1:] < p[:-1]).all()  # decreasing for mu = 0
    torch.testing.assert_close(nested_dropout_distribution(6, 0.0, 1e7), torch.full((6,), 1 / 6, dtype=torch.float64))
    assert int(nested_dropout_distribution(20, 8.0, 3.0).argmax()) + 1 == 8  # the mode sits at mu
    # far from mu nothing underflows to 0/0
    far = nested_dropout_distribution(10, 1000.0, 1.0)
    assert torch.isfinite(far).all() and far.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs,match", [({"dim": 0}, r"^dim:"), ({"dim": 2.0}, r"^dim:"), ({"dim": True}, r"^dim:"),
                                          ({"dim": 5, "sigma": 0.0}, r"^sigma:"), ({"dim": 5, "sigma": -1.0}, r"^sigma:"),
                                          ({"dim": 5, "mu": float("nan")}, r"^mu:")])
def test_distribution_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nested_dropout_distribution(**kwargs)


def test_sample_truncation_range_frequencies_and_determinism():
    p = nested_dropout_distribution(12, 0.0, 4.0)
    d = sample_truncation(p, torch.Generator().manual_seed(0), n=40000)
    assert d.shape == (40000,) and d.dtype == torch.int64
    assert int(d.min()) >= 1 and int(d.max()) <= 12
    freq = torch.bincount(d - 1, minlength=12).double() / 40000
    torch.testing.assert_close(freq, p, rtol=0, atol=0.01)
    k1 = sample_truncation(p, torch.Generator().manual_seed(5))
    k2 = sample_truncation(p, torch.Generator().manual_seed(5))
    assert isinstance(k1, int) and k1 == k2 and 1 <= k1 <= 12
    assert sample_truncation(torch.tensor([0.0, 0.0, 1.0])) == 3  # k counts from 1
    assert sample_truncation(torch.tensor([1.0, 0.0])) == 1


@pytest.mark.parametrize("probs,match", [(torch.tensor([[0.5, 0.5]]), r"^probs:"), (torch.tensor([0.5, -0.1]), r"^probs:"),
                                         (torch.tensor([0.0, 0.0]), r"^probs:"), (torch.tensor([float("nan"), 1.0]), r"^probs:"),
                                         (torch.tensor([1, 2]), r"^probs:")])
def test_sample_truncation_bad_inputs(probs, match):
    with pytest.raises(ValueError, match=match):
        sample_truncation(probs)


# ---------------------------------------------------------------- Eq. (2): the mask and the layer
def test_nested_mask():
    torch.testing.assert_close(nested_mask(2, 4), torch.tensor([1.0, 1.0, 0.0, 0.0]), rtol=0, atol=0)
    assert nested_mask(2, 4).dtype == torch.float32 and nested_mask(2, 4, torch.float64).dtype == torch.float64
    torch.testing.assert_close(nested_mask(4, 4), torch.ones(4), rtol=0, atol=0)
    torch.testing.assert_close(nested_mask(torch.tensor([1, 3]), 3), torch.tensor([[1.0, 0, 0], [1, 1, 1]]), rtol=0, atol=0)
    for bad in (0, 5, 2.0, True):
        with pytest.raises(ValueError, match=r"^k:"):
            nested_mask(bad, 4)
    for bad in (torch.tensor([0, 2]), torch.tensor([5]), torch.tensor([1.0])):
        with pytest.raises(ValueError, match=r"^k:"):
            nested_mask(bad, 4)
    with pytest.raises(ValueError, match=r"^dim:"):
        nested_mask(1, 0)


def test_layer_defaults_and_buffer():
    nd = NestedDropout(16)
    assert (nd.dim, nd.mu, nd.sigma, nd.per_sample, nd.generator, nd.k, nd.last_k) == (16, 0.0, 10.0, False, None, None, None)
    torch.testing.assert_close(nd.probs, nested_dropout_distribution(16, 0.0, 10.0), rtol=0, atol=0)
    nd2 = NestedDropout(16, mu=2.0, sigma=3.0)
    torch.testing.assert_close(nd2.probs, nested_dropout_distribution(16, 2.0, 3.0), rtol=0, atol=0)
    assert "dim=16" in repr(nd) and "sigma=10.0" in repr(nd) and "per_sample=False" in repr(nd)
    with pytest.raises(ValueError, match=r"^sigma:"):
        NestedDropout(4, sigma=0.0)
    with pytest.raises(ValueError, match=r"^dim:"):
        NestedDropout(0)
    with pytest.raises(ValueError, match=r"^mu:"):
        NestedDropout(4, mu=float("inf"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_training_truncates_with_one_k_per_batch(dtype):
    nd = NestedDropout(8, sigma=3.0, generator=torch.Generator().manual_seed(1))
    h = (torch.rand(5, 8, dtype=dtype) + 0.5).requires_grad_(True)
    out = nd(h)
    k = nd.last_k
    assert isinstance(k, int) and 1 <= k <= 8 and out.dtype == dtype
    assert torch.equal(out[:, :k], h[:, :k]) and (out[:, k:] == 0).all()
    out.sum().backward()
    assert (h.grad[:, k:] == 0).all() and (h.grad[:, :k] == 1).all()
    seen = set()
    for _ in range(60):
        nd(h)
        seen.add(nd.last_k)
    assert len(seen) > 2  # a new k per call


def test_layer_draws_follow_the_generator_and_prior():
    a = NestedDropout(10, sigma=4.0, generator=torch.Generator().manual_seed(7))
    b = NestedDropout(10, sigma=4.0, generator=torch.Generator().manual_seed(7))
    x = torch.ones(2, 10)
    ka, kb = [], []
    for _ in range(2000):
        a(x), b(x)
        ka.append(a.last_k), kb.append(b.last_k)
    assert ka == kb
    freq = torch.bincount(torch.tensor(ka) - 1, minlength=10).double() / 2000
    torch.testing.assert_close(freq, nested_dropout_distribution(10, 0.0, 4.0), rtol=0, atol=0.04)


def test_layer_per_sample():
    nd = NestedDropout(6, sigma=2.0, per_sample=True, generator=torch.Generator().manual_seed(0))
    out = nd(torch.ones(50, 6))
    ks = nd.last_k
    assert isinstance(ks, torch.Tensor) and ks.shape == (50,)
    torch.testing.assert_close(out.sum(1), ks.float(), rtol=0, atol=0)
    assert len(set(ks.tolist())) > 1


def test_layer_eval_identity_and_chosen_k():
    nd = NestedDropout(5).eval()
    h = torch.randn(3, 5)
    assert torch.equal(nd(h), h) and nd.last_k is None
    nd.k = 5
    assert torch.equal(nd(h), h)
    nd.k = 2
    torch.testing.assert_close(nd(h), h * torch.tensor([1.0, 1, 0, 0, 0]), rtol=0, atol=0)
    nd.k = 6
    with pytest.raises(ValueError, match=r"^k:"):
        nd(h)


@pytest.mark.parametrize("bad,match", [(torch.randn(3, 4), r"^h:"), (torch.randn(3, 5, 1), r"^h:"),
                                       (torch.ones(3, 5, dtype=torch.long), r"^h:"),
                                       (torch.full((3, 5), float("nan")), r"^h:"), (torch.randn(0, 5), r"^h:")])
def test_layer_bad_inputs(bad, match):
    with pytest.raises(ValueError, match=match):
        NestedDropout(5)(bad)


# ---------------------------------------------------------------- Eq. (3): the loss
@pytest.mark.parametrize("k", [None, 1, 2, 4, 6])
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_matches_float64_loop(k, dtype):
    h, W, y = _data(dtype=dtype)
    got = nested_dropout_loss(h, W, y, k=k, reduction="none")
    assert got.dtype == dtype and got.shape == (9,)
    ref = _ce_loop(h.double(), W.double().tolist(), y, 6 if k is None else k)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got.double(), ref, rtol=tol, atol=tol)


def test_loss_masked_form_and_defaults():
    h, W, y = _data()
    assert nested_dropout_loss(h, W, y).item() == pytest.approx(F.cross_entropy(h @ W, y).item(), abs=1e-14)
    torch.testing.assert_close(nested_dropout_loss(h, W, y), nested_dropout_loss(h, W, y, k=6, reduction="mean"), rtol=0, atol=0)
    for k in (1, 3, 5):
        torch.testing.assert_close(nested_dropout_loss(h, W, y, k=k, reduction="none"),
                                   F.cross_entropy((h * nested_mask(k, 6, h.dtype)) @ W, y, reduction="none"))
    assert not torch.allclose(nested_dropout_loss(h, W, y, k=5), nested_dropout_loss(h, W, y))


def test_loss_reductions():
    h, W, y = _data()
    none = nested_dropout_loss(h, W, y, k=3, reduction="none")
    torch.testing.assert_close(nested_dropout_loss(h, W, y, k=3, reduction="sum"), none.sum())
    torch.testing.assert_close(nested_dropout_loss(h, W, y, k=3, reduction="mean"), none.mean())
    torch.testing.assert_close(nested_dropout_loss(h, W, y, k=3), none.mean())


def test_loss_hand_value():
    h = torch.tensor([[2.0, 5.0]], dtype=torch.float64)
    W = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    assert nested_dropout_loss(h, W, torch.tensor([0]), k=1).item() == pytest.approx(math.log1p(math.exp(-2.0)), abs=1e-14)
    assert nested_dropout_loss(h, W, torch.tensor([0]), k=2).item() == pytest.approx(math.log1p(math.exp(13.0)), abs=1e-12)


def test_loss_gradcheck_and_zero_tail_gradient():
    h, W, y = _data(B=4, D=5, C=3)
    h.requires_grad_(True), W.requires_grad_(True)
    for k in (None, 2):
        assert torch.autograd.gradcheck(lambda a, b: nested_dropout_loss(a, b, y, k=k), (h, W))
    nested_dropout_loss(h, W, y, k=2).backward()
    assert (h.grad[:, 2:] == 0).all() and (W.grad[2:] == 0).all()
    assert (h.grad[:, :2] != 0).any() and (W.grad[:2] != 0).any()


def test_module_equals_function_and_passes_settings():
    h, W, y = _data()
    m = NestedDropoutLoss()
    assert (m.k, m.reduction) == (None, "mean")
    torch.testing.assert_close(m(h, W, y), nested_dropout_loss(h, W, y), rtol=0, atol=0)
    torch.testing.assert_close(NestedDropoutLoss(k=2, reduction="none")(h, W, y),
                               nested_dropout_loss(h, W, y, k=2, reduction="none"), rtol=0, atol=0)
    torch.testing.assert_close(NestedDropoutLoss(reduction="sum")(h, W, y), nested_dropout_loss(h, W, y, reduction="sum"))
    assert "k=2" in repr(NestedDropoutLoss(k=2)) and "'sum'" in repr(NestedDropoutLoss(reduction="sum"))
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=r"^k:"):
            NestedDropoutLoss(k=bad)
    with pytest.raises(ValueError, match=r"^reduction:"):
        NestedDropoutLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"^k:"):
        NestedDropoutLoss(k=7)(h, W, y)  # larger than D: caught at call time


def test_loss_bad_inputs():
    h, W, y = _data()
    cases = [
        (lambda: nested_dropout_loss(h.clone().fill_(float("nan")), W, y), r"^features:"),
        (lambda: nested_dropout_loss(h[:, :, None], W, y), r"^features:"),
        (lambda: nested_dropout_loss(h.long(), W, y), r"^features:"),
        (lambda: nested_dropout_loss(h[:0], W, y[:0]), r"^features:"),
        (lambda: nested_dropout_loss(h, W.clone().fill_(float("inf")), y), r"^weight:"),
        (lambda: nested_dropout_loss(h, W[:5], y), r"^weight: expected shape \(D, C\) with D = 6"),
        (lambda: nested_dropout_loss(h, W[:, :1], torch.zeros_like(y)), r"^weight: expected at least 2 classes"),
        (lambda: nested_dropout_loss(h, W, y[:-1]), r"^target:"),
        (lambda: nested_dropout_loss(h, W, y + 4), r"^target:"),
        (lambda: nested_dropout_loss(h, W, y.double()), r"^target:"),
        (lambda: nested_dropout_loss(h, W, y, k=0), r"^k: expected an int in 1..6"),
        (lambda: nested_dropout_loss(h, W, y, k=7), r"^k:"),
        (lambda: nested_dropout_loss(h, W, y, k=2.0), r"^k:"),
        (lambda: nested_dropout_loss(h, W, y, k=True), r"^k:"),
        (lambda: nested_dropout_loss(h, W, y, reduction="avg"), r"^reduction:"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()


# ---------------------------------------------------------------- Eq. (4): every truncation, the choice of K
def test_truncated_logits_and_accuracy_match_loops():
    h, W, y = _data(B=30, D=7, C=5, seed=3)
    tl = truncated_logits(h, W)
    assert tl.shape == (30, 7, 5)
    for K in range(1, 8):
        torch.testing.assert_close(tl[:, K - 1], h[:, :K] @ W[:K])
    acc = nested_truncation_accuracy(h, y, W)
    assert acc.dtype == torch.float64 and acc.shape == (7,)
    want = [sum(int(torch.argmax(h[n, :K] @ W[:K])) == int(y[n]) for n in range(30)) / 30 for K in range(1, 8)]
    torch.testing.assert_close(acc, torch.tensor(want, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^labels:"):
        nested_truncation_accuracy(h, y + 5, W)
    with pytest.raises(ValueError, match=r"^labels:"):
        nested_truncation_accuracy(h, y[:-1], W)
    with pytest.raises(ValueError, match=r"^weight:"):
        truncated_logits(h, W[:3])


def test_select_best_k_official_tie_break():
    # the official TestNested: argmax(acc - 1e-5 * arange(D)), returned here as K = index + 1
    for acc in ([0.5, 0.7, 0.7, 0.69], [0.1, 0.2, 0.3], [0.9, 0.9, 0.9], [0.3, 0.300005, 0.2], [0.3, 0.30002, 0.2]):
        a = np.array(acc)
        assert select_best_k(torch.tensor(acc, dtype=torch.float64)) == int(np.argmax(a - 1e-5 * np.arange(len(a)))) + 1
    # the default penalty is 1e-5: a gain of 5e-6 does not buy a dimension, one of 2e-5 does
    t = torch.tensor([0.3, 0.300005], dtype=torch.float64)
    assert select_best_k(t) == select_best_k(t, tie_penalty=1e-5) == 1
    assert select_best_k(t, tie_penalty=1e-6) == 2 and select_best_k(t, tie_penalty=0.0) == 2
    assert select_best_k(torch.tensor([0.3, 0.30002], dtype=torch.float64)) == 2
    assert select_best_k(torch.tensor([0.2], dtype=torch.float32)) == 1
    with pytest.raises(ValueError, match=r"^acc_per_k:"):
        select_best_k(torch.tensor([[0.2, 0.3]]))
    with pytest.raises(ValueError, match=r"^tie_penalty:"):
        select_best_k(torch.tensor([0.2, 0.3]), tie_penalty=-1.0)


# ---------------------------------------------------------------- Eq. (5): co-teaching
def _official_sample_selection(loss1, loss2, forget_rate):
    "`SampleSelection` of co_teaching_resnet/loss.py on given per-sample losses."
    idx1, idx2 = np.argsort(loss1, kind="stable"), np.argsort(loss2, kind="stable")
    n = int((1 - forget_rate) * len(idx1))
    return idx1[:n], idx2[:n]


@pytest.mark.parametrize("B,tau", [(10, 0.2), (7, 0.5), (128, 0.45), (3, 0.0), (5, 1.0), (1, 0.3)])
def test_coteaching_select_matches_official(B, tau):
    g = torch.Generator().manual_seed(B)
    l1, l2 = torch.rand(B, generator=g, dtype=torch.float64), torch.rand(B, generator=g, dtype=torch.float64)
    i1, i2 = coteaching_select(l1, l2, tau)
    r1, r2 = _official_sample_selection(l1.numpy(), l2.numpy(), tau)
    assert i1.tolist() == r1.tolist() and i2.tolist() == r2.tolist()
    assert len(i1) == int((1 - tau) * B)


def test_coteaching_select_keeps_small_losses_and_ignores_gradients():
    l1 = torch.tensor([0.9, 0.1, 0.5, 2.0, 0.3], requires_grad=True)
    l2 = torch.tensor([0.2, 3.0, 0.1, 0.4, 0.8])
    i1, i2 = coteaching_select(l1, l2, 0.4)
    assert i1.tolist() == [1, 4, 2] and i2.tolist() == [2, 0, 3]  # int(0.6 * 5) = 3
    assert len(coteaching_select(l1, l2, 0.0)[0]) == 5 and len(coteaching_select(l1, l2, 1.0)[1]) == 0
    ties = coteaching_select(torch.zeros(4), torch.ones(4), 0.5)
    assert ties[0].tolist() == [0, 1] and ties[1].tolist() == [0, 1]  # stable: the earlier sample wins a tie


def test_coteaching_select_bad_inputs():
    l = torch.rand(6)
    cases = [
        (lambda: coteaching_select(l, l[:-1], 0.2), r"^loss2: expected the shape of loss1"),
        (lambda: coteaching_select(l[:, None], l, 0.2), r"^loss1:"),
        (lambda: coteaching_select(l, l.long(), 0.2), r"^loss2:"),
        (lambda: coteaching_select(torch.full((6,), float("nan")), l, 0.2), r"^loss1:"),
        (lambda: coteaching_select(l[:0], l[:0], 0.2), r"^loss1:"),
        (lambda: coteaching_select(l, l, 1.5), r"^forget_rate:"),
        (lambda: coteaching_select(l, l, -0.1), r"^forget_rate:"),
        (lambda: coteaching_select(l, l, float("nan")), r"^forget_rate:"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()


def _official_rate_schedule(nb_epoch, forget_rate, n_gradual):
    "`rateSchedule` of co_teaching_resnet/main.py."
    r = np.ones(nb_epoch) * forget_rate
    r[:n_gradual] = np.linspace(0, forget_rate, n_gradual)
    return r


@pytest.mark.parametrize("E,tau,ng", [(30, 0.2, 5), (10, 0.45, 10), (8, 0.3, 0), (6, 0.5, 1), (12, 0.2, 2)])
def test_forget_rate_schedule_matches_official(E, tau, ng):
    np.testing.assert_allclose(forget_rate_schedule(E, tau, ng), _official_rate_schedule(E, tau, ng), rtol=0, atol=1e-15)


def test_forget_rate_schedule_defaults_and_edges():
    assert forget_rate_schedule(9) == forget_rate_schedule(9, 0.2, 5)
    np.testing.assert_allclose(forget_rate_schedule(9), _official_rate_schedule(9, 0.2, 5), atol=1e-15)
    assert forget_rate_schedule(9) != forget_rate_schedule(9, 0.3, 5) and forget_rate_schedule(9) != forget_rate_schedule(9, 0.2, 4)
    assert forget_rate_schedule(3, 0.2, 5) == pytest.approx([0.0, 0.05, 0.1])  # a ramp longer than training is cut
    assert forget_rate_schedule(1, 0.2, 0) == [0.2]
    cases = [(dict(num_epochs=0), r"^num_epochs:"), (dict(num_epochs=3, forget_rate=1.2), r"^forget_rate:"),
             (dict(num_epochs=3, forget_rate=-0.2), r"^forget_rate:"), (dict(num_epochs=3, n_gradual=-1), r"^n_gradual:"),
             (dict(num_epochs=3, n_gradual=2.0), r"^n_gradual:"), (dict(num_epochs=2.5), r"^num_epochs:")]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            forget_rate_schedule(**kw)


# ---------------------------------------------------------------- a nested model learns ordered features
def test_nested_training_orders_features():
    "On a toy problem, a nested-trained linear model gets most of its accuracy from the first dimensions; K=1 beats CE's K=1."
    g = torch.Generator().manual_seed(0)
    X = torch.randn(600, 10, generator=g)
    y = (X[:, :3] @ torch.tensor([1.0, -1.0, 0.5]) > 0).long() + 2 * (X[:, 3] > 0).long()  # 4 classes
    accs = {}
    for name in ("ce", "nested"):
        torch.manual_seed(0)
        feat = torch.nn.Linear(10, 16)
        W = torch.nn.Parameter(torch.randn(16, 4) * 0.1)
        nd = NestedDropout(16, sigma=3.0, generator=torch.Generator().manual_seed(1))
        opt = torch.optim.Adam(list(feat.parameters()) + [W], lr=0.02)
        for _ in range(300):
            h = feat(X).relu()
            loss = F.cross_entropy(nd(h) @ W, y) if name == "nested" else F.cross_entropy(h @ W, y)
            opt.zero_grad(), loss.backward(), opt.step()
        with torch.no_grad():
            accs[name] = nested_truncation_accuracy(feat(X).relu(), y, W)
    assert accs["nested"][-1] > 0.85 and accs["ce"][-1] > 0.85
    assert accs["nested"][3] > accs["ce"][3] + 0.1  # the first 4 dims carry the classes for nested, not for CE
    assert accs["nested"][3] > accs["nested"][-1] - 0.1  # ... and nearly all of the accuracy


def test_registered():
    from lossbook.registry import _REGISTRY  # this module's entry, without importing every paper module
    spec = _REGISTRY["nested_dropout_loss"]
    assert spec.card == 32 and spec.theme == "classification" and not spec.batch_coupled and spec.module is NestedDropoutLoss


def test_label_noise_as_used_in_the_notebook():
    "The core's noise helpers as the reproduction uses them: the requested rate (within 2 sigma), symmetric noise never keeps the class when it flips, pair noise goes to j+1."
    from lossbook.metrics import add_label_noise, noise_transition
    y = torch.arange(10).repeat(1000)
    for kind, rate in (("symmetric", 0.5), ("symmetric", 0.2), ("pair", 0.4)):
        noisy, flipped = add_label_noise(y, noise_transition(10, rate, kind), seed=1)
        assert abs(flipped.double().mean().item() - rate) < 2 * math.sqrt(rate * (1 - rate) / len(y))
        assert (noisy[flipped] != y[flipped]).all()
        if kind == "pair":
            assert (noisy[flipped] == (y[flipped] + 1) % 10).all()


# ---------------------------------------------------------------- tests asked for by mutation testing (issue #7)
def test_coteaching_and_schedule_bounds_and_messages():
    l = torch.rand(6, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"^loss1: expected a floating-point tensor"):
        coteaching_select(torch.arange(6), l, 0.2)
    with pytest.raises(ValueError, match=r"^loss2: expected 1 dimensions"):
        coteaching_select(l, l[:, None], 0.2)
    with pytest.raises(ValueError, match=r"^forget_rate: expected a finite real number"):
        forget_rate_schedule(3, float("nan"))
    # both ends of [0, 1] are legal rates
    assert forget_rate_schedule(3, 0.0, 2) == [0.0, 0.0, 0.0]
    assert forget_rate_schedule(3, 1.0, 0) == [1.0, 1.0, 1.0]


def test_weight_rank_smallest_k_and_select_best_k_in_float64():
    h = torch.rand(4, 3, dtype=torch.float64)
    W = torch.randn(3, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"^weight: expected 2 dimensions"):
        nested_dropout_loss(h, W[:, :, None], y)
    # k = 1, the smallest legal truncation, is accepted by the module
    assert torch.equal(NestedDropoutLoss(k=1)(h, W, y), nested_dropout_loss(h, W, y, k=1))
    with pytest.raises(ValueError, match=r"^acc_per_k: expected a floating-point tensor"):
        select_best_k(torch.tensor([1, 2]))
    # the penalty is exact in float64: a(2) exceeds a(1) by 1e-12 more than the penalty 0.1, so K = 2 wins
    # (a float32 penalty, 0.1 + 1.5e-9, would pick K = 1)
    assert select_best_k(torch.tensor([0.0, 0.1 + 1e-12], dtype=torch.float64), tie_penalty=0.1) == 2


def test_mask_rank_buffer_not_persistent_half_dtype_and_stable_ties():
    with pytest.raises(ValueError, match=r"^k: expected 1 dimensions"):
        nested_mask(torch.tensor([[1], [2]]), 4)
    layer = NestedDropout(8)
    assert "probs" not in layer.state_dict()  # derived from (dim, mu, sigma): not saved
    layer.eval()
    layer.k = 3
    h = torch.rand(2, 8).bfloat16()
    out = layer(h)
    assert out.dtype == torch.bfloat16 and torch.equal(out, h * nested_mask(3, 8, torch.bfloat16))
    # tied losses keep their order (a stable sort: unstable sorts reorder ties from about 100 on)
    i1, i2 = coteaching_select(torch.zeros(200), torch.ones(200), 0.5)
    assert torch.equal(i1, torch.arange(100)) and torch.equal(i2, torch.arange(100))
