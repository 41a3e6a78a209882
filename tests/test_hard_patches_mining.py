"""Tests for lossbook.ssl.hard_patches_mining (Wang et al. 2023, HPM).

No packaged implementation exists; the references are float64 loops of the notebook's Eqs. 2-3 (tests/references.py,
also used by the shared battery), the BCE-with-logits identity, the card's properties (rank invariance, shift
invariance, limits in the prediction scale, the 0/0 guard), gradcheck, and the mask's exact counts and uniformity.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from references import relative_loss_prediction_ref, zscore_loss_prediction_ref

from lossbook.ssl.hard_patches_mining import (RelativeLossPredictionLoss, TinyMAEWithLossPredictor,
                                              ZscoreLossPredictionLoss, easy_to_hard_fraction, ema_decay_schedule,
                                              hard_patch_mask, norm_pix, num_masked, relative_loss_prediction_loss,
                                              zscore_loss_prediction_loss)


def _pairs(B=4, L=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(B, L, generator=g, dtype=torch.float64)
    t = torch.rand(B, L, generator=g, dtype=torch.float64) + 0.1
    return p.to(dtype).requires_grad_(), t.to(dtype)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relative_matches_loop_reference(seed):
    p, t = _pairs(seed=seed)
    torch.testing.assert_close(relative_loss_prediction_loss(p, t), relative_loss_prediction_ref(p, t),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(relative_loss_prediction_loss(p, t, eps=0.0),
                               relative_loss_prediction_ref(p, t, eps=0.0), rtol=1e-12, atol=1e-12)


def test_relative_default_eps_is_1e_6():
    p, t = _pairs()
    p = 40 * p.detach()  # saturated sigmoids: eps matters
    torch.testing.assert_close(relative_loss_prediction_loss(p, t), relative_loss_prediction_ref(p, t, eps=1e-6))
    assert not torch.allclose(relative_loss_prediction_loss(p, t), relative_loss_prediction_ref(p, t, eps=0.0))
    assert relative_loss_prediction_loss(p, t) <= -math.log(1e-6) + 1e-9


def test_relative_equals_bce_with_logits_over_unequal_pairs():
    p, t = _pairs(B=3, L=5)
    t = t.clone()
    t[0, 1] = t[0, 2]  # one tied pair: excluded
    d = p[:, None, :] - p[:, :, None]
    y = (t[:, None, :] > t[:, :, None]).double()
    keep = (t[:, None, :] != t[:, :, None]).double()
    bce = F.binary_cross_entropy_with_logits(d, y, reduction="none")
    want = (bce * keep).sum((1, 2)) / keep.sum((1, 2))
    torch.testing.assert_close(relative_loss_prediction_loss(p, t, eps=0.0, reduction="none"), want)
    torch.testing.assert_close(relative_loss_prediction_loss(p, t, reduction="none"), want, atol=1e-5, rtol=0)


def test_relative_reductions_and_module():
    p, t = _pairs()
    none = relative_loss_prediction_loss(p, t, reduction="none")
    assert none.shape == (4,)
    torch.testing.assert_close(relative_loss_prediction_loss(p, t), none.mean())
    torch.testing.assert_close(relative_loss_prediction_loss(p, t, reduction="sum"), none.sum())
    torch.testing.assert_close(RelativeLossPredictionLoss()(p, t), relative_loss_prediction_loss(p, t))
    torch.testing.assert_close(RelativeLossPredictionLoss(eps=0.0, reduction="sum")(p, t),
                               relative_loss_prediction_loss(p, t, eps=0.0, reduction="sum"))
    m = RelativeLossPredictionLoss()
    assert m.eps == 1e-6 and m.reduction == "mean"


def test_relative_invariances():
    p, t = _pairs()
    v = relative_loss_prediction_loss(p, t)
    torch.testing.assert_close(relative_loss_prediction_loss(p, t.exp() ** 3 + 5), v)  # increasing transform
    torch.testing.assert_close(relative_loss_prediction_loss(p + torch.randn(4, 1, dtype=torch.float64), t), v)
    assert not torch.allclose(relative_loss_prediction_loss(p, -t), v)  # reversing the targets changes it


def test_relative_scale_limits():
    _, t = _pairs()
    order = t.argsort(1).argsort(1).double()
    ordered = [float(relative_loss_prediction_loss(c * order, t, eps=0.0)) for c in (1, 10, 100)]
    reverse = [float(relative_loss_prediction_loss(-c * order, t, eps=0.0)) for c in (10, 100)]
    assert ordered[0] > ordered[1] > ordered[2] and ordered[2] < 1e-30
    assert reverse[1] / reverse[0] == pytest.approx(10, rel=1e-2)  # linear growth in c


def test_relative_tied_pairs_contribute_nothing_and_all_equal_gives_zero():
    p, t = _pairs(B=1, L=4)
    t2 = t.clone()
    t2[0, 3] = t2[0, 0]
    v = relative_loss_prediction_loss(p, torch.ones_like(t))
    assert float(v.detach()) == 0.0
    v.backward()
    assert torch.all(p.grad == 0)
    torch.testing.assert_close(relative_loss_prediction_loss(p, t2), relative_loss_prediction_ref(p, t2))


def test_relative_target_detached():
    p, t = _pairs()
    t = t.clone().requires_grad_()
    relative_loss_prediction_loss(p, t).backward()
    assert t.grad is not None and torch.all(t.grad == 0) and p.grad.abs().sum() > 0  # detached: zero gradient


def test_gradcheck():
    p, t = _pairs(B=2, L=4)
    assert torch.autograd.gradcheck(lambda x: relative_loss_prediction_loss(x, t), (p,))
    assert torch.autograd.gradcheck(lambda x: relative_loss_prediction_loss(x, t, eps=0.0), (p,))
    assert torch.autograd.gradcheck(lambda x: zscore_loss_prediction_loss(x, t), (p,))


@pytest.mark.parametrize("seed", [0, 1])
def test_zscore_matches_reference_and_formula(seed):
    p, t = _pairs(seed=seed)
    torch.testing.assert_close(zscore_loss_prediction_loss(p, t), zscore_loss_prediction_ref(p, t),
                               rtol=1e-12, atol=1e-12)
    z = (t - t.mean(1, keepdim=True)) / (t.var(1, unbiased=True, keepdim=True) + 1e-6).sqrt()
    torch.testing.assert_close(zscore_loss_prediction_loss(p, t, reduction="none"), (p - z).pow(2).mean(1))
    torch.testing.assert_close(zscore_loss_prediction_loss(p, t, reduction="sum"), (p - z).pow(2).mean(1).sum())
    torch.testing.assert_close(ZscoreLossPredictionLoss()(p, t), zscore_loss_prediction_loss(p, t))
    assert ZscoreLossPredictionLoss().reduction == "mean"
    assert float(zscore_loss_prediction_loss(z, t)) < 1e-20  # perfect prediction


@pytest.mark.parametrize("fn", [relative_loss_prediction_loss, zscore_loss_prediction_loss])
def test_bad_inputs(fn):
    p, t = _pairs()
    with pytest.raises(ValueError, match="pred"):
        fn(p[:, :1], t[:, :1])
    with pytest.raises(ValueError, match="target_loss"):
        fn(p, t[:, :5])
    with pytest.raises(ValueError, match="pred"):
        fn(p.detach()[0], t[0])
    bad = t.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="target_loss"):
        fn(p, bad)
    bad = p.detach().clone()
    bad[1, 1] = float("inf")
    with pytest.raises(ValueError, match="pred"):
        fn(bad, t)
    with pytest.raises(ValueError, match="pred"):
        fn(p[:0], t[:0])
    with pytest.raises(ValueError, match="reduction"):
        fn(p, t, reduction="avg")
    with pytest.raises((ValueError, TypeError), match="target_loss"):
        fn(p, torch.ones(4, 6, dtype=torch.long))


def test_negative_eps_raises():
    p, t = _pairs()
    with pytest.raises(ValueError, match="eps"):
        relative_loss_prediction_loss(p, t, eps=-1.0)


def test_float32_and_bf16():
    p, t = _pairs(dtype=torch.float32)
    v = relative_loss_prediction_loss(p, t)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v.double(), relative_loss_prediction_ref(p, t), rtol=1e-5, atol=1e-6)


# --- the mask and the schedules --------------------------------------------------------------------------------------
def test_num_masked():
    assert num_masked(16) == 12 and num_masked(196) == 147 and num_masked(10, 0.5) == 5


@pytest.mark.parametrize("frac", [0.0, 0.25, 0.5, 1.0])
def test_mask_counts_and_hard_patches(frac):
    pred = torch.randn(50, 16, generator=torch.Generator().manual_seed(1))
    m = hard_patch_mask(pred, 0.75, frac, torch.Generator().manual_seed(0))
    assert m.dtype == torch.bool and m.shape == (50, 16)
    assert (m.sum(1) == 12).all()
    n_hard = int(12 * frac)
    if n_hard:
        top = pred.topk(n_hard, 1).indices
        assert m.gather(1, top).all()


def test_mask_default_is_random_and_uniform():
    pred = torch.arange(16.0).repeat(4000, 1)  # strongly ordered predictions: ignored at hard_fraction=0 (default)
    m = hard_patch_mask(pred, generator=torch.Generator().manual_seed(0))
    counts = m.sum(0).double()
    expected = 4000 * 12 / 16
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 40, chi2  # 15 dof: the 99.9 % quantile is 37.7
    m_hard = hard_patch_mask(pred, 0.75, 0.5, torch.Generator().manual_seed(0))
    assert m_hard[:, 10:].all() and not m[:, 10:].all()


def test_mask_default_ratio_and_bad_inputs():
    pred = torch.randn(3, 16)
    assert (hard_patch_mask(pred).sum(1) == 12).all()
    assert (hard_patch_mask(pred, 0.5).sum(1) == 8).all()
    with pytest.raises(ValueError, match="mask_ratio"):
        hard_patch_mask(pred, 1.0)
    with pytest.raises(ValueError, match="hard_fraction"):
        hard_patch_mask(pred, 0.75, 1.5)
    with pytest.raises(ValueError, match="pred_loss"):
        hard_patch_mask(pred[0])
    bad = pred.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="pred_loss"):
        hard_patch_mask(bad)


def test_schedules():
    assert easy_to_hard_fraction(9, 10) == 0.5
    assert easy_to_hard_fraction(0, 10) == pytest.approx(0.05)
    assert easy_to_hard_fraction(4, 10, max_frac=1.0) == pytest.approx(0.5)
    assert ema_decay_schedule(0) == 0.999
    assert ema_decay_schedule(50) == pytest.approx(0.99945)
    assert ema_decay_schedule(100) == 0.9999 and ema_decay_schedule(500) == 0.9999


def test_model_shapes_and_patch_order():
    torch.manual_seed(0)
    m = TinyMAEWithLossPredictor()
    x = torch.rand(2, 1, 8, 8)
    pt = m.patchify(x)
    assert pt.shape == (2, 16, 4)
    torch.testing.assert_close(pt[1, 5], x[1, 0, 2:4, 2:4].reshape(-1))
    mask = hard_patch_mask(torch.zeros(2, 16))
    rec, lp = m(x, mask)
    assert rec.shape == (2, 16, 4) and lp.shape == (2, 16)
    assert m.encode(x, mask).shape == (2, 4, 32) and m.features(x).shape == (2, 32)
    rec_all, lp_all = m(x)
    assert rec_all.shape == (2, 16, 4)
    z = norm_pix(pt)
    torch.testing.assert_close(z.mean(-1), torch.zeros(2, 16), atol=1e-6, rtol=0)


# --- closing the gaps found by mutation testing (issue #7) -----------------------------------------------------------
@pytest.mark.parametrize("fn", [relative_loss_prediction_loss, zscore_loss_prediction_loss])
def test_error_messages_start_with_the_argument_name(fn):
    p, t = _pairs()
    with pytest.raises(ValueError, match=r"^pred:"):
        fn(p.detach()[0], t)
    with pytest.raises(ValueError, match=r"^target_loss:"):
        fn(p, t[0])  # a 1-D target is reported by its own check, not by the shape comparison
    with pytest.raises(ValueError, match=r"^pred:"):
        fn(p[:, :1], t[:, :1])
    with pytest.raises(ValueError, match=r"^pred and target_loss must have the same shape"):
        fn(p, t[:, :5])
    pred = torch.randn(3, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^pred_loss:"):
        hard_patch_mask(pred[0])
    with pytest.raises(ValueError, match=r"^pred_loss:"):
        hard_patch_mask(torch.ones(3, 16, dtype=torch.long))  # integer predictions are rejected
    with pytest.raises(ValueError, match=r"^mask_ratio:"):
        hard_patch_mask(pred, 0.0)
    with pytest.raises(ValueError, match=r"^hard_fraction:"):
        hard_patch_mask(pred, 0.75, -0.1)


@pytest.mark.parametrize("fn", [relative_loss_prediction_loss, zscore_loss_prediction_loss])
def test_two_patches_are_enough(fn):
    p, t = _pairs(L=2)
    v = fn(p, t, reduction="none")
    assert v.shape == (4,) and torch.isfinite(v).all()
    if fn is relative_loss_prediction_loss:
        torch.testing.assert_close(fn(p, t), relative_loss_prediction_ref(p, t), rtol=1e-12, atol=1e-12)


def test_relative_zero_targets_give_zero_not_nan():
    p, _ = _pairs()
    v = relative_loss_prediction_loss(p, torch.zeros(4, 6, dtype=torch.float64), reduction="none")
    assert torch.equal(v.detach(), torch.zeros(4, dtype=torch.float64))


def test_relative_eps_zero_is_stable_for_saturated_predictions():
    p, t = _pairs()
    p = 1e3 * p.detach()  # sigmoid(d) is exactly 0 or 1: log(sigmoid) would give -inf * 0 = NaN
    d = p[:, None, :] - p[:, :, None]
    y = (t[:, None, :] > t[:, :, None]).double()
    keep = (t[:, None, :] != t[:, :, None]).double()
    bce = (F.binary_cross_entropy_with_logits(d, y, reduction="none") * keep).sum((1, 2)) / keep.sum((1, 2))
    torch.testing.assert_close(relative_loss_prediction_loss(p, t, eps=0.0, reduction="none"), bce)


@pytest.mark.parametrize("fn", [relative_loss_prediction_loss, zscore_loss_prediction_loss])
def test_half_precision_inputs_are_computed_in_float32(fn):
    p, t = _pairs()
    pb, tb = p.detach().bfloat16(), t.bfloat16()
    v = fn(pb, tb, reduction="none")
    assert v.dtype == torch.float32
    torch.testing.assert_close(v, fn(pb.float(), tb.float(), reduction="none"), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fn", [relative_loss_prediction_loss, zscore_loss_prediction_loss])
def test_mixed_dtypes_promote(fn):
    p, t = _pairs()
    assert fn(p, t.float()).dtype == torch.float64
    assert fn(p.float(), t).dtype == torch.float64


def test_zscore_target_gets_an_exact_zero_gradient():
    p, t = _pairs()
    t = t.clone().requires_grad_()
    zscore_loss_prediction_loss(p, t).backward()
    assert t.grad is not None and torch.all(t.grad == 0) and p.grad.abs().sum() > 0


def test_zscore_module_passes_the_reduction():
    p, t = _pairs()
    torch.testing.assert_close(ZscoreLossPredictionLoss("sum")(p, t), zscore_loss_prediction_loss(p, t, "sum"))
    assert ZscoreLossPredictionLoss("none")(p, t).shape == (4,)


def test_mask_single_hard_patch_and_generator():
    pred = torch.randn(50, 16, generator=torch.Generator().manual_seed(3))
    m = hard_patch_mask(pred, 0.75, 0.1, torch.Generator().manual_seed(0))  # floor(12 * 0.1) = 1 hard patch
    assert m.gather(1, pred.argmax(1, keepdim=True)).all()
    # the random part is drawn from the generator: torch.rand(B, L) from it, its top-N_m
    want = torch.zeros(50, 16, dtype=torch.bool).scatter_(
        1, torch.rand(50, 16, generator=torch.Generator().manual_seed(0)).topk(12, dim=1).indices, True)
    assert torch.equal(hard_patch_mask(pred, generator=torch.Generator().manual_seed(0)), want)


def test_ema_schedule_reaches_end_exactly():
    assert ema_decay_schedule(3, 0.3, 0.9, 3) == 0.9  # start + (end - start) rounds to 0.9000000000000001


def test_norm_pix_formula():
    x = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m, v = x.mean(-1, keepdim=True), x.var(-1, unbiased=True, keepdim=True)
    torch.testing.assert_close(norm_pix(x), (x - m) / (v + 1e-6).sqrt(), rtol=1e-12, atol=1e-12)


def test_model_architecture_is_pinned():
    import warnings
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enable_nested_tensor=False: no warning about norm_first
        m = TinyMAEWithLossPredictor()
    assert m.L == 16 and m.P == 4 and len(m.encoder.layers) == 2
    for dec in (m.reconstructor, m.loss_predictor):
        assert len(dec.blocks.layers) == 1
        assert dec.mask_token.shape == (1, 1, 32) and dec.pos.shape == (1, 16, 32)
        assert 0 < float(dec.pos.detach().std()) < 0.05
    assert m.pos.shape == (1, 16, 32) and 0 < float(m.pos.detach().std()) < 0.05
    for layer in [*m.encoder.layers, *m.reconstructor.blocks.layers]:
        assert layer.norm_first and layer.self_attn.batch_first and layer.self_attn.num_heads == 2
        assert layer.linear1.out_features == 64 and layer.dropout.p == 0.0


def test_model_forward_by_hand_and_per_image():
    torch.manual_seed(0)
    m = TinyMAEWithLossPredictor()  # train mode: no dropout, so two calls agree
    x = torch.rand(3, 1, 8, 8)
    mask = hard_patch_mask(torch.zeros(3, 16), generator=torch.Generator().manual_seed(0))
    rec, lp = m(x, mask)
    rec2, _ = m(x, mask)
    torch.testing.assert_close(rec, rec2, rtol=0, atol=0)
    tok = m.embed(m.patchify(x)) + m.pos
    latent = m.norm(m.encoder(tok[~mask].reshape(3, 4, 32)))
    torch.testing.assert_close(m.encode(x, mask), latent)
    dec = m.reconstructor
    seq = dec.mask_token.expand(3, 16, -1).clone()
    seq[~mask] = dec.proj(latent).reshape(-1, 32)
    torch.testing.assert_close(rec, dec.head(dec.norm(dec.blocks(seq + dec.pos))))
    # every image is encoded on its own (batch_first attention runs over its patches, not over the batch)
    torch.testing.assert_close(m.encode(x[:1], mask[:1]), latent[:1], rtol=1e-5, atol=1e-6)
