"""Tests of lossbook.vision.ms_ssim_loss (card 11): pytorch-msssim as the reference (values and gradients, float64),
scikit-image and torchmetrics where their conventions allow, gradcheck, the metric's properties, anti-correlated images,
reductions, functional == module, dtypes and bad inputs."""

import pytest
import torch
import torch.nn.functional as F

from lossbook.vision.ms_ssim_loss import (
    MS_SSIM_WEIGHTS,
    MixedMSSSIML1Loss,
    MSSSIMLoss,
    gaussian_window,
    mixed_ms_ssim_l1_loss,
    ms_ssim,
    ms_ssim_loss,
    ms_ssim_terms,
    ssim,
    ssim_map,
)

F64 = torch.float64


def _pair(n=3, c=1, h=64, w=None, seed=0, noise=0.2, dtype=F64, smooth=False):
    "A batch of images in [0, 1] and a noisy version of it."
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w or h, generator=g, dtype=dtype)
    if smooth:  # natural-looking: blurred noise, stretched to [0, 1]
        x = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), 5, 1)
        x = (x - x.amin((2, 3), keepdim=True)) / (x.amax((2, 3), keepdim=True) - x.amin((2, 3), keepdim=True))
    y = (x + noise * torch.randn(x.shape, generator=g, dtype=dtype)).clamp(0, 1)
    return x, y


def _renorm(M):
    s = sum(MS_SSIM_WEIGHTS[:M])
    return [b / s for b in MS_SSIM_WEIGHTS[:M]]


# ---------------------------------------------------------------- reference: pytorch-msssim 1.0.0
@pytest.fixture(scope="module")
def pm():
    return pytest.importorskip("pytorch_msssim")


# its ms_ssim asserts min side > (win-1)*16 whatever the number of scales: 176 with win 11, 64 with win 3
CASES = [(176, 11, 5), (176, 11, 3), (64, 3, 5), (64, 3, 3), (65, 3, 4)]


@pytest.mark.parametrize("side,win,M", CASES)
def test_ms_ssim_equals_pytorch_msssim(pm, side, win, M):
    x, y = _pair(3, 2, side, side + 3, seed=side + M)
    xo, xr, xs = (x.clone().requires_grad_() for _ in range(3))
    w = None if M == 5 else _renorm(M)
    ours = ms_ssim(xo, y, win_size=win, scales=M, reduction="none")
    ref = pm.ms_ssim(xr, y, data_range=1.0, win_size=win, weights=w, size_average=False)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    gw = torch.randn(3, dtype=F64)  # a non-trivial upstream gradient
    (ours * gw).sum().backward()
    (ref * gw).sum().backward()
    # gradients: within 1e-5 absolute, and within 1e-4 of the largest gradient (the float32 window, below)
    torch.testing.assert_close(xo.grad, xr.grad, rtol=0, atol=min(1e-5, 1e-4 * xr.grad.abs().max().item()))
    # the ~1e-6 gap is only pytorch-msssim's float32 window: given ours, the two agree to round-off
    win_t = gaussian_window(win, 1.5, F64).view(1, 1, 1, -1).repeat(2, 1, 1, 1)
    same = pm.ms_ssim(xs, y, data_range=1.0, win=win_t, weights=w, size_average=False)
    torch.testing.assert_close(ours, same, rtol=0, atol=1e-13)
    (same * gw).sum().backward()
    torch.testing.assert_close(xo.grad, xs.grad, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("side,win", [(64, 11), (40, 7), (33, 3)])
def test_ssim_equals_pytorch_msssim(pm, side, win):
    x, y = _pair(4, 3, side, side + 5, seed=win)
    xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = ssim(xo, y, win_size=win, reduction="none")
    ref = pm.ssim(xr, y, data_range=1.0, win_size=win, size_average=False)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(xo.grad, xr.grad, rtol=0, atol=min(1e-5, 1e-4 * xr.grad.abs().max().item()))
    # size_average=True is the mean over images
    torch.testing.assert_close(ssim(x, y, win_size=win), pm.ssim(x, y, data_range=1.0, win_size=win), rtol=0, atol=1e-5)


def test_float32_against_pytorch_msssim(pm):
    "In float32 both accumulate round-off differently (E[x²] - μ² cancels): a few 1e-6, at most ~1e-5."
    x, y = _pair(4, 1, 176, dtype=torch.float32, seed=3)
    torch.testing.assert_close(ms_ssim(x, y, reduction="none"),
                               pm.ms_ssim(x, y, data_range=1.0, size_average=False), rtol=0, atol=5e-5)


def test_anticorrelated_finite_and_like_pytorch_msssim(pm):
    "y = 1 - x: every cs is negative. Ours: value 0, finite (zero) gradient; pytorch-msssim 1.0.0 does the same."
    x = torch.rand(3, 1, 190, 190, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert (ssim(x, 1 - x, reduction="none") < -0.9).all()
    y_ours, y_ref = (1 - x).requires_grad_(), (1 - x).requires_grad_()
    v = ms_ssim(x, y_ours, reduction="none")
    v.sum().backward()
    r = pm.ms_ssim(x, y_ref, data_range=1.0, size_average=False)
    r.sum().backward()
    assert torch.isfinite(v).all() and torch.isfinite(y_ours.grad).all()
    torch.testing.assert_close(v, torch.zeros(3, dtype=F64))
    torch.testing.assert_close(v, r)
    assert y_ours.grad.abs().max() == 0 and y_ref.grad.abs().max() == 0
    # the loss is 1 there, with the same dead zone
    torch.testing.assert_close(ms_ssim_loss(x, 1 - x), torch.tensor(1.0, dtype=F64))


def test_anticorrelated_small_images_and_simple():
    "The same at the sizes we train on, and 'simple' ((t+1)/2) keeps a finite, non-zero gradient."
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1), dtype=F64)
    for mode in ("relu", "simple"):
        y = (1 - x).requires_grad_()
        v = ms_ssim(x, y, win_size=5, scales=3, nonneg=mode)
        v.backward()
        assert torch.isfinite(v) and torch.isfinite(y.grad).all()
        if mode == "simple":
            assert 0 < v < 0.5 and y.grad.abs().max() > 0
    with pytest.raises(ValueError, match="negative"):
        ms_ssim(x, 1 - x, win_size=5, scales=3, nonneg="none")


