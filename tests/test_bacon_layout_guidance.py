"""Tests for lossbook.vision.bacon_layout_guidance (BACON, Chen et al. 2024, equations reconstructed; Chen, Laina &
Vedaldi 2023's inside-box loss as the special case weights=(1, 0, 0) without alignment).

There is no library implementation: the references are plain float64 loops transcribed from Eqs. (1)-(6) of the
notebook, plus the card's properties (limits, scale invariance, gradient signs) and gradcheck.
"""

import pytest
import torch

from lossbook.vision.bacon_layout_guidance import (
    BaconLoss,
    _bacon_example,
    align_cross_attention,
    bacon_loss,
    boundary_band,
    box_masks,
    latent_guidance_step,
    layout_attention_losses,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _data(B=3, side=5, K=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    attn = torch.rand(B, side * side, K, generator=g, dtype=torch.float64) + 0.05
    As = (2 * torch.randn(B, side * side, side * side, generator=g, dtype=torch.float64)).softmax(-1)
    lo = torch.randint(0, side - 2, (B, K, 2), generator=g)
    masks = box_masks(torch.cat([lo, lo + 2], -1).double() / side, side)
    return attn.to(dtype), masks, As.to(dtype)


def _dil(m, i, j, w):
    H, W = len(m), len(m[0])
    return any(m[a][b] for a in range(max(0, i - w), min(H, i + w + 1)) for b in range(max(0, j - w), min(W, j + w + 1)))


def _ref_terms(attn, masks, w=1, band_mode="outer", bd_mode="band"):
    "Eqs. (3)-(5) one sample and one object at a time, Python floats: per-sample (in, out, bd)."
    A, Ms = attn.tolist(), masks.tolist()
    B, HW, K = len(A), len(A[0]), len(A[0][0])
    H, W = len(Ms[0][0]), len(Ms[0][0][0])
    out = []
    for b in range(B):
        li = lo = lb = 0.0
        ms = [[[bool(v) for v in row] for row in Ms[b][k]] for k in range(K)]
        for k in range(K):
            col = [A[b][p][k] for p in range(HW)]
            s = sum(col)
            m = ms[k]
            dil = [[_dil(m, i, j, w) for j in range(W)] for i in range(H)]
            notm = [[not v for v in row] for row in m]
            ero = [[not _dil(notm, i, j, w) for j in range(W)] for i in range(H)]
            cell = lambda i, j: col[i * W + j]
            li += (1 - sum(cell(i, j) for i in range(H) for j in range(W) if m[i][j]) / s) ** 2
            lo += sum(cell(i, j) for i in range(H) for j in range(W) if not dil[i][j]) / s
            if bd_mode == "band":
                inner = ero if band_mode == "inner_outer" else m
                lb += sum(cell(i, j) for i in range(H) for j in range(W) if dil[i][j] and not inner[i][j]) / s
            else:
                lb += sum(cell(i, j) for jk in range(K) if jk != k for i in range(H) for j in range(W) if ms[jk][i][j]) / s
        out.append((li, lo, lb))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("w,band_mode,bd_mode", [(1, "outer", "band"), (1, "inner_outer", "band"), (2, "outer", "others"),
                                                 (0, "outer", "band")])
def test_terms_match_float64_loop(w, band_mode, bd_mode):
    attn, masks, _ = _data()
    got = layout_attention_losses(attn, masks, width=w, band_mode=band_mode, bd_mode=bd_mode, reduction="none")
    ref = _ref_terms(attn, masks, w, band_mode, bd_mode)
    for i, k in enumerate(["in", "out", "bd"]):
        torch.testing.assert_close(got[k], ref[:, i], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got["total"], ref.sum(1), rtol=1e-12, atol=1e-12)


def test_defaults():
    attn, masks, As = _data()
    ref = _ref_terms(align_cross_attention(attn, As), masks, 1, "outer", "band")
    torch.testing.assert_close(bacon_loss(attn, masks, As), ref.sum(1).mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bacon_loss(attn, masks), _ref_terms(attn, masks).sum(1).mean(), rtol=1e-12, atol=1e-12)
    d = layout_attention_losses(attn, masks)
    torch.testing.assert_close(d["total"], d["in"] + d["out"] + d["bd"])  # weights (1, 1, 1), mean reduction
    torch.testing.assert_close(d["in"], _ref_terms(attn, masks)[:, 0].mean())
    m = BaconLoss()
    assert (m.weights, m.width, m.band_mode, m.bd_mode, m.reduction) == ((1.0, 1.0, 1.0), 1, "outer", "band", "mean")
    torch.testing.assert_close(m(attn, masks, As), bacon_loss(attn, masks, As))
    torch.testing.assert_close(boundary_band(masks[0]), boundary_band(masks[0], 1, "outer"))
    torch.testing.assert_close(align_cross_attention(attn, As), align_cross_attention(attn, As, "max"))


def test_weights_and_reductions():
    attn, masks, As = _data()
    d = layout_attention_losses(attn, masks, weights=(0.5, 2.0, 3.0), reduction="none")
    torch.testing.assert_close(d["total"], 0.5 * d["in"] + 2 * d["out"] + 3 * d["bd"])
    none = bacon_loss(attn, masks, As, reduction="none")
    assert none.shape == (3,)
    torch.testing.assert_close(bacon_loss(attn, masks, As, reduction="sum"), none.sum())
    torch.testing.assert_close(bacon_loss(attn, masks, As, reduction="mean"), none.mean())
    # Chen et al. 2023: L_in only, raw maps
    torch.testing.assert_close(bacon_loss(attn, masks, weights=(1, 0, 0), reduction="none"), _ref_terms(attn, masks)[:, 0])


def test_shared_masks_and_float_masks():
    attn, masks, _ = _data()
    shared = masks[0]
    a = layout_attention_losses(attn, shared, reduction="none")["total"]
    b = layout_attention_losses(attn, shared.expand(3, *shared.shape), reduction="none")["total"]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(layout_attention_losses(attn, masks.double())["total"], layout_attention_losses(attn, masks)["total"])


# ---------------------------------------------------------------- properties from the card
def test_limits_and_scale_invariance():
    M = box_masks(torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]), 4)
    inside = M.reshape(2, 16).T[None].double()
    d = layout_attention_losses(inside, M)
    assert d["in"] == 0 and d["out"] == 0
    outside = M.flip(0).reshape(2, 16).T[None].double()
    torch.testing.assert_close(layout_attention_losses(outside, M)["in"], torch.tensor(2.0, dtype=torch.float64))
    attn, masks, As = _data()
    torch.testing.assert_close(bacon_loss(3.7 * attn, masks, As), bacon_loss(attn, masks, As))
    torch.testing.assert_close(bacon_loss(3.7 * attn, masks), bacon_loss(attn, masks))


