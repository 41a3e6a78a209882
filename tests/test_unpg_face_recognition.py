"""Tests for lossbook.metric.unpg_face_recognition (Jung et al. 2022, UNPG).

The references: pytorch-metric-learning's ArcFaceLoss / CosFaceLoss (with our weight copied: PML's margin is in
degrees and its W is [D, C]) for the loss without unified negative pairs, PML's `get_all_pairs_indices` for the MLPG
pairs, the official concatenate-then-cross-entropy of `UNPG.forward`, and float64 loops transcribed from the card.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossbook.metric.unpg_face_recognition as mod
from lossbook.metric.unpg_face_recognition import (
    ArcFaceHead,
    CosFaceHead,
    UNPGLoss,
    batch_negative_similarities,
    box_whisker_filter,
    unpg_loss,
)

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
from pytorch_metric_learning.utils.loss_and_miner_utils import get_all_pairs_indices  # noqa: E402


def _batch(B=12, C=5, D=6, seed=0, dtype=torch.float64, n_ids=4):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(B) % n_ids
    centres = torch.randn(C, D, generator=g, dtype=torch.float64)
    x = centres[y] + 0.8 * torch.randn(B, D, generator=g, dtype=torch.float64)
    return x.to(dtype), y


def _head(cls, D=6, C=5, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(D, C, **kw).double()


def _loop_unpg(cos, emb, y, s=64.0, k=1.5):
    "Eq. (6) in Python floats: negatives a<b, quartiles by index, the same kept set appended to every row."
    c, e, lab = cos.detach().double().tolist(), F.normalize(emb.detach().double(), dim=1).tolist(), y.tolist()
    B = len(lab)
    sn = [sum(p * q for p, q in zip(e[a], e[b])) for a in range(B) for b in range(a + 1, B) if lab[a] != lab[b]]
    if sn:
        srt = sorted(sn)
        q1, q3 = srt[int(0.25 * len(sn))], srt[int(0.75 * len(sn))]
        sn = [v for v in sn if q1 - k * (q3 - q1) <= v <= q3 + k * (q3 - q1)]
    out = []
    for row, t in zip(c, lab):
        logits = [s * v for v in row] + [s * v for v in sn]
        m = max(logits)
        out.append(m + math.log(sum(math.exp(v - m) for v in logits)) - s * row[t])
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- the oracle: PML's ArcFace / CosFace
def _assert_equals_pml(head, pml, x, y):
    "With mlpg=False, unpg_loss on `head`'s logits equals the PML loss with the same weight: values and gradients (float64)."
    with torch.no_grad():
        pml.W.copy_(head.weight.T)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = unpg_loss(head(x1, y), x1, y, mlpg=False)
    ref = pml(x2, y)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(head.weight.grad, pml.W.grad.T, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("guard", [True, False])
def test_no_negatives_equals_pml_arcface_values_and_gradients(guard):
    x, y = _batch()
    head = _head(ArcFaceHead, guard=guard)
    pml = pml_losses.ArcFaceLoss(5, 6, margin=math.degrees(0.5), scale=64).double()
    _assert_equals_pml(head, pml, x, y)


def test_no_negatives_equals_pml_cosface_values_and_gradients():
    x, y = _batch(seed=3)
    head = _head(CosFaceHead)
    pml = pml_losses.CosFaceLoss(5, 6, margin=0.35, scale=64).double()
    _assert_equals_pml(head, pml, x, y)


def test_single_identity_batch_with_unpg_on_equals_pml_arcface():
    "No negative pair in the batch: S'^n is empty and UNPG (default mlpg=True) is plain ArcFace."
    x, _ = _batch()
    y = torch.full((12,), 2)
    head = _head(ArcFaceHead, guard=True)
    pml = pml_losses.ArcFaceLoss(5, 6, margin=math.degrees(0.5), scale=64).double()
    with torch.no_grad():
        pml.W.copy_(head.weight.T)
    torch.testing.assert_close(unpg_loss(head(x, y), x, y), pml(x, y), rtol=1e-10, atol=1e-10)


def test_arcface_guard_matters_only_beyond_pi_minus_m():
    head = _head(ArcFaceHead, guard=False)
    c = torch.tensor([-0.999, -0.95, 0.0, 0.5, 0.999], dtype=torch.float64)
    theta = torch.acos(c)
    torch.testing.assert_close(head.margin(c), torch.cos(theta + 0.5), rtol=0, atol=1e-12)
    guarded = _head(ArcFaceHead, guard=True).margin(c)
    beyond = theta + 0.5 > math.pi
    assert beyond.any() and (~beyond).any()
    torch.testing.assert_close(guarded[~beyond], torch.cos(theta + 0.5)[~beyond], rtol=0, atol=1e-12)
    torch.testing.assert_close(guarded[beyond], (c - 0.5 * math.sin(0.5))[beyond], rtol=0, atol=1e-12)


def test_arcface_gradient_finite_at_unit_cosine():
    head = _head(ArcFaceHead, D=3, C=2)
    x = head.weight.detach()[:1].clone().requires_grad_()  # cos theta_y = 1 exactly
    unpg_loss(head(x, torch.tensor([0])), x, torch.tensor([0]), mlpg=False).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


# ---------------------------------------------------------------- MLPG negatives and the filter
def test_negatives_equal_pml_pairs_upper_triangle():
    x, y = _batch(B=10, n_ids=3)
    _, _, a, n = get_all_pairs_indices(y)
    keep = a < n
    h = F.normalize(x, dim=1)
    ref = (h[a[keep]] * h[n[keep]]).sum(1)
    got = batch_negative_similarities(x, y)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)  # the same row-major order
    assert len(got) == sum(int(y[i] != y[j]) for i in range(10) for j in range(i + 1, 10))


def test_negatives_of_one_identity_are_empty():
    x, _ = _batch(B=4)
    assert batch_negative_similarities(x, torch.zeros(4, dtype=torch.long)).shape == (0,)


def _sims(n=301, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.05 * torch.randn(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("k", [0.0, 0.5, 1.5, 3.0])
@pytest.mark.parametrize("n", [1, 2, 7, 100, 301])
def test_filter_index_quartiles_match_the_official_rule(k, n):
    s = _sims(n)
    s[0] = 0.9
    srt = sorted(s.tolist())
    q1, q3 = srt[int(0.25 * n)], srt[int(0.75 * n)]
    expected = [v for v in s.tolist() if q1 - k * (q3 - q1) <= v <= q3 + k * (q3 - q1)]
    assert box_whisker_filter(s, k).tolist() == expected
    assert box_whisker_filter(s, k, method="index").tolist() == expected


def test_filter_quantile_method_matches_numpy_linear_percentiles():
    s = _sims(100)
    s[:3] = torch.tensor([0.8, -0.7, 0.6], dtype=torch.float64)
    q1, q3 = np.percentile(s.numpy(), [25, 75])
    expected = [v for v in s.tolist() if q1 - 1.5 * (q3 - q1) <= v <= q3 + 1.5 * (q3 - q1)]
    assert box_whisker_filter(s, method="quantile").tolist() == expected
    # the index rule differs here: Q1 = sorted[25] vs the interpolated 24.75th position
    srt = sorted(s.tolist())
    assert srt[25] != pytest.approx(q1, abs=1e-15)


def test_filter_default_whisker_is_1_5():
    s = _sims(200)
    s[:4] = torch.tensor([0.17, 0.2, -0.17, 0.5], dtype=torch.float64)
    assert box_whisker_filter(s).tolist() == box_whisker_filter(s, 1.5).tolist()
    assert box_whisker_filter(s).tolist() != box_whisker_filter(s, 2.0).tolist()
    assert box_whisker_filter(s).tolist() != box_whisker_filter(s, 1.0).tolist()


def test_filter_properties():
    s = _sims()
    s[17] = 0.99
    kept = box_whisker_filter(s)
    assert 0.99 not in kept.tolist() and len(kept) < len(s)
    assert set(kept.tolist()) <= set(s.tolist())
    perm = torch.randperm(len(s), generator=torch.Generator().manual_seed(1))
    assert sorted(box_whisker_filter(s[perm]).tolist()) == sorted(kept.tolist())
    assert torch.equal(box_whisker_filter(s, math.inf), s)
    assert box_whisker_filter(s[:0]).shape == (0,)
    srt = s.sort().values
    assert box_whisker_filter(s, 0.0).min() == srt[int(0.25 * len(s))]  # k = 0 keeps [Q1, Q3]
    assert box_whisker_filter(s, 0.0).max() == srt[int(0.75 * len(s))]


def test_filter_passes_gradients_to_kept_values_only():
    s = _sims(50).requires_grad_()
    with torch.no_grad():
        s[3] = 0.9
    box_whisker_filter(s).sum().backward()
    assert s.grad[3] == 0 and (s.grad.sum() == len(box_whisker_filter(s.detach())))


# ---------------------------------------------------------------- the loss
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("s,k", [(64.0, 1.5), (4.0, 1.5), (16.0, 0.3), (8.0, math.inf)])
def test_matches_float64_loop(seed, s, k):
    x, y = _batch(seed=seed)
    c = _head(ArcFaceHead, seed=seed)(x, y)
    torch.testing.assert_close(unpg_loss(c, x, y, scale=s, whisker=k, reduction="none"), _loop_unpg(c, x, y, s, k),
                               rtol=1e-10, atol=1e-10)


def test_matches_official_concatenated_cross_entropy():
    x, y = _batch(seed=5)
    c = _head(CosFaceHead)(x, y)
    sn = box_whisker_filter(batch_negative_similarities(x, y))
    official = F.cross_entropy(64.0 * torch.cat([c, torch.ones(12, 1, dtype=c.dtype) * sn], dim=1), y)
    torch.testing.assert_close(unpg_loss(c, x, y), official, rtol=1e-12, atol=1e-12)


def test_quantile_method_reaches_the_filter():
    x, y = _batch(B=16, seed=7)
    c = _head(ArcFaceHead)(x, y)
    h = F.normalize(x, dim=1)
    sn = box_whisker_filter(mod._negatives(h, y), 1.5, "quantile")
    expected = F.cross_entropy(64.0 * torch.cat([c, sn.expand(16, -1)], dim=1), y)
    torch.testing.assert_close(unpg_loss(c, x, y, method="quantile"), expected, rtol=1e-12, atol=1e-12)


def test_defaults_pinned():
    x, y = _batch(B=16, seed=2)
    c = _head(ArcFaceHead)(x, y)
    v = unpg_loss(c, x, y)
    torch.testing.assert_close(v, unpg_loss(c, x, y, 64.0, 1.5, "index", True, "mean", False), rtol=0, atol=0)
    for kw in [dict(scale=32.0), dict(whisker=0.2), dict(mlpg=False), dict(reduction="sum")]:
        assert not torch.allclose(v, unpg_loss(c, x, y, **kw)), kw
    assert unpg_loss(c, x, y, whisker=0.0) < unpg_loss(c, x, y, whisker=1.5) <= unpg_loss(c, x, y, whisker=math.inf)


def test_default_whisker_and_method_reach_the_filter(monkeypatch):
    x, y = _batch()
    c = _head(ArcFaceHead)(x, y)
    seen, real = [], mod.box_whisker_filter
    monkeypatch.setattr(mod, "box_whisker_filter", lambda s, k, m: seen.append((k, m)) or real(s, k, m))
    unpg_loss(c, x, y)
    unpg_loss(c, x, y, whisker=0.3, method="quantile")
    UNPGLoss()(c, x, y)
    assert seen == [(1.5, "index"), (0.3, "quantile"), (1.5, "index")]


def test_unpg_never_below_the_margin_softmax():
    for seed in range(5):
        x, y = _batch(seed=seed)
        c = _head(ArcFaceHead, seed=seed)(x, y)
        assert (unpg_loss(c, x, y, reduction="none") > unpg_loss(c, x, y, mlpg=False, reduction="none")).all()
        torch.testing.assert_close(unpg_loss(c, x, y, mlpg=False), F.cross_entropy(64.0 * c, y), rtol=1e-12, atol=1e-12)


def test_reductions():
    x, y = _batch()
    c = _head(ArcFaceHead)(x, y)
    none = unpg_loss(c, x, y, reduction="none")
    assert none.shape == (12,)
    torch.testing.assert_close(unpg_loss(c, x, y, reduction="mean"), none.mean())
    torch.testing.assert_close(unpg_loss(c, x, y, reduction="sum"), none.sum())


def test_gradcheck_small_scale():
    x, y = _batch(B=6, C=5, D=4, seed=1, n_ids=3)
    c = _head(ArcFaceHead, D=4, C=5)(x, y).detach().requires_grad_()
    e = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda c_, e_: unpg_loss(c_, e_, y, scale=4.0), (c, e))


def test_hard_negative_pushed_apart():
    x, y = _batch(B=8, n_ids=4, seed=4)
    x = x.clone().requires_grad_()
    head = _head(ArcFaceHead)
    h = F.normalize(x.detach(), dim=1)
    S = (h @ h.T).masked_fill(y[:, None] == y[None, :], -2)
    a, b = divmod(int(S.argmax()), 8)
    (g,) = torch.autograd.grad(unpg_loss(head(x, y), x, y, scale=8.0), x)
    x2 = x.detach() - 1e-3 * g
    assert float(F.cosine_similarity(x2[a], x2[b], dim=0)) < float(S[a, b])


def test_float32_and_autocast():
    x, y = _batch()
    c = _head(ArcFaceHead)(x, y).detach()
    v64 = unpg_loss(c, x, y)
    v32 = unpg_loss(c.float(), x.float(), y)
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vb = unpg_loss(c.float(), x.float(), y)
    assert vb.dtype == torch.float32
    torch.testing.assert_close(vb, v32)


# ---------------------------------------------------------------- the modules
def test_module_forms_equal_function():
    x, y = _batch()
    head = _head(ArcFaceHead)
    c = head(x, y)
    torch.testing.assert_close(UNPGLoss()(c, x, y), unpg_loss(c, x, y), rtol=0, atol=0)
    torch.testing.assert_close(UNPGLoss(head)(x, y), unpg_loss(c, x, y), rtol=0, atol=0)
    kw = dict(scale=8.0, whisker=0.7, method="quantile", mlpg=True, reduction="none")
    torch.testing.assert_close(UNPGLoss(**kw)(c, x, y), unpg_loss(c, x, y, **kw), rtol=0, atol=0)
    torch.testing.assert_close(UNPGLoss(head, scale=8.0, mlpg=False, reduction="sum")(x, y),
                               unpg_loss(c, x, y, scale=8.0, mlpg=False, reduction="sum"), rtol=0, atol=0)
    m = UNPGLoss()
    assert (m.scale, m.whisker, m.method, m.mlpg, m.reduction, m.gather_distributed) == (64.0, 1.5, "index", True, "mean", False)
    assert "scale=64.0" in repr(m) and "whisker=1.5" in repr(m)


def test_module_arity_errors():
    x, y = _batch()
    with pytest.raises(TypeError, match="forward\\(emb, labels\\)"):
        UNPGLoss(_head(ArcFaceHead))(x, x, y)
    with pytest.raises(TypeError, match="forward\\(cos_logits, emb, labels\\)"):
        UNPGLoss()(x, y)


def test_heads_defaults_and_shapes():
    a, c = ArcFaceHead(6, 5), CosFaceHead(6, 5)
    assert (a.m, a.guard, c.m) == (0.5, False, 0.35)
    assert a.weight.shape == (5, 6) and c.weight.shape == (5, 6)
    assert "m=0.5" in repr(a) and "guard=False" in repr(a) and "m=0.35" in repr(c)
    x, y = _batch(dtype=torch.float32)
    out = a(x, y)
    cos = a.cosine(x)
    off = F.one_hot(y, 5) == 0
    torch.testing.assert_close(out[off], cos[off])
    torch.testing.assert_close(c(x, y)[~off], c.cosine(x)[~off] - 0.35)
    torch.testing.assert_close(out[~off], torch.cos(torch.acos(cos[~off]) + 0.5), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- the DDP path without processes
def test_gather_distributed_routes_through_gather(monkeypatch):
    x, y = _batch()
    c = _head(ArcFaceHead)(x, y)
    calls = []
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    monkeypatch.setattr(mod, "gather", lambda t: calls.append(t.shape) or t)
    v = unpg_loss(c, x, y, gather_distributed=True)
    assert calls == [x.shape, y.shape]
    torch.testing.assert_close(v, unpg_loss(c, x, y))
    calls.clear()
    unpg_loss(c, x, y)
    assert calls == []


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_name_the_argument():
    x, y = _batch()
    c = _head(ArcFaceHead)(x, y).detach()
    cases = [
        (lambda: unpg_loss(c[0], x, y), r"^cos_logits:"),
        (lambda: unpg_loss(c.long(), x, y), r"^cos_logits:"),
        (lambda: unpg_loss(c[:0], x[:0], y[:0]), r"^cos_logits:"),
        (lambda: unpg_loss(c, x[:-1], y), r"^emb:"),
        (lambda: unpg_loss(c, x[:, None], y), r"^emb:"),
        (lambda: unpg_loss(c, x.masked_fill(x > 1, float("nan")), y), r"^emb:"),
        (lambda: unpg_loss(c, x, y[:-1]), r"^labels:"),
        (lambda: unpg_loss(c, x, y + 5), r"^labels:"),
        (lambda: unpg_loss(c, x, y - 1), r"^labels:"),
        (lambda: unpg_loss(c, x, y.float()), r"^labels:"),
        (lambda: unpg_loss(c, x, y, scale=0.0), r"^scale:"),
        (lambda: unpg_loss(c, x, y, whisker=-1.0), r"^whisker:"),
        (lambda: unpg_loss(c, x, y, whisker=float("nan")), r"^whisker:"),
        (lambda: unpg_loss(c, x, y, method="median"), r"^method:"),
        (lambda: unpg_loss(c, x, y, reduction="avg"), r"^reduction:"),
        (lambda: box_whisker_filter(c), r"^sims:"),
        (lambda: box_whisker_filter(c[:, 0], whisker=-0.1), r"^whisker:"),
        (lambda: box_whisker_filter(c[:, 0], method="x"), r"^method:"),
        (lambda: batch_negative_similarities(x, y[:-1]), r"^labels:"),
        (lambda: batch_negative_similarities(x[0], y), r"^emb:"),
        (lambda: UNPGLoss(scale=-1.0), r"^scale:"),
        (lambda: UNPGLoss(whisker=-1.0), r"^whisker:"),
        (lambda: UNPGLoss(method="x"), r"^method:"),
        (lambda: UNPGLoss(reduction="x"), r"^reduction:"),
        (lambda: ArcFaceHead(0, 5), r"^in_features:"),
        (lambda: ArcFaceHead(6, 0), r"^num_classes:"),
        (lambda: ArcFaceHead(6, 5, m=-0.1), r"^m:"),
        (lambda: CosFaceHead(6, 5, m=float("nan")), r"^m:"),
        (lambda: ArcFaceHead(6, 5)(x[:, :5].float(), y), r"^x:"),
        (lambda: ArcFaceHead(6, 5)(x.float(), y + 5), r"^y:"),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()


# ---------------------------------------------------------------- mutation-testing pass (issue #7)
def test_filter_and_negatives_reject_integer_inputs():
    with pytest.raises(ValueError, match=r"^sims:"):
        box_whisker_filter(torch.arange(8))
    with pytest.raises(ValueError, match=r"^sims:"):
        box_whisker_filter(torch.arange(8), method="quantile")
    x, y = _batch()
    with pytest.raises(ValueError, match=r"^emb:"):
        batch_negative_similarities((10 * x).long(), y)


def test_without_gather_distributed_no_rank_communication(monkeypatch):
    "gather_distributed=False: the mean divides by the local batch, all_sum and gather are never called."
    x, y = _batch()
    c = _head(ArcFaceHead)(x, y)
    expected = unpg_loss(c, x, y, reduction="none").mean()

    def fail(*args, **kwargs):
        raise AssertionError("called without gather_distributed")

    monkeypatch.setattr(mod, "all_sum", fail)
    monkeypatch.setattr(mod, "gather", fail)
    torch.testing.assert_close(unpg_loss(c, x, y), expected, rtol=0, atol=0)
    torch.testing.assert_close(UNPGLoss()(c, x, y), expected, rtol=0, atol=0)


def test_gather_distributed_mean_over_the_global_batch(monkeypatch):
    "Under DDP the mean divides by all_sum(n) (here a fake 2-rank world: 2 n)."
    x, y = _batch()
    c = _head(ArcFaceHead)(x, y)
    seen = []
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    monkeypatch.setattr(mod, "all_sum", lambda t, active=True: seen.append((int(t), active)) or 2 * t)
    v = unpg_loss(c, x, y, gather_distributed=True)
    assert seen == [(12, True)]
    torch.testing.assert_close(v, unpg_loss(c, x, y, reduction="sum") / 24, rtol=1e-12, atol=0)


def test_heads_smallest_legal_sizes_and_zero_margin():
    for cls in (ArcFaceHead, CosFaceHead):
        head = cls(1, 1)
        assert head.weight.shape == (1, 1)
        x = torch.tensor([[2.0], [-3.0]])
        out = head(x, torch.tensor([0, 0]))
        assert out.shape == (2, 1) and torch.isfinite(out).all()
        head0 = _head(cls, m=0.0)
        assert head0.m == 0.0
        xb, yb = _batch()
        torch.testing.assert_close(head0(xb, yb), head0.cosine(xb), rtol=0, atol=1e-12)


def test_head_cosine_checks_name_x():
    head = ArcFaceHead(6, 5)
    x, y = _batch(dtype=torch.float32)
    for bad in (x[0], x[:, :, None], (10 * x).long(), x.masked_fill(x > 1, float("nan"))):
        with pytest.raises(ValueError, match=r"^x:"):
            head.cosine(bad)
        with pytest.raises(ValueError, match=r"^x:"):
            head(bad, y)


def test_head_labels_must_match_the_batch():
    x, y = _batch(dtype=torch.float32)
    for cls in (ArcFaceHead, CosFaceHead):
        with pytest.raises(ValueError, match=r"^y:"):
            cls(6, 5)(x, y[:-1])
        with pytest.raises(ValueError, match=r"^y:"):
            cls(6, 5)(x, torch.cat([y, y]))


def test_head_weight_follows_the_input_dtype():
    "A float64 head on float32 input (and back): the weight is cast to x's dtype, the output is x's dtype."
    x, y = _batch()
    head = _head(ArcFaceHead)
    out64 = head(x, y)
    out32 = head(x.float(), y)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=1e-5)
    head32 = _head(ArcFaceHead).float()
    assert head32(x, y).dtype == torch.float64


def test_arcface_guard_threshold_is_exactly_cos_pi_minus_m():
    "theta + m > pi iff cos theta < cos(pi - m): at the threshold the plain formula (cos pi = -1), just below it the guard."
    head = _head(ArcFaceHead, guard=True)
    thr = torch.tensor([math.cos(math.pi - 0.5)], dtype=torch.float64)
    below = torch.nextafter(thr, torch.tensor(-2.0, dtype=torch.float64))
    torch.testing.assert_close(head.margin(thr), torch.tensor([-1.0], dtype=torch.float64), rtol=0, atol=1e-7)
    torch.testing.assert_close(head.margin(below), below - 0.5 * math.sin(0.5), rtol=0, atol=1e-15)


def test_emb_rows_message_names_the_batch():
    x, y = _batch()
    c = _head(ArcFaceHead)(x, y).detach()
    with pytest.raises(ValueError, match=r"^emb: expected 12 rows to match cos_logits, got shape \(11, 6\)"):
        unpg_loss(c, x[:-1], y)


@pytest.mark.parametrize("pair", [(torch.float32, torch.float64), (torch.float64, torch.float32),
                                  (torch.float16, torch.float16), (torch.bfloat16, torch.float16)])
def test_mixed_and_half_dtypes_computed_in_the_promoted_full_precision(pair):
    "Both inputs are cast to their promoted dtype (float32 for half types) before any arithmetic."
    x, y = _batch()
    c = _head(ArcFaceHead)(x, y).detach()
    c_in, x_in = c.to(pair[0]), x.to(pair[1])
    want = torch.promote_types(*pair)
    want = torch.float32 if want in (torch.float16, torch.bfloat16) else want
    v = unpg_loss(c_in, x_in, y, scale=16.0, reduction="none")
    assert v.dtype == want
    torch.testing.assert_close(v, unpg_loss(c_in.to(want), x_in.to(want), y, scale=16.0, reduction="none"), rtol=0, atol=0)