# ---------------------------------------------------------------- other references
def test_ssim_equals_skimage():
    skm = pytest.importorskip("skimage.metrics")
    x, y = _pair(4, 1, 48, 40, seed=5, smooth=True)
    ours = ssim(x, y, reduction="none")
    ref = torch.tensor([skm.structural_similarity(a[0].numpy(), b[0].numpy(), gaussian_weights=True, sigma=1.5,
                                                  use_sample_covariance=False, data_range=1.0) for a, b in zip(x, y)])
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


def test_ssim_map_equals_torchmetrics_cropped():
    "torchmetrics reflect-pads and averages the whole map; cropped to the valid positions it is ours."
    tm = pytest.importorskip("torchmetrics.functional.image")
    x, y = _pair(3, 2, 50, 44, seed=6, smooth=True)
    _, full = tm.structural_similarity_index_measure(y, x, data_range=1.0, reduction="none", return_full_image=True)
    torch.testing.assert_close(ssim_map(y, x), full[..., 5:-5, 5:-5], rtol=0, atol=1e-12)


def test_ms_ssim_close_to_torchmetrics():
    "torchmetrics' MS-SSIM differs only in its coarsest factor (reflect-padded border included): ~1e-3 at 256 px."
    tm = pytest.importorskip("torchmetrics.functional.image")
    x, y = _pair(4, 1, 256, seed=7, noise=0.1, smooth=True)
    ref = tm.multiscale_structural_similarity_index_measure(y, x, data_range=1.0, reduction="none")
    torch.testing.assert_close(ms_ssim(y, x, reduction="none"), ref, rtol=0, atol=2e-3)


# ---------------------------------------------------------------- gradcheck
def test_gradcheck_ms_ssim():
    "32×32, win 3, 3 scales, float64; fast mode (random projections of the Jacobian) keeps it under a second."
    x, y = _pair(2, 1, 32, seed=8, noise=0.3)
    assert torch.autograd.gradcheck(lambda a, b: ms_ssim(a, b, win_size=3, scales=3, reduction="none"),
                                    (x.requires_grad_(), y.requires_grad_()), fast_mode=True)
    x, y = _pair(1, 1, 32, seed=9, noise=0.3)  # the full Jacobian for one image and one input
    assert torch.autograd.gradcheck(lambda t: ms_ssim(x, t, win_size=3, scales=3), (y.requires_grad_(),))


def test_gradcheck_ssim_both_inputs():
    x, y = _pair(2, 2, 12, 14, seed=9, noise=0.3)
    assert torch.autograd.gradcheck(lambda a, b: ssim(a, b, win_size=5, reduction="none"),
                                    (x.requires_grad_(), y.requires_grad_()))


# ---------------------------------------------------------------- properties
def test_identity_and_zero_gradient():
    x, _ = _pair(3, 2, 40, seed=10)
    torch.testing.assert_close(ms_ssim(x, x, win_size=5, scales=3, reduction="none"), torch.ones(3, dtype=F64))
    y = x.clone().requires_grad_()
    loss = ms_ssim_loss(y, x, win_size=5, scales=3)
    loss.backward()
    assert abs(loss.item()) < 1e-14
    assert y.grad.abs().max() < 1e-12


def test_symmetric_and_at_most_one():
    x, y = _pair(4, 1, 40, seed=11)
    a, b = ms_ssim(x, y, win_size=5, scales=3, reduction="none"), ms_ssim(y, x, win_size=5, scales=3, reduction="none")
    torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    assert (a < 1).all() and (a >= 0).all()


def test_one_scale_is_ssim():
    x, y = _pair(3, 2, 30, seed=12, noise=0.1)
    torch.testing.assert_close(ms_ssim(x, y, win_size=7, scales=1, reduction="none"),
                               ssim(x, y, win_size=7, reduction="none"), rtol=0, atol=1e-14)


def test_common_scaling_invariance():
    x, y = _pair(2, 1, 40, seed=13)
    for a in (255.0, 0.01):
        torch.testing.assert_close(ms_ssim(a * x, a * y, data_range=a, win_size=5, scales=3, reduction="none"),
                                   ms_ssim(x, y, win_size=5, scales=3, reduction="none"), rtol=0, atol=1e-10)


def test_offset_changes_only_luminance():
    x, y = _pair(2, 1, 40, seed=14, noise=0.1)
    cs0, s0 = ms_ssim_terms(x, y, win_size=5, scales=3)
    cs1, s1 = ms_ssim_terms(x, y + 0.2, win_size=5, scales=3)
    torch.testing.assert_close(cs1, cs0, rtol=0, atol=1e-9)
    assert (s1 < s0 - 1e-3).all()


def test_monotone_in_noise():
    vals = []
    for sd in (0.02, 0.05, 0.1, 0.2, 0.4):
        x, y = _pair(6, 1, 48, seed=15, noise=sd, smooth=True)
        vals.append(ms_ssim(x, y, win_size=5, scales=3).item())
    assert all(a > b for a, b in zip(vals, vals[1:])), vals