def test_gradient_sign_of_l_in():
    attn, masks, _ = _data()
    attn.requires_grad_(True)
    layout_attention_losses(attn, masks, weights=(1, 0, 0))["total"].backward()
    M = masks.reshape(3, 2, -1).transpose(1, 2)
    assert (attn.grad[M] < 0).all() and (attn.grad[~M] > 0).all()


def test_alignment_identity_and_nonnegative():
    attn, _, As = _data()
    eye = torch.eye(25, dtype=torch.float64).expand(3, 25, 25)
    torch.testing.assert_close(align_cross_attention(attn, eye), attn / attn.amax(1, keepdim=True))
    al = align_cross_attention(attn, As)
    assert (al >= 0).all()
    torch.testing.assert_close(al.amax(1), torch.ones(3, 2, dtype=torch.float64))
    torch.testing.assert_close(align_cross_attention(attn, As, "sum").sum(1), torch.ones(3, 2, dtype=torch.float64))
    torch.testing.assert_close(align_cross_attention(attn, None, None), attn)
    torch.testing.assert_close(align_cross_attention(attn, As, None), As @ attn)


def test_alignment_orientation_and_flat_self_attention():
    "Row p of A_s is query p: ã(p) = Σ_q A_s(p, q) a(q). A uniform A_s flattens every map (the notebook's gate 4)."
    attn, _, _ = _data()
    perm = torch.randperm(25, generator=torch.Generator().manual_seed(1))
    P = torch.eye(25, dtype=torch.float64)[perm].expand(3, 25, 25)  # query p attends only to key perm[p]
    torch.testing.assert_close(align_cross_attention(attn, P, None), attn[:, perm])
    uniform = torch.full((3, 25, 25), 1 / 25, dtype=torch.float64)
    torch.testing.assert_close(align_cross_attention(attn, uniform), torch.ones_like(attn))


