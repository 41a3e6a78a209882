"""Tests for lossbook.vision.kd_landmarks (Fard & Mahoor 2022, KD-Loss for facial landmarks).

There is no PyPI implementation: the references are a float64 NumPy transcription of the official TensorFlow function
(`aliprf/KD-Loss`, `custom_Losses.py::kd_loss`, same case analysis and order of operations) and plain per-coordinate
Python loops written from the card's region description, plus the card's properties (exact teachers -> MSE,
continuity, gradient signs, reflection symmetry, translation invariance).
"""

import math

import numpy as np
import pytest
import torch

from lossbook.vision.kd_landmarks import (
    AssistiveLoss,
    KDLandmarkLoss,
    KDMainLoss,
    asm_soft_landmarks,
    assistive_loss,
    kd_landmark_loss,
    kd_landmark_loss_terms,
    kd_main_loss,
    nme,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CODE = dict(alpha_tough=1.9, alpha_mi_tough=-0.45, alpha_tol=1.8, alpha_mi_tol=-0.4)


def _data(B=8, D=10, dtype=torch.float64, seed=0, device="cpu", spread=(0.05, 0.02, 0.04)):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(B, D, generator=g, dtype=torch.float64) - 0.5
    pr, tt, tl = (gt + s * torch.randn(B, D, generator=g, dtype=torch.float64) for s in spread)
    return tuple(t.to(device=device, dtype=dtype) for t in (pr, gt, tt, tl))


def _tf_kd_loss_numpy(x_pr, x_gt, x_tough, x_tol, alpha_tough, alpha_mi_tough, alpha_tol, alpha_mi_tol,
                      main_loss_weight, tough_loss_weight, tol_loss_weight, band=0.15):
    "The official TF kd_loss, transcribed to NumPy float64 (tf.sign -> np.sign, tf.where -> np.where)."
    sg = np.sign
    x_tough = x_gt + sg(x_pr - x_gt) * np.abs(x_tough - x_gt)
    b_tough = x_gt + sg(x_pr - x_gt) * np.abs(x_tough - x_gt) * band
    x_tol = x_gt + sg(x_pr - x_gt) * np.abs(x_tol - x_gt)
    b_tol = x_gt + sg(x_pr - x_gt) * np.abs(x_tol - x_gt) * band
    tou_map = (np.where(sg(x_pr - x_tough) * sg(x_tough - x_gt) > 0, alpha_tough, 0.0)
               + np.where(sg(x_tough - x_pr) * sg(x_pr - b_tough) >= 0, alpha_mi_tough, 0.0))
    tol_map = (np.where(sg(x_pr - x_tol) * sg(x_tol - x_gt) > 0, alpha_tol, 0.0)
               + np.where(sg(x_tol - x_pr) * sg(x_pr - b_tol) >= 0, alpha_mi_tol, 0.0))
    low = np.where(np.abs(x_gt - x_pr) <= np.abs(x_gt - x_tol), 1.0, 0.0)
    high = np.where(np.abs(x_gt - x_pr) > np.abs(x_gt - x_tol), 1.0, 0.0)
    main = main_loss_weight * (np.mean(high * (np.square(x_gt - x_pr) + 3 * np.abs(x_gt - x_tol) - np.square(x_gt - x_tol)))
                               + np.mean(low * (3 * np.abs(x_gt - x_pr))))
    al_t = tough_loss_weight * np.mean(tou_map * np.abs(x_tough - x_pr))
    al_tol = tol_loss_weight * np.mean(tol_map * np.abs(x_tol - x_pr))
    return main + al_t + al_tol, main, al_t, al_tol


def _region_loop(x, g, t, alpha, alpha_neg, band):
    "One coordinate, from the card's words: attract beyond the (reflected) teacher, repel between b and it, 0 in the band."
    m = abs(t - g)
    d = abs(x - g)
    if m == 0 or d == 0:
        return 0.0
    if d > m:
        return alpha * (d - m)
    if d >= band * m:
        return alpha_neg * (m - d)
    return 0.0


def _main_loop(x, g, tol, c=3.0):
    e, t = abs(g - x), abs(g - tol)
    return c * e if e <= t else e * e + c * t - t * t


def _edge_cases(seed=0, B=16, D=12):
    r = np.random.default_rng(seed)
    gt = r.uniform(-0.5, 0.5, (B, D))
    tough = gt + r.normal(0, 0.02, (B, D))
    tol = gt + r.normal(0, 0.05, (B, D))
    pr = gt + r.normal(0, 0.05, (B, D))
    s = np.sign(pr - gt)
    pr[0] = gt[0]
    pr[1] = gt[1] + s[1] * np.abs(tough[1] - gt[1])
    t_ref = gt[2] + s[2] * np.abs(tough[2] - gt[2])
    pr[2] = gt[2] + s[2] * np.abs(t_ref - gt[2]) * 0.15
    tough[3], tol[3] = gt[3], gt[3]
    tol[4] = gt[4] + np.abs(pr[4] - gt[4])
    return pr, gt, tough, tol


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_transcription_of_the_official_function(seed):
    case = _edge_cases(seed)
    ref = _tf_kd_loss_numpy(*case, **CODE, main_loss_weight=2.0, tough_loss_weight=1.0, tol_loss_weight=1.0)
    got = kd_landmark_loss_terms(*(torch.from_numpy(a) for a in case))
    for a, b in zip(got, ref):
        assert abs(a.item() - b) < 1e-14


def test_matches_transcription_with_other_weights_and_band():
    case = _edge_cases(5)
    ref = _tf_kd_loss_numpy(*case, 0.7, -0.2, 2.5, -0.9, 1.5, 0.3, 2.0, band=0.4)
    got = kd_landmark_loss_terms(*(torch.from_numpy(a) for a in case), alphas=(0.7, -0.2, 2.5, -0.9),
                                 weights=(1.5, 0.3, 2.0), band=0.4)
    for a, b in zip(got, ref):
        assert abs(a.item() - b) < 1e-14


@pytest.mark.parametrize("alpha,alpha_neg,band", [(1.9, -0.45, 0.15), (1.8, -0.4, 0.15), (0.5, -1.2, 0.3), (2.0, 0.5, 0.0)])
def test_assistive_matches_region_loop(alpha, alpha_neg, band):
    pr, gt, tt, _ = _data(B=6, D=8, seed=3, spread=(0.05, 0.03, 0.04))
    got = assistive_loss(pr, gt, tt, alpha, alpha_neg, band, reduction="none")
    want = torch.tensor([sum(_region_loop(x, g, t, alpha, alpha_neg, band) for x, g, t in zip(*rows)) / 8
                         for rows in zip(pr.tolist(), gt.tolist(), tt.tolist())], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("c", [3.0, 1.0, 7.5])
def test_main_matches_loop(c):
    pr, gt, _, tl = _data(seed=4)
    got = kd_main_loss(pr, gt, tl, c=c, reduction="none")
    want = torch.tensor([sum(_main_loop(x, g, t, c) for x, g, t in zip(*rows)) / 10
                         for rows in zip(pr.tolist(), gt.tolist(), tl.tolist())], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_hand_values_of_the_regions():
    x = torch.tensor([[-2.0], [-0.5], [-0.1], [0.0], [0.15], [0.5], [1.0], [2.0]], dtype=torch.float64)
    g, t = torch.zeros_like(x), torch.ones_like(x)
    got = assistive_loss(x, g, t, reduction="none")  # defaults: alpha 1.9, alpha_neg -0.45, band 0.15
    want = torch.tensor([1.9, -0.225, 0, 0, -0.3825, -0.225, 0, 1.9], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-14)


# ---------------------------------------------------------------- defaults
def test_defaults_are_the_code_values():
    pr, gt, tt, tl = _data(seed=6)
    base = kd_landmark_loss(pr, gt, tt, tl)
    assert base == kd_landmark_loss(pr, gt, tt, tl, (1.9, -0.45, 1.8, -0.4), (2.0, 1.0, 1.0), 0.15, "mean")
    for kw in (dict(alphas=(1.9, -0.45, 1.8, -0.5)), dict(alphas=(2.0, -0.45, 1.8, -0.4)), dict(alphas=(1.9, -0.4, 1.8, -0.4)),
               dict(alphas=(1.9, -0.45, 1.7, -0.4)), dict(weights=(2.0, 1.0, 1.1)), dict(weights=(2.1, 1.0, 1.0)),
               dict(weights=(2.0, 1.1, 1.0)), dict(band=0.6)):
        assert kd_landmark_loss(pr, gt, tt, tl, **kw) != base, kw
    a = assistive_loss(pr, gt, tt)
    assert a == assistive_loss(pr, gt, tt, 1.9, -0.45, 0.15, "mean")
    for kw in (dict(alpha=1.8), dict(alpha_neg=-0.4), dict(band=0.6)):
        assert assistive_loss(pr, gt, tt, **kw) != a, kw
    m = kd_main_loss(pr, gt, tl)
    assert m == kd_main_loss(pr, gt, tl, 3.0, "mean") and kd_main_loss(pr, gt, tl, c=2.9) != m
    S = torch.randn(50, 6, dtype=torch.float64) * torch.tensor([3.0, 2, 1, 0.5, 0.2, 0.1], dtype=torch.float64)
    soft = asm_soft_landmarks(S, S[:5])
    torch.testing.assert_close(soft, asm_soft_landmarks(S, S[:5], var_kept=0.9, clamp=3.0), rtol=0, atol=0)
    assert not torch.allclose(soft, asm_soft_landmarks(S, S[:5], var_kept=0.99))
    assert not torch.allclose(asm_soft_landmarks(S, S * 3), asm_soft_landmarks(S, S * 3, clamp=3.5))


def test_terms_sum_and_weights():
    pr, gt, tt, tl = _data(seed=7)
    total, main, at, atl = kd_landmark_loss_terms(pr, gt, tt, tl, weights=(0.5, 3.0, 0.25))
    torch.testing.assert_close(total, main + at + atl, rtol=0, atol=1e-15)
    torch.testing.assert_close(main, 0.5 * kd_main_loss(pr, gt, tl), rtol=1e-14, atol=0)
    torch.testing.assert_close(at, 3.0 * assistive_loss(pr, gt, tt, 1.9, -0.45), rtol=1e-14, atol=0)
    torch.testing.assert_close(atl, 0.25 * assistive_loss(pr, gt, tl, 1.8, -0.4), rtol=1e-14, atol=0)
    assert kd_landmark_loss(pr, gt, tt, tl, weights=(0.5, 3.0, 0.25)) == total


# ---------------------------------------------------------------- properties
def test_exact_teachers_give_mse():
    pr, gt, _, _ = _data(seed=8)
    total, main, at, atl = kd_landmark_loss_terms(pr, gt, gt.clone(), gt.clone())
    assert at.item() == 0 and atl.item() == 0
    torch.testing.assert_close(main, 2 * (pr - gt).square().mean(), rtol=1e-14, atol=0)
    torch.testing.assert_close(kd_main_loss(pr, gt, gt), (pr - gt).square().mean(), rtol=1e-14, atol=0)


def test_main_continuous_and_its_slopes():
    g = torch.zeros(1, 1, dtype=torch.float64)
    t = torch.full((1, 1), 0.2, dtype=torch.float64)
    for e in (0.2 - 1e-9, 0.2, 0.2 + 1e-9):
        assert abs(kd_main_loss(g + e, g, t).item() - 0.6) < 1e-8
    for e, slope in ((0.1, 3.0), (-0.1, -3.0), (0.5, 1.0), (-0.7, -1.4)):
        x = (g + e).requires_grad_()
        kd_main_loss(x, g, t).backward()
        assert abs(x.grad.item() - slope) < 1e-12, (e, x.grad.item())


def test_assistive_gradient_points_to_gt_and_vanishes_in_band():
    g = torch.zeros(8, 1, dtype=torch.float64)
    t = torch.full((8, 1), 0.4, dtype=torch.float64)
    x = torch.tensor([[-1.0], [-0.2], [-0.03], [0.03], [0.2], [0.35], [0.5], [1.0]], dtype=torch.float64, requires_grad=True)
    assistive_loss(x, g, t, reduction="sum").backward()
    step = -x.grad.squeeze(1)
    expected = torch.tensor([1.9, 0.45, 0, 0, -0.45, -0.45, -1.9, -1.9], dtype=torch.float64)
    torch.testing.assert_close(step, expected, rtol=0, atol=1e-14)


def test_reflection_symmetry_and_translation_invariance():
    pr, gt, tt, tl = _data(seed=9)
    mirror = lambda v: 2 * gt - v
    for a, b in zip(kd_landmark_loss_terms(mirror(pr), gt, mirror(tt), mirror(tl)), kd_landmark_loss_terms(pr, gt, tt, tl)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # a teacher on the other side of gt gives the same loss (it is reflected onto the prediction's side)
    torch.testing.assert_close(kd_landmark_loss(pr, gt, mirror(tt), mirror(tl)), kd_landmark_loss(pr, gt, tt, tl),
                               rtol=1e-12, atol=1e-14)
    shift = 0.37
    torch.testing.assert_close(kd_landmark_loss(pr + shift, gt + shift, tt + shift, tl + shift), kd_landmark_loss(pr, gt, tt, tl),
                               rtol=1e-10, atol=1e-12)


def test_teachers_are_detached():
    pr, gt, tt, tl = _data(seed=10)
    pr.requires_grad_(); tt.requires_grad_(); tl.requires_grad_()
    kd_landmark_loss(pr, gt, tt, tl).backward()
    assert pr.grad is not None and tt.grad is None and tl.grad is None


def test_shapes_b_l_2_equal_b_2l():
    pr, gt, tt, tl = _data(seed=11)
    v = lambda t: t.view(8, 5, 2)
    assert kd_landmark_loss(v(pr), v(gt), v(tt), v(tl)) == kd_landmark_loss(pr, gt, tt, tl)
    assert kd_landmark_loss(v(pr), v(gt), v(tt), v(tl), reduction="none").shape == (8,)


def test_gradcheck():
    pr, gt, tt, tl = _data(B=3, D=6, seed=12)
    # away from the region boundaries: the random draw keeps every coordinate clear of them by > 1e-4
    f = lambda p, g: kd_landmark_loss(p, g, tt, tl, reduction="sum")
    assert torch.autograd.gradcheck(f, (pr.requires_grad_(), gt.requires_grad_()), eps=1e-7, atol=1e-6)
    h = lambda p: kd_main_loss(p, gt.detach(), tl, c=2.0, reduction="sum") + assistive_loss(p, gt.detach(), tt, 1.0, -0.3, 0.2, "sum")
    assert torch.autograd.gradcheck(h, (pr.detach().clone().requires_grad_(),), eps=1e-7, atol=1e-6)


@pytest.mark.parametrize("fn,n", [(kd_landmark_loss, 4), (assistive_loss, 3), (kd_main_loss, 3)])
def test_reductions(fn, n):
    args = _data(seed=13)[:n]
    none = fn(*args, reduction="none")
    assert none.shape == (8,)
    torch.testing.assert_close(fn(*args), none.mean(), rtol=1e-14, atol=0)
    torch.testing.assert_close(fn(*args, reduction="sum"), none.sum(), rtol=1e-14, atol=0)
    # 'mean' is the code's reduce_mean over batch x coordinates
    terms = kd_landmark_loss_terms(*_data(seed=13), reduction="sum")
    torch.testing.assert_close(terms[0], terms[1] + terms[2] + terms[3], rtol=1e-14, atol=0)


def test_functional_equals_module_with_every_setting():
    pr, gt, tt, tl = _data(seed=14)
    kw = dict(alphas=(1.1, -0.2, 0.9, -0.7), weights=(1.5, 0.5, 2.0), band=0.3, reduction="sum")
    assert KDLandmarkLoss(**kw)(pr, gt, tt, tl) == kd_landmark_loss(pr, gt, tt, tl, **kw)
    assert KDLandmarkLoss()(pr, gt, tt, tl) == kd_landmark_loss(pr, gt, tt, tl)
    assert AssistiveLoss(1.2, -0.7, 0.25, "none")(pr, gt, tt).equal(assistive_loss(pr, gt, tt, 1.2, -0.7, 0.25, "none"))
    assert AssistiveLoss()(pr, gt, tt) == assistive_loss(pr, gt, tt)
    assert KDMainLoss(2.2, "sum")(pr, gt, tl) == kd_main_loss(pr, gt, tl, 2.2, "sum")
    assert KDMainLoss()(pr, gt, tl) == kd_main_loss(pr, gt, tl)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_dtypes_and_devices(dtype, device):
    args = _data(dtype=dtype, device=device, seed=15)
    v = kd_landmark_loss(*args)
    assert v.dtype == dtype and v.device.type == device
    torch.testing.assert_close(v.double().cpu(), kd_landmark_loss(*_data(seed=15)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- soft landmarks and NME
def test_asm_rebuilds_with_every_component_and_clips():
    g = torch.Generator().manual_seed(0)
    S = torch.randn(100, 6, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2, 1, 0.5, 0.2, 0.1], dtype=torch.float64)
    torch.testing.assert_close(asm_soft_landmarks(S, S, var_kept=1.0, clamp=1e6), S, rtol=0, atol=1e-10)
    # against an independent PCA: numpy eigendecomposition of the covariance, the same k rule, the 3 sqrt(lambda) clip
    X = S.numpy()
    mu = X.mean(0)
    lam, V = np.linalg.eigh(np.cov(X - mu, rowvar=False))
    lam, V = lam[::-1], V[:, ::-1]
    for v in (0.5, 0.8, 0.9, 0.97):
        k = int(np.searchsorted(np.cumsum(lam) / lam.sum(), v, side="right") + 1)
        b = (X * 4 - mu) @ V[:, :k]
        b = np.clip(b, -3 * np.sqrt(lam[:k]), 3 * np.sqrt(lam[:k]))
        want = mu + b @ V[:, :k].T
        torch.testing.assert_close(asm_soft_landmarks(S, S * 4, var_kept=v), torch.from_numpy(want), rtol=0, atol=1e-9)


def test_nme_hand_value_and_layouts():
    gt = torch.tensor([[[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    pred = gt.clone()
    pred[0, 2] += torch.tensor([0.3, 0.4], dtype=torch.float64)  # one landmark 0.5 off, iod 2: (0.5 / 3) / 2
    assert abs(nme(pred, gt, 0, 1).item() - 0.5 / 3 / 2) < 1e-15
    assert nme(pred.view(1, 6), gt.view(1, 6), 0, 1) == nme(pred, gt, 0, 1)
    assert abs(nme(pred, gt, 0, 2).item() - 0.5 / 3 / math.sqrt(2)) < 1e-15
    two = torch.cat([gt, gt]), torch.cat([pred, gt])
    torch.testing.assert_close(nme(two[1], two[0], 0, 1, reduction="none"), torch.tensor([0.5 / 6, 0.0], dtype=torch.float64))
    assert nme(two[1], two[0], 0, 1, reduction="sum") == nme(two[1], two[0], 0, 1, reduction="none").sum()
    assert nme(two[1], two[0], 0, 1) == nme(two[1], two[0], 0, 1, reduction="none").mean()


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_name_the_argument():
    pr, gt, tt, tl = _data(seed=16)
    nan = pr.clone(); nan[0, 0] = float("nan")
    cases = [
        (lambda: kd_landmark_loss(nan, gt, tt, tl), r"^pred:"),
        (lambda: kd_landmark_loss(pr, gt.clone().fill_(float("inf")), tt, tl), r"^gt:"),
        (lambda: kd_landmark_loss(pr, gt, tt * float("nan"), tl), r"^tough:"),
        (lambda: kd_landmark_loss(pr, gt, tt, tl * float("inf")), r"^tolerant:"),
        (lambda: kd_landmark_loss(pr, gt, tt[:-1], tl), r"^pred and tough"),
        (lambda: kd_landmark_loss(pr, gt, tt, tl[:, :-2]), r"^pred and tolerant"),
        (lambda: kd_landmark_loss(pr, gt[:-1], tt, tl), r"^pred and gt"),
        (lambda: kd_landmark_loss(pr[:0], gt[:0], tt[:0], tl[:0]), r"^pred:"),
        (lambda: kd_landmark_loss(pr.long(), gt, tt, tl), r"^pred:"),
        (lambda: kd_landmark_loss(pr.view(8, 2, 5), gt.view(8, 2, 5), tt.view(8, 2, 5), tl.view(8, 2, 5)), r"^pred:"),
        (lambda: kd_landmark_loss(pr[0], gt[0], tt[0], tl[0]), r"^pred:"),
        (lambda: kd_landmark_loss(pr, gt, tt, tl, alphas=(1.0, 2.0, 3.0)), r"^alphas:"),
        (lambda: kd_landmark_loss(pr, gt, tt, tl, alphas=1.0), r"^alphas:"),
        (lambda: kd_landmark_loss(pr, gt, tt, tl, alphas=(1.0, 2.0, float("nan"), 1.0)), r"^alphas:"),
        (lambda: kd_landmark_loss(pr, gt, tt, tl, weights=(1.0, 1.0)), r"^weights:"),
        (lambda: kd_landmark_loss(pr, gt, tt, tl, weights=(1.0, -1.0, 1.0)), r"^weights:"),
        (lambda: kd_landmark_loss(pr, gt, tt, tl, band=-0.1), r"^band:"),
        (lambda: kd_landmark_loss(pr, gt, tt, tl, band=1.5), r"^band:"),
        (lambda: kd_landmark_loss(pr, gt, tt, tl, reduction="avg"), r"reduction"),
        (lambda: assistive_loss(pr, gt, tt * float("nan")), r"^teacher:"),
        (lambda: assistive_loss(pr, gt, tt[:, :3]), r"^pred and teacher"),
        (lambda: assistive_loss(pr, gt, tt, alpha=float("inf")), r"^alpha:"),
        (lambda: assistive_loss(pr, gt, tt, alpha_neg="x"), r"^alpha_neg:"),
        (lambda: assistive_loss(pr, gt, tt, band=2.0), r"^band:"),
        (lambda: assistive_loss(pr, gt, tt, reduction="avg"), r"reduction"),
        (lambda: kd_main_loss(pr, gt, tl * float("nan")), r"^tolerant:"),
        (lambda: kd_main_loss(pr, gt, tl, c=0.0), r"^c:"),
        (lambda: kd_main_loss(pr, gt, tl, reduction="avg"), r"reduction"),
        (lambda: nme(pr, gt[:-1], 0, 1), r"^pred and gt"),
        (lambda: nme(pr, gt, 0, 5), r"^right_eye_idx:"),
        (lambda: nme(pr, gt, -1, 2), r"^left_eye_idx:"),
        (lambda: nme(pr, gt, 0.0, 2), r"^left_eye_idx:"),
        (lambda: nme(pr, gt, 0, 0), r"^gt:"),
        (lambda: nme(pr, gt, 0, 1, reduction="avg"), r"reduction"),
        (lambda: asm_soft_landmarks(gt, gt[:, :4]), r"^shapes:"),
        (lambda: asm_soft_landmarks(gt[:1], gt), r"^shapes_train:"),
        (lambda: asm_soft_landmarks(nan, gt), r"^shapes_train:"),
        (lambda: asm_soft_landmarks(gt, nan), r"^shapes:"),
        (lambda: asm_soft_landmarks(gt, gt, var_kept=0.0), r"^var_kept:"),
        (lambda: asm_soft_landmarks(gt, gt, var_kept=1.2), r"^var_kept:"),
        (lambda: asm_soft_landmarks(gt, gt, clamp=0.0), r"^clamp:"),
        (lambda: KDLandmarkLoss(alphas=(1.0,)), r"^alphas:"),
        (lambda: KDLandmarkLoss(weights=(1.0, 1.0, -2.0)), r"^weights:"),
        (lambda: KDLandmarkLoss(band=-1.0), r"^band:"),
        (lambda: KDLandmarkLoss(reduction="avg"), r"reduction"),
        (lambda: AssistiveLoss(alpha=float("nan")), r"^alpha:"),
        (lambda: AssistiveLoss(alpha_neg=float("nan")), r"^alpha_neg:"),
        (lambda: AssistiveLoss(band=3.0), r"^band:"),
        (lambda: AssistiveLoss(reduction="avg"), r"reduction"),
        (lambda: KDMainLoss(c=-1.0), r"^c:"),
        (lambda: KDMainLoss(reduction="avg"), r"reduction"),
    ]
    for i, (fn, msg) in enumerate(cases):
        with pytest.raises(ValueError, match=msg):
            fn()


def test_smallest_legal_inputs_and_band_edges():
    one = torch.tensor([[0.3]], dtype=torch.float64)
    z = torch.zeros_like(one)
    assert kd_landmark_loss(one, z, z, z).item() == pytest.approx(2 * 0.09, abs=1e-15)  # B = 1, D = 1
    t = torch.full_like(one, 0.5)
    assert assistive_loss(one, z, t, band=0.0).item() == pytest.approx(-0.45 * 0.2, abs=1e-15)
    assert assistive_loss(one, z, t, band=1.0).item() == 0.0  # the band covers the whole teacher error
    assert assistive_loss(t, z, t).item() == 0.0  # on the teacher: distance 0


# ---------------------------------------------------------------- pinned by the mutation pass (issue #7)
def test_zero_weights_are_legal():
    pr, gt, tt, tl = _data(seed=17)
    total, main, at, atl = kd_landmark_loss_terms(pr, gt, tt, tl, weights=(0.0, 1.0, 0.0))
    assert main.item() == 0 and atl.item() == 0 and total == at
    assert kd_landmark_loss(pr, gt, tt, tl, weights=(2.0, 0.0, 1.0)) == kd_landmark_loss_terms(pr, gt, tt, tl)[1] + \
        kd_landmark_loss_terms(pr, gt, tt, tl)[3]
    assert KDLandmarkLoss(weights=(0.0, 0.0, 1.0)).weights == (0.0, 0.0, 1.0)


def test_asm_two_training_shapes_and_exact_message():
    S = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]], dtype=torch.float64)  # 2 shapes: one component
    X = torch.tensor([[0.0, 0.25, 1.0, 0.25], [5.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    got = asm_soft_landmarks(S, X, var_kept=1.0, clamp=10.0)
    torch.testing.assert_close(got[0], X[0], rtol=0, atol=1e-12)  # X[0] lies on the line through the two shapes
    torch.testing.assert_close(got[1], torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"^shapes_train: expected at least 2 shapes to fit a shape model, got 1$"):
        asm_soft_landmarks(S[:1], X)


def test_asm_var_kept_tie_keeps_the_next_component():
    # eigenvalues exactly equal: the first component explains exactly 0.5; the rule keeps components until the
    # cumulative ratio *exceeds* var_kept, so var_kept = 0.5 keeps both (scikit-learn's searchsorted(side="right") + 1)
    S = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    X = torch.tensor([[0.5, 0.25]], dtype=torch.float64)
    torch.testing.assert_close(asm_soft_landmarks(S, X, var_kept=0.5), X, rtol=0, atol=1e-12)
    one = asm_soft_landmarks(S, X, var_kept=0.49)  # one component: X projected on a line, no longer X
    assert not torch.allclose(one, X, rtol=0, atol=1e-3)


def test_nme_names_its_arguments_and_small_iod():
    pr, gt, _, _ = _data(seed=18)
    nan = pr.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^pred:"):
        nme(nan, gt, 0, 1)
    with pytest.raises(ValueError, match=r"^gt:"):
        nme(pr, nan, 0, 1)
    with pytest.raises(ValueError, match=r"^pred:"):
        nme(pr.view(8, 2, 5), gt.view(8, 2, 5), 0, 1)
    with pytest.raises(ValueError, match=r"^gt:"):
        nme(pr, gt.long(), 0, 1)
    # an inter-ocular distance below 1 (normalised coordinates) is legal
    g = torch.tensor([[[0.0, 0.0], [0.1, 0.0], [0.05, 0.05]]], dtype=torch.float64)
    p = g.clone()
    p[0, 2, 0] += 0.03
    assert abs(nme(p, g, 0, 1).item() - 0.03 / 3 / 0.1) < 1e-14


def test_main_gradient_at_the_switch():
    # e = t exactly: Eq. (4)'s linear branch (e <= t) holds, slope c (the quadratic branch would give 2 e = 0.4)
    g = torch.zeros(1, 1, dtype=torch.float64)
    t = torch.full((1, 1), 0.2, dtype=torch.float64)
    for e, slope in ((0.2, 3.0), (-0.2, -3.0)):
        x = torch.full((1, 1), e, dtype=torch.float64, requires_grad=True)
        kd_main_loss(x, g, t).backward()
        assert x.grad.item() == slope


def test_main_prediction_mirrored_through_the_origin():
    # pred = -gt != 0: the reflection uses sign(pred - gt), not sign(pred + gt) (which is 0 here)
    gt = torch.tensor([[0.1, -0.05]], dtype=torch.float64)
    tol = torch.tensor([[0.5, 0.3]], dtype=torch.float64)
    got = kd_main_loss(-gt, gt, tol, reduction="none")
    want = (_main_loop(-0.1, 0.1, 0.5) + _main_loop(0.05, -0.05, 0.3)) / 2  # 3 e inside the tolerant error: 0.6 and 0.3
    assert abs(got.item() - want) < 1e-15 and abs(want - 0.45) < 1e-15