def test_weights_renormalised_and_explicit():
    x, y = _pair(2, 1, 40, seed=16)
    torch.testing.assert_close(ms_ssim(x, y, win_size=5, scales=3), ms_ssim(x, y, win_size=5, weights=_renorm(3)))
    # unnormalised weights are used as given: doubling every exponent squares the value
    torch.testing.assert_close(ms_ssim(x, y, win_size=5, weights=[2 * b for b in _renorm(3)], reduction="none"),
                               ms_ssim(x, y, win_size=5, scales=3, reduction="none") ** 2)


def test_terms_match_definition():
    "ms_ssim is the weighted product of relu'd terms from ms_ssim_terms (Eq. 5), averaged over channels."
    x, y = _pair(3, 2, 40, seed=17)
    cs, s = ms_ssim_terms(x, y, win_size=5, scales=3)
    w = torch.tensor(_renorm(3), dtype=F64).view(-1, 1, 1)
    manual = (torch.cat([cs[:-1], s[None]]).relu() ** w).prod(0).mean(1)
    torch.testing.assert_close(ms_ssim(x, y, win_size=5, scales=3, reduction="none"), manual)
    # scale 1's cs and the last scale's SSIM are ssim()'s cs and value on the pooled images
    _, cs1 = ssim(x, y, win_size=5, reduction="none", return_cs=True)
    torch.testing.assert_close(cs[0].mean(1), cs1)


def test_odd_sizes_pool_like_reference():
    "Odd sides are zero-padded before 2x2 pooling: 33 -> 17 -> 9, still >= win 5 at 3 scales."
    x, y = _pair(2, 1, 33, 35, seed=18)
    v = ms_ssim(x, y, win_size=5, scales=3, reduction="none")
    assert torch.isfinite(v).all()
    with pytest.raises(ValueError, match="too small"):
        ms_ssim(x[..., :32, :32][..., :16, :16], y[..., :16, :16], win_size=5, scales=3)


# ---------------------------------------------------------------- API: reductions, module, dtypes, device
def test_reductions():
    x, y = _pair(5, 1, 40, seed=19)
    kw = dict(win_size=5, scales=3)
    none = ms_ssim_loss(y, x, reduction="none", **kw)
    assert none.shape == (5,)
    torch.testing.assert_close(ms_ssim_loss(y, x, **kw), none.mean())
    torch.testing.assert_close(ms_ssim_loss(y, x, reduction="sum", **kw), none.sum())
    torch.testing.assert_close(none, 1 - ms_ssim(y, x, reduction="none", **kw))
    s_none = ssim(y, x, reduction="none")
    torch.testing.assert_close(ssim(y, x, reduction="sum"), s_none.sum())
    torch.testing.assert_close(ms_ssim(y, x, reduction="sum", **kw), ms_ssim(y, x, reduction="none", **kw).sum())


def test_module_equals_functional():
    x, y = _pair(4, 3, 40, seed=20)
    for red in ("mean", "sum", "none"):
        m = MSSSIMLoss(win_size=5, scales=3, reduction=red)
        torch.testing.assert_close(m(y, x), ms_ssim_loss(y, x, reduction=red, win_size=5, scales=3))
    m = MSSSIMLoss(data_range=255, win_size=3, sigma=1.0, weights=[0.5, 0.5], K=(0.02, 0.05), nonneg="simple")
    torch.testing.assert_close(m(255 * y, 255 * x), ms_ssim_loss(255 * y, 255 * x, data_range=255, win_size=3, sigma=1.0,
                                                                 weights=[0.5, 0.5], K=(0.02, 0.05), nonneg="simple"))
    assert "scales=2" in repr(m)


def test_mixed_loss():
    x, y = _pair(4, 1, 40, seed=21)
    kw = dict(win_size=5, scales=3)
    mix = MixedMSSSIML1Loss(0.84, reduction="none", **kw)
    expect = 0.84 * ms_ssim_loss(y, x, reduction="none", **kw) + 0.16 * (y - x).abs().flatten(1).mean(1)
    torch.testing.assert_close(mix(y, x), expect)
    torch.testing.assert_close(MixedMSSSIML1Loss(1.0, **kw)(y, x), MSSSIMLoss(**kw)(y, x))
    with pytest.raises(ValueError, match="alpha"):
        MixedMSSSIML1Loss(1.5)


def test_dtypes_and_device(dtype, device):
    x, y = _pair(3, 1, 40, seed=22)
    x, y = x.to(device, dtype), y.to(device, dtype).requires_grad_()
    v = ms_ssim_loss(y, x, win_size=5, scales=3)
    v.backward()
    assert v.dtype == dtype and v.device.type == device.type and y.grad.dtype == dtype
    ref = ms_ssim_loss(y.detach().double().cpu(), x.double().cpu(), win_size=5, scales=3)
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    assert abs(v.item() - ref.item()) < tol