def test_box_masks_and_band():
    M = box_masks(torch.tensor([[0.25, 0.25, 0.625, 0.625], [0.0, 0.5, 1.0, 0.75]]), 8)
    assert M.dtype == torch.bool and M.sum((1, 2)).tolist() == [9, 16]
    assert box_masks(torch.tensor([[[0.0, 0.0, 0.5, 0.5]]] * 2), 4).shape == (2, 1, 4, 4)
    assert boundary_band(M, 0).sum() == 0
    assert boundary_band(M[:1], 1).sum() == 16 and boundary_band(M[:1], 1, "inner_outer").sum() == 24
    assert boundary_band(M[:1], 2).sum() == 49 - 9
    # a box on the image border: the border is not a boundary
    edge = box_masks(torch.tensor([[0.0, 0.0, 0.5, 0.5]]), 4)
    assert boundary_band(edge, 1, "inner_outer").sum() == 9 - 1


def test_gradcheck():
    attn, masks, As = _data(B=2, side=4)
    attn.requires_grad_(True)
    As.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, s: bacon_loss(a, masks, s, bd_mode="others", reduction="none"), (attn, As))
    assert torch.autograd.gradcheck(lambda a: layout_attention_losses(a, masks, reduction="none")["total"], (attn,))


def test_guidance_step_lowers_the_loss():
    torch.manual_seed(0)
    M = box_masks(torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]] * 4, dtype=torch.float64), 6)
    z = torch.randn(4, 36, 2, dtype=torch.float64)
    f = lambda z: bacon_loss(z.softmax(1), M, reduction="none")
    z1 = latent_guidance_step(z, f, 0.5, n_iter=3)
    assert not z1.requires_grad and (f(z1) < f(z)).all()
    assert torch.equal(latent_guidance_step(z, f, 0.5, n_iter=0), z)
    # normalize=True: each sample moves by step * rms-normalised gradient, i.e. an RMS step of exactly `step`
    assert torch.allclose((latent_guidance_step(z, f, 0.5) - z).pow(2).flatten(1).mean(1).sqrt(), torch.full((4,), 0.5, dtype=torch.float64))
    # raw gradient, clipped
    x = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).sum(), x)
    torch.testing.assert_close(latent_guidance_step(z, f, 0.1, normalize=False), z - 0.1 * g)
    d = latent_guidance_step(z, f, 1.0, normalize=False, max_grad_norm=1e-3) - z
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.full((4,), 1e-3, dtype=torch.float64))
    steps = torch.tensor([0.0, 0.5, 0.5, 0.5], dtype=torch.float64)
    assert torch.equal(latent_guidance_step(z, f, steps)[0], z[0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_devices_dtypes(device, dtype):
    (attn, masks, As), _ = _bacon_example(5, dtype, device)
    v = bacon_loss(attn, masks, As)
    assert v.dtype == dtype and v.device.type == device and torch.isfinite(v)


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs():
    attn, masks, As = _data()
    with pytest.raises(ValueError, match=r"^attn:"):
        layout_attention_losses(-attn, masks)
    with pytest.raises(ValueError, match=r"^attn:"):
        layout_attention_losses(attn[0], masks)
    bad = attn.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^attn:"):
        bacon_loss(bad, masks)
    with pytest.raises(ValueError, match=r"^attn:"):
        bacon_loss(attn[:0], masks[:0])
    with pytest.raises(ValueError, match=r"^masks:"):
        layout_attention_losses(attn, masks[:2])
    with pytest.raises(ValueError, match=r"^masks:"):
        layout_attention_losses(attn, masks[:, :1])
    with pytest.raises(ValueError, match=r"^masks:"):
        layout_attention_losses(attn, masks[..., :4, :])
    with pytest.raises(ValueError, match=r"^masks:"):
        layout_attention_losses(attn, masks.double() * 2)
    with pytest.raises(ValueError, match=r"^masks:"):
        layout_attention_losses(attn, masks.long())
    with pytest.raises(ValueError, match=r"^masks:"):
        layout_attention_losses(attn, masks[0, 0])
    with pytest.raises(ValueError, match=r"^band:"):
        layout_attention_losses(attn, masks, band=masks[:, :1])
    with pytest.raises(ValueError, match=r"^self_attn:"):
        bacon_loss(attn, masks, As[:, :5])
    with pytest.raises(ValueError, match=r"^self_attn:"):
        bacon_loss(attn, masks, As[:2])
    with pytest.raises(ValueError, match=r"^cross_attn:"):
        align_cross_attention(attn.long(), As)
    with pytest.raises(ValueError, match=r"^weights"):
        bacon_loss(attn, masks, weights=(1, 1))
    with pytest.raises(ValueError, match=r"^weights\[1\]"):
        bacon_loss(attn, masks, weights=(1, -1, 1))
    with pytest.raises(ValueError, match=r"^width:"):
        bacon_loss(attn, masks, width=-1)
    with pytest.raises(ValueError, match=r"^width:"):
        boundary_band(masks, 1.5)
    with pytest.raises(ValueError, match=r"^band_mode:"):
        bacon_loss(attn, masks, band_mode="inner")
    with pytest.raises(ValueError, match=r"^mode:"):
        boundary_band(masks, 1, "inner")
    with pytest.raises(ValueError, match=r"^bd_mode:"):
        bacon_loss(attn, masks, bd_mode="edge")
    with pytest.raises(ValueError, match=r"^normalize:"):
        align_cross_attention(attn, As, "l2")
    with pytest.raises(ValueError, match=r"reduction"):
        bacon_loss(attn, masks, reduction="avg")
    with pytest.raises(ValueError, match=r"^boxes:"):
        box_masks(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match=r"^boxes:"):
        box_masks(torch.tensor([[0.0, float("nan"), 1.0, 1.0]]), 4)
    with pytest.raises(ValueError, match=r"^size:"):
        box_masks(torch.zeros(2, 4), 0)
    with pytest.raises(ValueError, match=r"^n_iter:"):
        latent_guidance_step(attn, lambda z: z.sum(), 0.1, n_iter=-1)
    with pytest.raises(ValueError, match=r"^max_grad_norm:"):
        latent_guidance_step(attn, lambda z: z.pow(2).sum(), 0.1, normalize=False, max_grad_norm=0.0)
    with pytest.raises(ValueError, match=r"^weights"):
        BaconLoss(weights=(1, 2))


def test_eps_defaults_only_floor_empty_maps():
    "eps = 1e-12 floors S(a_k) and the normalisers: a map of total mass 1e-9 keeps its exact ratios; an empty map costs 1."
    attn, masks, As = _data()
    tiny = attn * 1e-11  # total mass ~1e-9 per map: above the 1e-12 floor
    torch.testing.assert_close(layout_attention_losses(tiny, masks)["total"], layout_attention_losses(attn, masks)["total"])
    torch.testing.assert_close(align_cross_attention(tiny, None, "max"), attn / attn.amax(1, keepdim=True))
    zero = torch.zeros_like(attn)
    d = layout_attention_losses(zero, masks, reduction="none")
    torch.testing.assert_close(d["in"], torch.full((3,), 2.0, dtype=torch.float64))  # 1 per object, no NaN
    assert torch.isfinite(align_cross_attention(zero, As)).all()


# ---------------------------------------------------------------- pinned by the mutation pass (issue #7)
def test_messages_name_the_argument_exactly():
    attn, masks, As = _data()
    nan = As.clone()
    nan[0, 0, 0] = float("nan")
    cases = [
        (lambda: bacon_loss(attn[0], masks), r"^attn: expected 3 dimensions"),
        (lambda: bacon_loss(attn.long(), masks), r"^attn: expected a floating-point tensor"),
        (lambda: align_cross_attention(attn[0]), r"^cross_attn: expected 3 dimensions"),
        (lambda: align_cross_attention(attn, As[..., None]), r"^self_attn: expected 3 dimensions"),
        (lambda: align_cross_attention(attn, As[0]), r"^self_attn: expected 3 dimensions"),
        (lambda: align_cross_attention(attn, nan), r"^self_attn: expected finite values"),
        (lambda: latent_guidance_step(attn.long(), lambda z: z.sum(), 0.1), r"^z: expected a floating-point tensor"),
        (lambda: latent_guidance_step(attn * float("nan"), lambda z: z.sum(), 0.1), r"^z: expected finite values"),
        (lambda: latent_guidance_step(attn, lambda z: z.sum(), 0.1, n_iter=1.5), r"^n_iter:"),
        (lambda: latent_guidance_step(attn, lambda z: z.sum(), 0.1, n_iter=True), r"^n_iter:"),
        (lambda: BaconLoss(band_mode="inner"), r"^band_mode:"),
        (lambda: BaconLoss(bd_mode="edge"), r"^bd_mode:"),
    ]
    for call, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            call()


def test_width_default_pinned_with_unequal_weights():
    # with weights (1, 1, 1) and the outer band, L_out + L_bd = S((1 - M) a)/S(a) does not depend on w: pin w with
    # unequal weights
    attn, masks, As = _data()
    w = (1.0, 2.0, 0.5)
    d = bacon_loss(attn, masks, As, weights=w)
    assert torch.equal(d, bacon_loss(attn, masks, As, weights=w, width=1))
    assert not torch.allclose(d, bacon_loss(attn, masks, As, weights=w, width=2))
    assert torch.equal(bacon_loss(attn, masks, As), bacon_loss(attn, masks, As, width=2))  # the identity above


def test_module_passes_every_setting():
    attn, masks, As = _data()
    for kw in [dict(reduction="sum"), dict(reduction="none"), dict(weights=(0.5, 2.0, 3.0), width=2, band_mode="inner_outer"),
               dict(bd_mode="others", weights=(1.0, 0.0, 2.0), reduction="none")]:
        torch.testing.assert_close(BaconLoss(**kw)(attn, masks, As), bacon_loss(attn, masks, As, **kw), rtol=0, atol=0)


def test_max_normalisation_makes_tiny_maps_exact():
    # maps of total mass ~1e-13 (below the 1e-12 floor of S(a_k)) are first divided by max(max a_k, eps) (Eq. 1):
    # S(ã_k) ~ 0.1 is far above the floor and the loss is that of the unscaled maps; without the normalisation the
    # floor would shrink every ratio
    attn, masks, _ = _data()
    tiny = attn * 1e-14
    torch.testing.assert_close(bacon_loss(tiny, masks, reduction="none"), bacon_loss(attn, masks, reduction="none"),
                               rtol=1e-12, atol=0)


def test_guidance_step_exact_values():
    torch.manual_seed(1)
    M = box_masks(torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], dtype=torch.float64), 6)
    z = torch.randn(3, 36, 2, dtype=torch.float64)
    f = lambda z: bacon_loss(z.softmax(1), M, reduction="none")
    x = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).sum(), x)
    # the step is cast to z's dtype: 0.1 in float64, not float32's 0.100000001
    assert torch.equal(latent_guidance_step(z, f, 0.1, normalize=False), z - 0.1 * g)
    # a clip above every gradient's norm leaves the gradients unscaled (the factor is capped at 1)
    big = 10 * g.flatten(1).norm(dim=1).max().item()
    torch.testing.assert_close(latent_guidance_step(z, f, 0.1, normalize=False, max_grad_norm=big), z - 0.1 * g,
                               rtol=0, atol=0)


