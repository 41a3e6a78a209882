"""Tests for lossbook.vision.skyreconnet_inpainting (SkyReconNet's composite loss (1 - SSIM) + MSE, masks, network).

The SSIM term is `lossbook.vision.ms_ssim_loss.ssim`; its oracle here is pytorch-msssim 1.0.0's `ssim(X, Y,
data_range=1, size_average=False)` (values and gradients, float64, given the float64 window), and scikit-image's
`structural_similarity` for values. The MSE term and the masked region are checked against plain float64 loops.
"""

import math

import pytest
import pytorch_msssim
import torch
import torch.nn.functional as F

from lossbook.vision.ms_ssim_loss import ssim
from lossbook.vision.skyreconnet_inpainting import (
    REGIONS,
    HybridBlock,
    HybridDilatedInpaintNet,
    SSIMMSELoss,
    composite,
    inpaint_input,
    random_inpainting_mask,
    ssim_mse_loss,
)


def _images(N=4, C=1, H=24, W=24, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = F.avg_pool2d(torch.rand(N, C, H + 4, W + 4, generator=g, dtype=torch.float64), 5, 1)
    t = (t - t.amin((2, 3), keepdim=True)) / (t.amax((2, 3), keepdim=True) - t.amin((2, 3), keepdim=True))
    x = (t + 0.1 * torch.randn(t.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x.to(dtype), t.to(dtype)


def _mask(N=4, H=24, W=24, C=1):
    m = torch.ones(N, C, H, W, dtype=torch.float64)
    m[:, :, 8:13, :] = 0  # a band
    m[1, :, 2:4, 2:6] = 0  # one more hole in image 1
    return m


def _win(size=11, sigma=1.5, channels=1):
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    return (g / g.sum()).view(1, 1, 1, size).repeat(channels, 1, 1, 1)


def _pm_ssim(x, y, win_size=11, sigma=1.5, data_range=1.0, K=(0.01, 0.03)):
    return pytorch_msssim.ssim(x, y, data_range=data_range, size_average=False, win=_win(win_size, sigma, x.shape[1]), K=K)


def _loop_mse(x, y, mask=None):
    "Per image: mean of (x - y)^2 over all pixels and channels, or over the pixels with mask == 0."
    out = []
    for n in range(x.shape[0]):
        a, b = x[n].flatten().tolist(), y[n].flatten().tolist()
        w = [1.0] * len(a) if mask is None else [1.0 - v for v in mask[n].expand_as(x[n]).flatten().tolist()]
        out.append(math.fsum(wi * (ai - bi) ** 2 for ai, bi, wi in zip(a, b, w)) / math.fsum(w))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- the oracle: pytorch-msssim (values and gradients)
@pytest.mark.parametrize("shape", [(4, 1, 24, 24), (3, 3, 16, 21), (2, 2, 11, 11)])
def test_ssim_term_matches_pytorch_msssim_values_and_gradients(shape):
    x, y = _images(*shape)
    x.requires_grad_(True)
    ours = ssim_mse_loss(x, y, w_mse=0, reduction="none")
    ref = 1 - _pm_ssim(x, y)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-13)
    (g1,) = torch.autograd.grad(ours.sum(), x)
    (g2,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("ws,wm", [(1.0, 1.0), (0.3, 2.5), (2.0, 0.0)])
def test_composite_matches_reference(ws, wm):
    x, y = _images(3, 1, 20, 20)
    x.requires_grad_(True)
    ours = ssim_mse_loss(x, y, w_ssim=ws, w_mse=wm, reduction="none")
    ref = ws * (1 - _pm_ssim(x, y)) + wm * ((x - y) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(ours.detach(), ws * (1 - _pm_ssim(x, y)).detach() + wm * _loop_mse(x.detach(), y),
                               rtol=1e-12, atol=1e-13)
    (g1,) = torch.autograd.grad(ours.sum(), x)
    (g2,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-13)


def test_settings_reach_ssim():
    x, y = _images(2, 1, 24, 24)
    got = ssim_mse_loss(x * 2, y * 2, w_mse=0, data_range=2.0, win_size=7, sigma=1.0, K=(0.02, 0.05), reduction="none")
    ref = 1 - _pm_ssim(x * 2, y * 2, win_size=7, sigma=1.0, data_range=2.0, K=(0.02, 0.05))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-13)


def test_ssim_term_matches_scikit_image():
    from skimage.metrics import structural_similarity

    x, y = _images(3, 1, 24, 24)
    sk = torch.tensor([structural_similarity(a[0].numpy(), b[0].numpy(), data_range=1.0, gaussian_weights=True,
                                             sigma=1.5, use_sample_covariance=False) for a, b in zip(x, y)])
    torch.testing.assert_close(1 - ssim_mse_loss(x, y, w_mse=0, reduction="none"), sk, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- the masked region
def test_masked_region_matches_loop():
    x, y = _images(4, 1, 24, 24)
    m = _mask()
    got = ssim_mse_loss(x, y, m, w_ssim=0, region="masked", reduction="none")
    torch.testing.assert_close(got, _loop_mse(x, y, m), rtol=1e-12, atol=1e-14)
    both = ssim_mse_loss(x, y, m, region="masked", reduction="none")
    torch.testing.assert_close(both, (1 - _pm_ssim(x, y)) + _loop_mse(x, y, m), rtol=1e-12, atol=1e-13)


def test_masked_region_per_channel_mask_and_broadcast():
    x, y = _images(2, 3, 16, 16)
    m1 = _mask(2, 16, 16)[:2]
    m3 = m1.expand(2, 3, 16, 16).clone()
    a = ssim_mse_loss(x, y, m1, region="masked", reduction="none")
    b = ssim_mse_loss(x, y, m3, region="masked", reduction="none")
    torch.testing.assert_close(a, b, rtol=1e-14, atol=0)
    torch.testing.assert_close(ssim_mse_loss(x, y, m1.bool(), region="masked", reduction="none"), a, rtol=0, atol=0)
    torch.testing.assert_close(a, (1 - _pm_ssim(x, y)) + _loop_mse(x, y, m1), rtol=1e-12, atol=1e-13)


def test_error_on_observed_pixels_is_free_in_masked_region():
    _, y = _images(4, 1, 24, 24)
    m = _mask()
    assert ssim_mse_loss(y + 0.3 * m, y, m, w_ssim=0, region="masked").item() == 0.0
    torch.testing.assert_close(ssim_mse_loss(y + 0.1 * (1 - m), y, m, w_ssim=0, region="masked"),
                               torch.tensor(0.01, dtype=torch.float64), rtol=1e-12, atol=0)


# ---------------------------------------------------------------- defaults, reductions, module
def test_defaults_pinned():
    x, y = _images(3, 1, 24, 24)
    d = ssim_mse_loss(x, y)
    explicit = ssim_mse_loss(x, y, None, w_ssim=1.0, w_mse=1.0, region="all", data_range=1.0, win_size=11, sigma=1.5,
                             K=(0.01, 0.03), reduction="mean")
    assert torch.equal(d, explicit)
    for kw in [dict(w_ssim=0.5), dict(w_mse=0.5), dict(data_range=2.0), dict(win_size=9), dict(sigma=1.0),
               dict(K=(0.02, 0.03)), dict(K=(0.01, 0.05)), dict(reduction="sum")]:
        assert not torch.equal(ssim_mse_loss(x, y, **kw), d), kw
    assert not torch.equal(ssim_mse_loss(x, y, _mask(3), region="masked"), d)
    # the module's defaults are the function's
    assert torch.equal(SSIMMSELoss()(x, y), d)
    mod = SSIMMSELoss()
    assert (mod.w_ssim, mod.w_mse, mod.region, mod.data_range, mod.win_size, mod.sigma, mod.K, mod.reduction) == \
        (1.0, 1.0, "all", 1.0, 11, 1.5, (0.01, 0.03), "mean")
    assert REGIONS == ("all", "masked")


def test_hand_value():
    # a constant offset c: SSIM keeps cs = 1 and l < 1; with w_s = 0 the loss is exactly c^2
    _, y = _images(2, 1, 16, 16)
    assert ssim_mse_loss(y + 0.1, y, w_ssim=0).item() == pytest.approx(0.01, abs=1e-14)
    assert ssim_mse_loss(y, y).item() == 0.0
    assert ssim_mse_loss(y, y, _mask(2, 16, 16), region="masked").item() == 0.0


def test_reductions():
    x, y = _images(5, 1, 16, 16)
    none = ssim_mse_loss(x, y, reduction="none")
    assert none.shape == (5,)
    torch.testing.assert_close(ssim_mse_loss(x, y, reduction="mean"), none.mean())
    torch.testing.assert_close(ssim_mse_loss(x, y, reduction="sum"), none.sum())


@pytest.mark.parametrize("kw", [dict(), dict(w_ssim=0.3, w_mse=2.0), dict(region="masked"), dict(data_range=2.0),
                                dict(win_size=7, sigma=1.0), dict(K=(0.02, 0.04)), dict(reduction="none"),
                                dict(reduction="sum"), dict(w_ssim=0.0), dict(w_mse=0.0)])
def test_module_equals_function(kw):
    x, y = _images(3, 1, 20, 20)
    mask = _mask(3, 20, 20) if kw.get("region") == "masked" else None
    torch.testing.assert_close(SSIMMSELoss(**kw)(x, y, mask), ssim_mse_loss(x, y, mask, **kw), rtol=0, atol=0)


def test_extra_repr():
    r = repr(SSIMMSELoss(w_ssim=0.5, w_mse=2.0, region="masked"))
    assert "w_ssim=0.5" in r and "w_mse=2.0" in r and "region='masked'" in r


def test_float32_and_dtype():
    x, y = _images(3, 1, 20, 20)
    v32 = ssim_mse_loss(x.float(), y.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), ssim_mse_loss(x, y), rtol=1e-5, atol=1e-6)
    m = _mask(3, 20, 20)
    assert ssim_mse_loss(x.float(), y.float(), m, region="masked").dtype == torch.float32


def test_gradcheck():
    x, y = _images(2, 1, 12, 12)
    x.requires_grad_(True)
    m = _mask(2, 12, 12)
    assert torch.autograd.gradcheck(lambda a: ssim_mse_loss(a, y, win_size=7, reduction="none"), (x,))
    assert torch.autograd.gradcheck(lambda a: ssim_mse_loss(a, y, m, w_mse=3.0, region="masked", win_size=7,
                                                            reduction="none"), (x,))


def test_properties():
    x, y = _images(3, 1, 20, 20)
    # the SSIM term is symmetric; the loss is > 0 for different images and minimal (0) at equality
    torch.testing.assert_close(ssim_mse_loss(x, y, reduction="none"), ssim_mse_loss(y, x, reduction="none"))
    assert (ssim_mse_loss(x, y, reduction="none") > 0).all()
    # positive homogeneity in the weights
    torch.testing.assert_close(ssim_mse_loss(x, y, w_ssim=2.0, w_mse=2.0), 2 * ssim_mse_loss(x, y))


# ---------------------------------------------------------------- bad inputs: each message names its argument
def _bad_calls():
    x, y = _images(2, 1, 16, 16)
    m = _mask(2, 16, 16)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    return [
        (lambda: ssim_mse_loss(nan, y), r"^input:"),
        (lambda: ssim_mse_loss(x, nan), r"^target:"),
        (lambda: ssim_mse_loss(x[:1], y), r"^input and target"),
        (lambda: ssim_mse_loss(x.float(), y), r"^input and target"),
        (lambda: ssim_mse_loss(x[:0], y[:0]), r"^input:"),
        (lambda: ssim_mse_loss(x[0], y[0]), r"^input:"),
        (lambda: ssim_mse_loss((x * 3).long(), y), r"^input:"),
        (lambda: ssim_mse_loss(x[..., :10, :10], y[..., :10, :10]), r"^input:"),
        (lambda: ssim_mse_loss(x, y, reduction="avg"), r"^reduction:"),
        (lambda: ssim_mse_loss(x, y, region="hole"), r"^region:"),
        (lambda: ssim_mse_loss(x, y, w_ssim=-1.0), r"^w_ssim:"),
        (lambda: ssim_mse_loss(x, y, w_mse=-1.0), r"^w_mse:"),
        (lambda: ssim_mse_loss(x, y, w_ssim=0.0, w_mse=0.0), r"^w_ssim:"),
        (lambda: ssim_mse_loss(x, y, w_mse=float("nan")), r"^w_mse:"),
        (lambda: ssim_mse_loss(x, y, data_range=0.0), r"^data_range:"),
        (lambda: ssim_mse_loss(x, y, win_size=10), r"^win_size:"),
        (lambda: ssim_mse_loss(x, y, sigma=0.0), r"^sigma:"),
        (lambda: ssim_mse_loss(x, y, K=(0.01,)), r"^K:"),
        (lambda: ssim_mse_loss(x, y, m), r"^mask:"),
        (lambda: ssim_mse_loss(x, y, region="masked"), r"^mask:"),
        (lambda: ssim_mse_loss(x, y, m[0], region="masked"), r"^mask:"),
        (lambda: ssim_mse_loss(x, y, m[:1], region="masked"), r"^mask:"),
        (lambda: ssim_mse_loss(x, y, m.long(), region="masked"), r"^mask:"),
        (lambda: ssim_mse_loss(x, y, m * 0.5, region="masked"), r"^mask:"),
        (lambda: ssim_mse_loss(x, y, torch.ones_like(m), region="masked"), r"^mask:"),
        (lambda: ssim_mse_loss(x, y, torch.where(m == 0, float("nan"), m), region="masked"), r"^mask:"),
        (lambda: SSIMMSELoss(w_ssim=-1.0), r"^w_ssim:"),
        (lambda: SSIMMSELoss(w_mse=-1.0), r"^w_mse:"),
        (lambda: SSIMMSELoss(w_ssim=0.0, w_mse=0.0), r"^w_ssim:"),
        (lambda: SSIMMSELoss(region="hole"), r"^region:"),
        (lambda: SSIMMSELoss(reduction="avg"), r"^reduction:"),
        (lambda: SSIMMSELoss(data_range=-1.0), r"^data_range:"),
        (lambda: HybridDilatedInpaintNet(in_ch=1), r"^in_ch:"),
    ]


@pytest.mark.parametrize("i", range(len(_bad_calls())))
def test_bad_inputs_raise_naming_the_argument(i):
    call, pattern = _bad_calls()[i]
    with pytest.raises(ValueError, match=pattern):
        call()


def test_one_missing_pixel_is_enough():
    x, y = _images(2, 1, 16, 16)
    m = torch.ones(2, 1, 16, 16, dtype=torch.float64)
    m[:, :, 3, 4] = 0
    got = ssim_mse_loss(x, y, m, w_ssim=0, region="masked", reduction="none")
    torch.testing.assert_close(got, (x - y)[:, 0, 3, 4] ** 2, rtol=1e-14, atol=0)


# ---------------------------------------------------------------- masks, input, composite
def test_mask_shape_values_and_reproducibility():
    g = lambda: torch.Generator().manual_seed(3)
    m = random_inpainting_mask(50, 28, generator=g())
    assert m.shape == (50, 1, 28, 28) and m.dtype == torch.get_default_dtype()
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(m, random_inpainting_mask(50, 28, generator=g()))
    assert not torch.equal(m, random_inpainting_mask(50, 28, generator=torch.Generator().manual_seed(4)))
    assert random_inpainting_mask(2, 16, device="cpu").device.type == "cpu"


def test_mask_fractions_follow_the_arguments():
    g = torch.Generator().manual_seed(0)
    # band only: the missing fraction per image equals the band's width fraction to within a row or so
    band = random_inpainting_mask(200, 40, band_frac=(0.2, 0.2), n_holes=(0, 0), generator=g)
    frac = 1 - band.mean((1, 2, 3))
    assert (frac - 0.2).abs().max() < 0.08 and abs(frac.mean().item() - 0.2) < 0.02
    # holes only (a band of width 0): discs of radius r hide about pi r^2 pixels each
    holes = random_inpainting_mask(200, 40, band_frac=(0.0, 0.0), n_holes=(1, 1), radius=(3.0, 3.0), generator=g)
    missing = (1 - holes).sum((1, 2, 3))
    assert 24 <= missing.median().item() <= 32 and missing.max().item() <= 36  # pi r^2 = 28.3 px
    none = random_inpainting_mask(5, 16, band_frac=(0.0, 0.0), n_holes=(0, 0), generator=g)
    assert none.min().item() == 1.0
    # default arguments: band 10-25 % of the side plus 2-6 discs of radius 1.5-4
    d = 1 - random_inpainting_mask(500, 28, generator=torch.Generator().manual_seed(1)).mean((1, 2, 3))
    assert 0.1 <= d.min().item() and d.max().item() < 0.6 and 0.2 < d.mean().item() < 0.4


def test_mask_defaults_pinned():
    a = random_inpainting_mask(20, 24, generator=torch.Generator().manual_seed(2))
    b = random_inpainting_mask(20, 24, band_frac=(0.10, 0.25), n_holes=(2, 6), radius=(1.5, 4.0),
                               generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    for kw in [dict(band_frac=(0.2, 0.25)), dict(n_holes=(2, 5)), dict(radius=(1.5, 3.0))]:
        assert not torch.equal(a, random_inpainting_mask(20, 24, generator=torch.Generator().manual_seed(2), **kw)), kw


def test_inpaint_input_and_composite():
    x, _ = _images(3, 1, 16, 16)
    m = _mask(3, 16, 16)
    inp = inpaint_input(x, m)
    assert inp.shape == (3, 2, 16, 16)
    assert torch.equal(inp[:, 1:], m)
    assert torch.equal(inp[:, :1] * m, x * m)
    for n in range(3):
        mu = (x[n] * m[n]).sum() / m[n].sum()
        torch.testing.assert_close(inp[n, 0][m[n, 0] == 0], mu.expand(int((m[n] == 0).sum())), rtol=1e-14, atol=0)
    pred = torch.full_like(x, 0.5)
    torch.testing.assert_close(composite(pred, x, m), m * x + (1 - m) * 0.5, rtol=0, atol=0)


# ---------------------------------------------------------------- the network
def test_network_shapes_sizes_and_defaults():
    net = HybridDilatedInpaintNet()
    assert net.out_ch == 1 and net.slope == 0.1 and len(net.mid) == 1
    assert [b.dilation[0] for b in net.mid[0].branches] == [1, 2, 4]
    assert net.stem[0].out_channels == 8 and net.stem[0].in_channels == 2
    plain = HybridDilatedInpaintNet(dilations=(1, 1, 1))
    n_par = lambda n: sum(p.numel() for p in n.parameters())
    assert n_par(net) == n_par(plain)
    assert HybridDilatedInpaintNet(in_ch=4, base=6, blocks=2)(torch.rand(2, 4, 16, 20)).shape == (2, 3, 16, 20)
    assert len(HybridDilatedInpaintNet(blocks=2).mid) == 2
    assert HybridDilatedInpaintNet(slope=0.2).stem[1].negative_slope == 0.2
    assert HybridBlock(4).slope == 0.1 and [b.dilation[0] for b in HybridBlock(4).branches] == [1, 2, 4]


def test_output_is_input_plus_correction():
    net = HybridDilatedInpaintNet()
    torch.nn.init.zeros_(net.head[-1].weight)
    torch.nn.init.zeros_(net.head[-1].bias)
    x = torch.rand(2, 2, 16, 16)
    torch.testing.assert_close(net(x), x[:, :1], rtol=0, atol=0)


def _receptive_extent(net, size=32):
    "Rows of the input that influence the centre output pixel."
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.uniform_(p, 0.1, 0.2)  # positive weights: no cancellation
    x = torch.rand(1, 2, size, size, requires_grad=True)
    net(x)[0, 0, size // 2, size // 2].backward()
    rows = (x.grad[0].abs().sum((0, 2)) > 0).nonzero().flatten()
    return int(rows.max() - rows.min() + 1)


def test_dilations_widen_the_receptive_field():
    wide = _receptive_extent(HybridDilatedInpaintNet(dilations=(1, 2, 4)))
    narrow = _receptive_extent(HybridDilatedInpaintNet(dilations=(1, 1, 1)))
    assert wide > narrow + 8, (wide, narrow)


def test_leaky_slope_is_used():
    blk = HybridBlock(2, dilations=(1,), slope=0.5)
    with torch.no_grad():
        blk.branches[0].weight.zero_()
        blk.branches[0].bias.fill_(-1.0)  # every branch output -1, leaky-ReLU'd to -0.5
        blk.fuse.weight.fill_(1.0)
        blk.fuse.bias.zero_()
    h = torch.zeros(1, 2, 5, 5)
    torch.testing.assert_close(blk(h), torch.full_like(h, -1.0))  # two fused channels of -0.5


# ---------------------------------------------------------------- pinned by the mutation pass (issue #7)
def test_mask_messages_are_exact():
    x, y = _images(2, 3, 16, 16)
    m = _mask(2, 16, 16)
    with pytest.raises(ValueError, match=r"^mask: expected 4 dimensions, got shape \(1, 16, 16\)"):
        ssim_mse_loss(x, y, m[0], region="masked")
    with pytest.raises(ValueError, match=r"^mask: expected 4 dimensions, got shape \(1, 2, 1, 16, 16\)"):
        ssim_mse_loss(x, y, m[None], region="masked")
    with pytest.raises(ValueError, match=r"^mask: expected shape \(2, 1, 16, 16\) or \(2, 3, 16, 16\), got \(1, 1, 16, 16\)$"):
        ssim_mse_loss(x, y, m[:1], region="masked")


def _loop_mask(n, size, band_frac=(0.10, 0.25), n_holes=(2, 6), radius=(1.5, 4.0), seed=0):
    "random_inpainting_mask written per pixel with Python floats, from the same float64 draws in the same order."
    g = torch.Generator().manual_seed(seed)

    def u(lo, hi, *shape):
        return (lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)).flatten().tolist()

    frac, centre = u(*band_frac, n), u(0.25 * size, 0.75 * size, n)
    amp, period, phase = u(0.0, 0.15 * size, n), u(0.5 * size, 1.5 * size, n), u(0, 2 * math.pi, n)
    tilt = u(-0.3, 0.3, n)
    H = n_holes[1]
    cy, cx, r = u(0, size, n * H), u(0, size, n * H), u(*radius, n * H)
    k = torch.randint(n_holes[0], H + 1, (n,), generator=g).tolist()
    out = torch.ones(n, 1, size, size)
    for i in range(n):
        for y in range(size):
            for x in range(size):
                line = centre[i] + amp[i] * math.sin(2 * math.pi * x / period[i] + phase[i]) + tilt[i] * (x - size / 2)
                hole = any((y - cy[i * H + j]) ** 2 + (x - cx[i * H + j]) ** 2 < r[i * H + j] ** 2 for j in range(k[i]))
                if abs(y - line) < frac[i] * size / 2 or hole:
                    out[i, 0, y, x] = 0.0
    return out


@pytest.mark.parametrize("kw", [dict(), dict(band_frac=(0.3, 0.4), n_holes=(1, 3), radius=(2.0, 5.0))])
def test_mask_matches_per_pixel_loop(kw):
    # pins every draw (ranges, shapes, order, float64) and the band and disc geometry for fixed seeds
    got = random_inpainting_mask(12, 20, generator=torch.Generator().manual_seed(5), **kw)
    want = _loop_mask(12, 20, seed=5, **kw)
    assert torch.equal(got, want), int((got != want).sum())


def test_mask_emits_no_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        random_inpainting_mask(2, 8, generator=torch.Generator().manual_seed(0))


def test_inpaint_input_single_observed_pixel():
    # one observed pixel: the hole is filled with its value (the count is 1, not clamped higher)
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    m = torch.zeros(2, 1, 6, 6, dtype=torch.float64)
    m[0, 0, 2, 3] = 1
    m[1] = 1
    m[1, 0, 0, 0] = 0
    inp = inpaint_input(x, m)
    assert torch.equal(inp[0, 0], torch.full((6, 6), x[0, 0, 2, 3].item(), dtype=torch.float64))
    torch.testing.assert_close(inp[1, 0, 0, 0], x[1, 0].flatten()[1:].mean(), rtol=1e-14, atol=0)
    # no observed pixel at all: the count is clamped to 1 and the fill is 0
    assert torch.equal(inpaint_input(x, torch.zeros_like(m))[:, 0], torch.zeros(2, 6, 6, dtype=torch.float64))


def _net_reference(net, x, slope, dilations, blocks):
    "The network's forward written with torch.nn.functional from its parameters (architecture as documented)."
    lr = lambda t: F.leaky_relu(t, slope)
    s = lr(F.conv2d(x, net.stem[0].weight, net.stem[0].bias, padding=1))
    h = lr(F.conv2d(s, net.down[0].weight, net.down[0].bias, stride=2, padding=1))
    for i in range(blocks):
        blk = net.mid[i]
        br = [lr(F.conv2d(h, b.weight, b.bias, padding=d, dilation=d)) for b, d in zip(blk.branches, dilations)]
        h = h + F.conv2d(torch.cat(br, 1), blk.fuse.weight, blk.fuse.bias)
    h = lr(F.conv_transpose2d(h, net.up.weight, net.up.bias, stride=2, padding=1))
    c = lr(F.conv2d(torch.cat([h, s], 1), net.head[0].weight, net.head[0].bias, padding=1))
    return x[:, : net.out_ch] + F.conv2d(c, net.head[2].weight, net.head[2].bias, padding=1)


@pytest.mark.parametrize("slope,dilations,blocks", [(0.1, (1, 2, 4), 1), (0.3, (1, 3), 2)])
def test_network_matches_functional_reference(slope, dilations, blocks):
    torch.manual_seed(0)
    net = HybridDilatedInpaintNet(in_ch=3, base=4, dilations=dilations, blocks=blocks, slope=slope).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)  # biases too: negative pre-activations everywhere
    kernels = [(net.stem[0], 3, 1), (net.down[0], 3, 2), (net.up, 4, 2), (net.head[0], 3, 1), (net.head[2], 3, 1)]
    for conv, k, stride in kernels:
        assert conv.kernel_size == (k, k) and conv.stride == (stride, stride) and conv.padding == (1, 1)
    assert len(net.stem) == 2 and len(net.down) == 2 and len(net.head) == 3
    assert all(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == slope for m in (net.stem[1], net.down[1], net.head[1]))
    assert all(b.slope == slope for b in net.mid)
    x = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    torch.testing.assert_close(net(x), _net_reference(net, x, slope, dilations, blocks), rtol=1e-12, atol=1e-12)