def test_long_sides_and_separable_filtering():
    "Long sides: the same SSIM map as a 2-D convolution with the full window; the two 1-D passes on any leading shape."
    x, y = _pair(1, 1, 40, 1100, seed=23, noise=0.1)
    g = gaussian_window(11, 1.5, F64)
    k = (g[:, None] * g[None, :]).view(1, 1, 11, 11)
    mu_x, mu_y = F.conv2d(x, k), F.conv2d(y, k)
    sxx, syy, sxy = F.conv2d(x * x, k) - mu_x**2, F.conv2d(y * y, k) - mu_y**2, F.conv2d(x * y, k) - mu_x * mu_y
    C1, C2 = 0.01**2, 0.03**2
    ref = ((2 * mu_x * mu_y + C1) * (2 * sxy + C2) / ((mu_x**2 + mu_y**2 + C1) * (sxx + syy + C2)))
    torch.testing.assert_close(ssim_map(x, y), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(ssim_map(x.mT, y.mT), ref.mT, rtol=0, atol=1e-12)  # the tall side
    from lossbook.vision.ms_ssim_loss import _blur
    z = torch.rand(5, 2, 3, 70, 90, dtype=F64)
    torch.testing.assert_close(_blur(z, g), F.conv2d(z.view(30, 1, 70, 90), k).view(5, 2, 3, 60, 80), rtol=0, atol=1e-13)
    g5 = gaussian_window(5, 1.5, torch.float32)
    k5 = (g5[:, None] * g5[None, :]).view(1, 1, 5, 5)
    z32 = z.float()
    torch.testing.assert_close(_blur(z32, g5), F.conv2d(z32.view(30, 1, 70, 90), k5).view(5, 2, 3, 66, 86),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("side,c", [(256, 3), (512, 3)])
def test_colour_and_large_images_equal_pytorch_msssim(pm, side, c):
    "The benchmark's colour cases: values and gradients equal to pytorch-msssim given the same window (float64)."
    x, y = _pair(1, c, side, seed=side, noise=0.1)
    xo, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = ms_ssim_loss(xo, y, reduction="none")
    win_t = gaussian_window(11, 1.5, F64).view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ref = 1 - pm.ms_ssim(xs, y, data_range=1.0, win=win_t, size_average=False)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(xo.grad, xs.grad, rtol=1e-9, atol=1e-15)


def test_gaussian_window():
    g = gaussian_window(7, 1.2, F64)
    a = torch.arange(7, dtype=F64) - 3
    e = torch.exp(-a**2 / (2 * 1.2**2))
    torch.testing.assert_close(g, e / e.sum())
    assert gaussian_window(5).dtype == torch.get_default_dtype()


# ---------------------------------------------------------------- bad inputs
def test_too_small_for_scales():
    x = torch.rand(2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"32×32 are too small for 5 scale\(s\) with win_size 11.*161"):
        ms_ssim(x, x)
    with pytest.raises(ValueError, match="= 33"):
        ms_ssim(x, x, win_size=9, scales=3)
    ms_ssim(x, x, win_size=7, scales=3)  # (7-1)·4+1 = 25 <= 32: fine
    with pytest.raises(ValueError, match="too small"):
        ssim(torch.rand(1, 1, 10, 40), torch.rand(1, 1, 10, 40))  # 10 < 11


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite(bad):
    x = torch.rand(2, 1, 32, 32)
    y = x.clone()
    y[0, 0, 3, 4] = bad
    with pytest.raises(ValueError, match="finite"):
        ms_ssim(x, y, win_size=5, scales=3)
    with pytest.raises(ValueError, match="finite"):
        ssim(y, x)
    with pytest.raises(ValueError, match="finite"):
        MSSSIMLoss(win_size=5, scales=3)(y, x)


def test_shapes_dims_dtypes():
    x = torch.rand(2, 1, 32, 32)
    with pytest.raises(ValueError, match="same shape"):
        ms_ssim(x, torch.rand(2, 1, 32, 31), win_size=5, scales=3)
    with pytest.raises(ValueError, match="same shape"):
        ms_ssim(x, torch.rand(1, 1, 32, 32), win_size=5, scales=3)  # no silent broadcast
    with pytest.raises(ValueError, match="expected 4 dimensions"):
        ms_ssim(x[0], x[0], win_size=5, scales=3)
    with pytest.raises(ValueError, match="expected 4 dimensions"):
        ssim(x[None], x[None])
    with pytest.raises(ValueError, match="floating"):
        ssim((255 * x).to(torch.uint8), (255 * x).to(torch.uint8))
    with pytest.raises(ValueError, match="same dtype"):
        ssim(x, x.double())
    with pytest.raises(ValueError, match="empty batch"):
        ms_ssim(x[:0], x[:0], win_size=5, scales=3)
    with pytest.raises(TypeError, match="torch.Tensor"):
        ssim(x.numpy(), x.numpy())


@pytest.mark.parametrize("kw,match", [
    (dict(data_range=0), "data_range"), (dict(data_range=-1.0), "data_range"), (dict(data_range=float("nan")), "data_range"),
    (dict(win_size=4), "odd"), (dict(win_size=0), "odd"), (dict(sigma=0.0), "sigma"), (dict(K=(0.01, 0.0)), r"K\[1\]"),
    (dict(K=0.01), "two numbers"), (dict(scales=6), "from 1 to 5"), (dict(scales=0), "from 1 to 5"),
    (dict(weights=[0.5, -0.1]), "weights"), (dict(weights=[0.5, 0.5], scales=3), "disagree"), (dict(weights=[]), "weights"),
    (dict(nonneg="clamp"), "nonneg"), (dict(reduction="avg"), "reduction"),
])
def test_bad_arguments(kw, match):
    x = torch.rand(2, 1, 40, 40)
    kw = {"win_size": 5, "scales": None if "weights" in kw else 3, **kw}
    with pytest.raises(ValueError, match=match):
        ms_ssim(x, x, **kw)


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="data_range"):
        MSSSIMLoss(data_range=0)
    with pytest.raises(ValueError, match="reduction"):
        MSSSIMLoss(reduction="batchmean")
    with pytest.raises(ValueError, match="nonneg"):
        MSSSIMLoss(nonneg="abs")
    with pytest.raises(ValueError, match="odd"):
        MSSSIMLoss(win_size=6)
    with pytest.raises(ValueError, match="from 1 to 5"):
        MSSSIMLoss(scales=7)


# ---------------------------------------------------------------- added after mutation testing
def test_nonneg_simple_is_its_formula():
    "nonneg='simple': prod_j ((t_j + 1) / 2)^beta_j over the raw factors of Eq. (5), mean over channels."
    x, y = _pair(4, 2, 40, seed=30, noise=0.1)
    y = y.clone()
    y[:2] = 1 - x[:2]  # two anti-correlated images: negative factors, where 'simple' and 'relu' differ
    cs, s = ms_ssim_terms(x, y, win_size=5, scales=3)
    t = torch.cat([cs[:-1], s[None]])
    assert (t[:, :2] < 0).all() and (t[:, 2:] > 0).all()
    w = torch.tensor(_renorm(3), dtype=F64).view(-1, 1, 1)
    expect = (((t + 1) / 2) ** w).prod(0).mean(1)
    got = ms_ssim(x, y, win_size=5, scales=3, nonneg="simple", reduction="none")
    torch.testing.assert_close(got, expect, rtol=0, atol=1e-14)
    assert (got[:2] > 0).all()  # relu would give exactly 0 there
    torch.testing.assert_close(ms_ssim(x, y, win_size=5, scales=3, reduction="none")[:2], torch.zeros(2, dtype=F64))
    torch.testing.assert_close(MSSSIMLoss(win_size=5, scales=3, nonneg="simple", reduction="none")(x, y), 1 - expect,
                               rtol=0, atol=1e-14)


def test_mixed_loss_data_range_255_is_its_formula():
    "alpha (1 - MS-SSIM with R = 255) + (1 - alpha) mean|x - y| / 255 per image, on 8-bit-range images."
    x, y = _pair(3, 2, 40, seed=31)
    X, Y = 255 * x, 255 * y
    kw = dict(win_size=5, scales=3)
    ms = ms_ssim(Y, X, data_range=255, reduction="none", **kw)
    expect = 0.7 * (1 - ms) + 0.3 * (Y - X).abs().flatten(1).mean(1) / 255
    got = mixed_ms_ssim_l1_loss(Y, X, alpha=0.7, data_range=255, reduction="none", **kw)
    torch.testing.assert_close(got, expect, rtol=0, atol=1e-14)
    torch.testing.assert_close(MixedMSSSIML1Loss(0.7, data_range=255, reduction="none", **kw)(Y, X), expect,
                               rtol=0, atol=1e-14)
    # both terms are on [0, 1]: the same as the [0, 1] images with R = 1
    torch.testing.assert_close(got, mixed_ms_ssim_l1_loss(y, x, alpha=0.7, reduction="none", **kw), rtol=0, atol=1e-12)
    torch.testing.assert_close(mixed_ms_ssim_l1_loss(Y, X, alpha=0.7, data_range=255, **kw), expect.mean())
    torch.testing.assert_close(mixed_ms_ssim_l1_loss(Y, X, alpha=0.7, data_range=255, reduction="sum", **kw),
                               expect.sum())


@pytest.mark.parametrize("win,M", [(11, 5), (5, 3), (3, 2), (7, 1)])
def test_smallest_legal_image(win, M):
    "Eq. (8): a side of (win-1)·2^(M-1)+1 is accepted (the coarsest scale holds one window); one pixel less is not."
    side = (win - 1) * 2 ** (M - 1) + 1
    x, y = _pair(2, 1, side, seed=32, noise=0.1)
    kw = dict(win_size=win, scales=M)
    v = ms_ssim(x, y, reduction="none", **kw)
    assert torch.isfinite(v).all() and (v < 1).all()
    _, s = ms_ssim_terms(x, y, **kw)  # the coarsest SSIM map is a single position
    assert s.shape == (2, 1)
    for a, b in [(x[..., :-1, :], y[..., :-1, :]), (x[..., :, :-1], y[..., :, :-1])]:
        with pytest.raises(ValueError, match=f"= {side}"):
            ms_ssim(a, b, **kw)
        with pytest.raises(ValueError, match="input: images"):
            ms_ssim_loss(a, b, **kw)


def test_smallest_default_image_equals_pytorch_msssim(pm):
    "161 px, the smallest side for the defaults (5 scales, window 11): equal to pytorch-msssim given the same window."
    x, y = _pair(2, 1, 161, seed=33, noise=0.1, smooth=True)
    win_t = gaussian_window(11, 1.5, F64).view(1, 1, 1, -1)
    torch.testing.assert_close(ms_ssim_loss(y, x), 1 - pm.ms_ssim(y, x, data_range=1.0, win=win_t), rtol=0, atol=1e-13)


def test_errors_name_the_loss_arguments():
    "The loss functions call their images input and target; ms_ssim calls them x and y."
    x = torch.rand(2, 1, 32, 32)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    for fn in (ms_ssim_loss, mixed_ms_ssim_l1_loss):
        with pytest.raises(ValueError, match="^input: expected finite"):
            fn(bad, x, win_size=5, scales=3)
        with pytest.raises(ValueError, match="^target: expected finite"):
            fn(x, bad, win_size=5, scales=3)
        with pytest.raises(ValueError, match="^target: expected a floating"):
            fn(x, (3 * x).long(), win_size=5, scales=3)
        with pytest.raises(ValueError, match="input and target must have the same shape"):
            fn(x, x[:1], win_size=5, scales=3)
    with pytest.raises(ValueError, match="^y: expected finite"):
        ms_ssim(x, bad, win_size=5, scales=3)
    with pytest.raises(ValueError, match="alpha"):
        mixed_ms_ssim_l1_loss(x, x, alpha=1.5, win_size=5, scales=3)


def test_bf16_autocast_and_half_inputs_computed_in_float32():
    "E[x^2] - mu^2 cancels in 8 mantissa bits: under autocast, or for bf16/fp16 inputs, the statistics stay in float32."
    x, y = _pair(3, 1, 64, seed=34, dtype=torch.float32, smooth=True)
    ref = ms_ssim_loss(y, x, win_size=5, scales=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = ms_ssim_loss(y, x, win_size=5, scales=3)
        s = ssim(y, x)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(s, ssim(y, x), rtol=0, atol=1e-6)
    yb, xb = y.bfloat16(), x.bfloat16()
    vb = ms_ssim_loss(yb, xb, win_size=5, scales=3)
    assert vb.dtype == torch.bfloat16
    # only the rounding of the inputs (and of the result) to bf16 remains
    torch.testing.assert_close(vb.float(), ms_ssim_loss(yb.float(), xb.float(), win_size=5, scales=3), rtol=1e-2,
                               atol=1e-3)


# ---------------------------------------------------------------- added after the second mutation run
def test_error_messages_start_with_the_argument_name():
    "Each message starts with the argument's name (`name: ...`), in the functions and the modules."
    x = torch.rand(2, 1, 40, 40, dtype=F64)
    kw = dict(win_size=5, scales=3)
    cases = [
        (lambda: ms_ssim(x, x, data_range=0, **kw), "data_range"), (lambda: MSSSIMLoss(data_range=0), "data_range"),
        (lambda: MSSSIMLoss(data_range=float("nan")), "data_range"),
        (lambda: ms_ssim(x, x, nonneg="abs", **kw), "nonneg"), (lambda: MSSSIMLoss(nonneg="abs"), "nonneg"),
        (lambda: ms_ssim(x, x, win_size=4, scales=3), "win_size"), (lambda: MSSSIMLoss(win_size=6), "win_size"),
        (lambda: ms_ssim(x, x, win_size=True, scales=1), "win_size"), (lambda: ms_ssim(x, x, win_size=5.0, scales=3), "win_size"),
        (lambda: gaussian_window(4), "win_size"), (lambda: gaussian_window(-3), "win_size"),
        (lambda: gaussian_window(5, 0.0), "sigma"), (lambda: MSSSIMLoss(sigma=-1.0), "sigma"),
        (lambda: ssim(x, x, win_size=5, sigma=0.0), "sigma"),
        (lambda: ms_ssim(x, x, K=(0.0, 0.03), **kw), r"K\[0\]"), (lambda: ms_ssim(x, x, K=(0.01, -1), **kw), r"K\[1\]"),
        (lambda: ms_ssim(x, x, K=(0.01,), **kw), "K"), (lambda: ssim(x, x, K=[0.01, 0.03, 0.1]), "K"),
        (lambda: ms_ssim(x, x, win_size=5, scales=6), "scales"), (lambda: MSSSIMLoss(scales=0), "scales"),
        (lambda: ms_ssim(x, x, win_size=5, scales=True), "scales"), (lambda: ms_ssim(x, x, win_size=5, scales=2.0), "scales"),
        (lambda: ms_ssim_terms(x, x, win_size=5, scales=0), "scales"), (lambda: ms_ssim_terms(x, x, win_size=5, scales=True), "scales"),
        (lambda: ms_ssim_terms(x, x, win_size=5, scales=2.0), "scales"),
        (lambda: ms_ssim(x, x, win_size=5, weights=[0.5, float("nan")]), "weights"),
        (lambda: ms_ssim(x, x, win_size=5, weights=[0.5, float("inf")]), "weights"),
        (lambda: ms_ssim(x, x, win_size=5, weights=[0.5, -1e-9]), "weights"), (lambda: MSSSIMLoss(weights=[]), "weights"),
        (lambda: ms_ssim(x, x, win_size=5, weights=[0.5, 0.5], scales=3), r"scales \(3\) and len\(weights\) \(2\) disagree"),
        (lambda: ms_ssim(x, x.float(), **kw), "x and y must have the same dtype"),
        (lambda: ms_ssim_loss(x, x.float(), **kw), "input and target must have the same dtype"),
        (lambda: ms_ssim(x, x, reduction="avg", **kw), "reduction"), (lambda: ssim(x, x, reduction="avg"), "reduction"),
        (lambda: ms_ssim_loss(x, x, reduction="avg", **kw), "reduction"),
        (lambda: mixed_ms_ssim_l1_loss(x, x, reduction="avg", **kw), "reduction"),
        (lambda: MixedMSSSIML1Loss(reduction="avg"), "reduction"), (lambda: MSSSIMLoss(reduction="avg"), "reduction"),
        (lambda: mixed_ms_ssim_l1_loss(x, x, alpha=-0.1, **kw), "alpha"), (lambda: mixed_ms_ssim_l1_loss(x, x, alpha=True, **kw), "alpha"),
        (lambda: mixed_ms_ssim_l1_loss(x, x, alpha="0.5", **kw), "alpha"), (lambda: MixedMSSSIML1Loss(alpha=1.01), "alpha"),
        (lambda: MixedMSSSIML1Loss(alpha=-0.1), "alpha"), (lambda: MixedMSSSIML1Loss(alpha=True), "alpha"),
        (lambda: MixedMSSSIML1Loss(alpha="0.5"), "alpha"),
        (lambda: ms_ssim(x[..., :16, :16], x[..., :16, :16], **kw), "x"),
        (lambda: ms_ssim_loss(x[..., :16, :16], x[..., :16, :16], **kw), "input"),
        (lambda: ssim(x[..., :4, :], x[..., :4, :]), "x"),
        (lambda: ms_ssim(x, 1 - x, nonneg="none", **kw), "ms_ssim"),
    ]
    for call, name in cases:
        # a bare argument name must be followed by ':' (a shape check naming two arguments does not count)
        with pytest.raises(ValueError, match=rf"^{name}:" if name.isidentifier() else rf"^{name}(?:[:, ]|$)"):
            call()


def test_alpha_bounds_are_inclusive():
    "alpha in [0, 1] inclusive, ints accepted: 0 is the L1 term alone, 1 the MS-SSIM term alone."
    x, y = _pair(2, 1, 40, seed=40)
    kw = dict(win_size=5, scales=3, reduction="none")
    l1 = (y - x).abs().flatten(1).mean(1)
    for alpha in (0, 0.0):
        torch.testing.assert_close(mixed_ms_ssim_l1_loss(y, x, alpha=alpha, **kw), l1, rtol=0, atol=1e-15)
        torch.testing.assert_close(MixedMSSSIML1Loss(alpha, **kw)(y, x), l1, rtol=0, atol=1e-15)
    for alpha in (1, 1.0):
        torch.testing.assert_close(mixed_ms_ssim_l1_loss(y, x, alpha=alpha, **kw), ms_ssim_loss(y, x, **kw))
        torch.testing.assert_close(MixedMSSSIML1Loss(alpha, **kw)(y, x), ms_ssim_loss(y, x, **kw))
    assert MixedMSSSIML1Loss(1).alpha == 1.0 and MixedMSSSIML1Loss().alpha == 0.84


def test_defaults_are_pinned():
    "Every default: the value with the defaults equals the value with the explicit defaults, and differs from another."
    x, y = _pair(1, 1, 161, seed=41, noise=0.1, smooth=True)
    full = dict(data_range=1.0, win_size=11, sigma=1.5, K=(0.01, 0.03))
    torch.testing.assert_close(gaussian_window(), gaussian_window(11, 1.5), rtol=0, atol=0)
    assert gaussian_window().shape == (11,) and not torch.allclose(gaussian_window(), gaussian_window(11, 2.0))
    torch.testing.assert_close(ssim_map(x, y), ssim_map(x, y, **full), rtol=0, atol=0)
    torch.testing.assert_close(ssim(x, y), ssim(x, y, **full, reduction="mean"), rtol=0, atol=0)
    cs, s = ms_ssim_terms(x, y)
    cs_e, s_e = ms_ssim_terms(x, y, **full, scales=5)
    assert cs.shape == (5, 1, 1)
    torch.testing.assert_close((cs, s), (cs_e, s_e), rtol=0, atol=0)
    ref = ms_ssim(x, y, **full, scales=5, weights=MS_SSIM_WEIGHTS, nonneg="relu", reduction="mean")
    torch.testing.assert_close(ms_ssim(x, y), ref, rtol=0, atol=0)
    torch.testing.assert_close(ms_ssim_loss(x, y), 1 - ref, rtol=0, atol=0)
    torch.testing.assert_close(MSSSIMLoss()(x, y), 1 - ref, rtol=0, atol=0)
    l1 = (x - y).abs().mean()
    torch.testing.assert_close(mixed_ms_ssim_l1_loss(x, y), 0.84 * (1 - ref) + 0.16 * l1, rtol=0, atol=1e-15)
    torch.testing.assert_close(MixedMSSSIML1Loss()(x, y), 0.84 * (1 - ref) + 0.16 * l1, rtol=0, atol=1e-15)
    m = MSSSIMLoss()
    assert (m.data_range, m.win_size, m.sigma, m.K, m.weights, m.nonneg, m.reduction) == \
        (1.0, 11, 1.5, (0.01, 0.03), MS_SSIM_WEIGHTS, "relu", "mean")
    # and another value of each changes the result
    for kw in (dict(data_range=2.0), dict(win_size=9), dict(sigma=1.0), dict(K=(0.02, 0.03)), dict(K=(0.01, 0.05))):
        assert (ssim(x, y, **kw) - ssim(x, y)).abs() > 1e-9
        assert (ms_ssim(x, y, **kw) - ms_ssim(x, y)).abs() > 1e-12


def test_outputs_in_the_inputs_dtype():
    "Half inputs are computed in float32 and every output is returned in the inputs' dtype."
    x, y = _pair(2, 1, 40, seed=42, dtype=torch.float32)
    xb, yb = x.bfloat16(), y.bfloat16()
    kw = dict(win_size=5)
    assert ssim_map(xb, yb, **kw).dtype == torch.bfloat16
    # computed in float32 from the bf16 values (x*x, y*y, x*y included), rounded to bf16 once at the end
    assert torch.equal(ssim_map(xb, yb, **kw), ssim_map(xb.float(), yb.float(), **kw).bfloat16())
    assert torch.equal(ssim_map(yb, xb, **kw), ssim_map(yb.float(), xb.float(), **kw).bfloat16())
    assert torch.equal(ms_ssim(xb, yb, scales=3, reduction="none", **kw),
                       ms_ssim(xb.float(), yb.float(), scales=3, reduction="none", **kw).bfloat16())
    v, cs = ssim(xb, yb, return_cs=True, **kw)
    assert v.dtype == cs.dtype == torch.bfloat16
    cs, s = ms_ssim_terms(xb, yb, scales=3, **kw)
    assert cs.dtype == s.dtype == torch.bfloat16
    assert ms_ssim(xb, yb, scales=3, **kw).dtype == torch.bfloat16
    assert mixed_ms_ssim_l1_loss(xb, yb, scales=3, **kw).dtype == torch.bfloat16


def test_ssim_return_cs_is_reduced_like_the_value():
    x, y = _pair(3, 2, 30, seed=43)
    s_none, cs_none = ssim(x, y, win_size=5, reduction="none", return_cs=True)
    assert s_none.shape == cs_none.shape == (3,)
    torch.testing.assert_close(s_none, ssim(x, y, win_size=5, reduction="none"), rtol=0, atol=0)
    cs_map, _ = ms_ssim_terms(x, y, win_size=5, scales=1)
    torch.testing.assert_close(cs_none, cs_map[0].mean(1), rtol=0, atol=1e-15)
    for red, f in (("mean", torch.mean), ("sum", torch.sum)):
        s, cs = ssim(x, y, win_size=5, reduction=red, return_cs=True)
        torch.testing.assert_close((s, cs), (f(s_none), f(cs_none)), rtol=0, atol=1e-15)
    assert not torch.allclose(s_none, cs_none)


def test_ssim_data_range_scales_both_constants():
    "C1 = (K1 R)², C2 = (K2 R)²: R·x and R·y with data_range R give the SSIM map of x and y, for R ≠ 1."
    x, y = _pair(2, 2, 30, seed=44, noise=0.1)
    for R in (255.0, 0.01):
        torch.testing.assert_close(ssim_map(R * x, R * y, data_range=R, win_size=5), ssim_map(x, y, win_size=5),
                                   rtol=0, atol=1e-10)
        s, cs = ssim(R * x, R * y, data_range=R, win_size=5, reduction="none", return_cs=True)
        torch.testing.assert_close((s, cs), ssim(x, y, win_size=5, reduction="none", return_cs=True), rtol=0, atol=1e-10)
        # and the constants do matter: the same images with R = 1 give another value
        assert (ssim(R * x, R * y, win_size=5) - ssim(x, y, win_size=5)).abs() > 1e-6


def test_safe_pow_has_zero_gradient_at_zero():
    "The helper behind Eq. (5)'s powers: t**w for t >= 0, value 0 and gradient 0 (not inf) where t == 0."
    from lossbook.vision.ms_ssim_loss import _safe_pow
    t = torch.tensor([0.0, 0.25, 1.0], dtype=F64, requires_grad=True)
    v = _safe_pow(t, torch.tensor(0.5, dtype=F64))
    torch.testing.assert_close(v, torch.tensor([0.0, 0.5, 1.0], dtype=F64))
    v.sum().backward()
    torch.testing.assert_close(t.grad, torch.tensor([0.0, 1.0, 0.5], dtype=F64))


def test_edge_values_that_are_legal():
    "win_size 1 (one tap, no blur), zero weights (a scale left out) and nonneg='none' with positive factors are legal."
    torch.testing.assert_close(gaussian_window(1, 1.5, F64), torch.ones(1, dtype=F64))
    x, y = _pair(2, 1, 20, seed=45, noise=0.1, smooth=True)
    assert torch.isfinite(ssim(x, y, win_size=1, reduction="none")).all()
    w = [0.5, 0.0, 0.5]
    cs, s = ms_ssim_terms(x, y, win_size=3, scales=3)
    t = torch.cat([cs[:-1], s[None]])
    assert (t > 0).all()
    expect = (t ** torch.tensor(w, dtype=F64).view(-1, 1, 1)).prod(0).mean(1)
    torch.testing.assert_close(ms_ssim(x, y, win_size=3, weights=w, reduction="none"), expect, rtol=0, atol=1e-14)
    # every factor positive: 'none' is Eq. (5) as it stands, equal to 'relu'
    torch.testing.assert_close(ms_ssim(x, y, win_size=3, scales=3, nonneg="none"), ms_ssim(x, y, win_size=3, scales=3),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(min -0\.\d+: anti-correlated images\) and has no fractional power; use "
                                         r"nonneg='relu' or 'simple'$"):
        ms_ssim(x, 1 - x, win_size=3, scales=3, nonneg="none")


def test_shape_and_dtype_messages_name_the_right_image():
    x = torch.rand(2, 1, 40, 40, dtype=F64)
    kw = dict(win_size=5, scales=3)
    for call, msg in [
        (lambda: ms_ssim(x[0], x[0], **kw), "x: expected 4 dimensions"), (lambda: ms_ssim(x, x[0], **kw), "y: expected 4 dimensions"),
        (lambda: ssim(x[0], x), "x: expected 4 dimensions"), (lambda: ssim(x, x[None]), "y: expected 4 dimensions"),
        (lambda: ms_ssim_loss(x[0], x[0], **kw), "input: expected 4 dimensions"),
        (lambda: ms_ssim_loss(x, x[0], **kw), "target: expected 4 dimensions"),
        (lambda: ssim(x.long(), x.long()), "x: expected a floating-point tensor"),
        (lambda: ssim(x, x.long()), "y: expected a floating-point tensor"),
        (lambda: ms_ssim(x, x[:1], **kw), "x and y must have the same shape"),
        (lambda: ms_ssim_loss(x, x[:1], **kw), "input and target must have the same shape"),
    ]:
        with pytest.raises(ValueError, match="^" + msg):
            call()


def test_ssim_accepts_images_of_one_window():
    "One scale needs a side of win_size only: an 11 x 11 image has exactly one SSIM position with the default window."
    x, y = _pair(2, 1, 11, seed=46, noise=0.1)
    assert ssim_map(x, y).shape == (2, 1, 1, 1)
    torch.testing.assert_close(ssim(x, y, reduction="none"), ssim_map(x, y).flatten(1).mean(1))