def test_box_masks_edges_sizes_and_float64_centres():
    # a cell is in a box when its centre is: half-open [x0, x1) on centres (i + 1/2)/r, exact on the grid
    M = box_masks(torch.tensor([[0.125, 0.375, 0.625, 0.875]], dtype=torch.float64), 4)[0]
    want = torch.zeros(4, 4, dtype=torch.bool)
    want[1:3, 0:2] = True  # rows (y) 1, 2; columns (x) 0, 1
    assert torch.equal(M, want)
    # centres in float64: 3.5/5 = 0.7 exactly as the edge 0.7 (float32 would round the centre to 0.69999999)
    M = box_masks(torch.tensor([[0.7, 0.7, 1.0, 1.0]], dtype=torch.float64), 5)[0]
    assert M.sum() == 4 and M[3:, 3:].all()
    # the smallest grid, one cell
    assert box_masks(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), 1).tolist() == [[[True]]]
    assert box_masks(torch.tensor([[0.0, 0.0, 0.4, 1.0]]), 1).tolist() == [[[False]]]
    for bad in (True, 2.0, 0, -1):
        with pytest.raises(ValueError, match=r"^size: expected a positive integer"):
            box_masks(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), bad)


def test_boundary_band_layouts_thresholds_and_messages():
    M = box_masks(torch.tensor([[0.25, 0.25, 0.625, 0.625]]), 8)[0]  # one (H, W) mask: 2-D is legal
    b = boundary_band(M, 1)
    assert b.shape == (8, 8) and b.sum() == 16
    f = M.double() * 0.9 + (~M).double() * 0.3  # floating: thresholded at 1/2 (0.3 is outside, 0.9 inside)
    assert torch.equal(boundary_band(f, 1), b)
    assert torch.equal(boundary_band(M.double() * 0.5, 1), torch.zeros_like(b))  # 0.5 is not above 1/2
    assert torch.equal(boundary_band(M[None, None], 1)[0, 0], b)  # 4-D
    with pytest.raises(ValueError, match=r"^masks: expected 2 or 3 or 4 dimensions"):
        boundary_band(M[0], 1)
    with pytest.raises(ValueError, match=r"^masks: expected 2 or 3 or 4 dimensions"):
        boundary_band(M[None, None, None], 1)
    with pytest.raises(ValueError, match=r"^masks: expected finite values"):
        boundary_band(M.double() * float("nan"), 1)


def test_float_masks_threshold_the_dilation_and_band_at_every_width():
    # L_out and L_bd use dilate(M > 1/2) and the band of M > 1/2; L_in uses the soft mask itself (Eq. 3)
    attn, masks, _ = _data()
    soft = masks.double() * 0.8 + (~masks).double() * 0.3
    half = masks.double() * 0.5 + (~masks).double() * 0.25  # nothing above 1/2: an empty box
    for w in (0, 1, 2):
        got = layout_attention_losses(attn, soft, width=w, reduction="none")
        hard = layout_attention_losses(attn, masks, width=w, reduction="none")
        torch.testing.assert_close(got["out"], hard["out"], rtol=1e-14, atol=0)
        torch.testing.assert_close(got["bd"], hard["bd"], rtol=1e-14, atol=0)
        Mk = soft.reshape(3, 2, -1).transpose(1, 2)
        torch.testing.assert_close(got["in"], ((1 - (Mk * attn).sum(1) / attn.sum(1)) ** 2).sum(1), rtol=1e-14, atol=0)
        empty = layout_attention_losses(attn, half, width=w, reduction="none")
        torch.testing.assert_close(empty["out"], torch.full((3,), 2.0, dtype=torch.float64), rtol=1e-14, atol=0)
        assert torch.equal(empty["bd"], torch.zeros(3, dtype=torch.float64))


def test_layout_defaults_and_checks():
    attn, masks, _ = _data()
    d = layout_attention_losses(attn, masks)
    explicit = layout_attention_losses(attn, masks, None, 1, "outer", "band", (1.0, 1.0, 1.0), 1e-12, "mean")
    for k in ("in", "out", "bd", "total"):
        assert torch.equal(d[k], explicit[k]), k
    assert not torch.allclose(d["out"], layout_attention_losses(attn, masks, width=2)["out"])
    with pytest.raises(ValueError, match=r"^attn: expected a floating-point tensor"):
        layout_attention_losses((attn * 10).long(), masks)
    # floating masks: (K, H, W) shared by the batch is legal, (H, W) is not
    shared = masks[0].double()
    torch.testing.assert_close(layout_attention_losses(attn, shared, reduction="none")["total"],
                               layout_attention_losses(attn, masks[0], reduction="none")["total"], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"^masks: expected 3 or 4 dimensions"):
        layout_attention_losses(attn, shared[0])
    with pytest.raises(ValueError, match=r"^masks: expected 3 or 4 dimensions"):
        layout_attention_losses(attn, masks.double()[None])
