"""Tests for lossbook.classification.bias_loss (Abrahamyan et al. 2021, the Bias Loss).

There is no PyPI implementation: the reference is F.cross_entropy(reduction='none') times weights computed in NumPy
from Eqs. (1)-(3), a plain float64 loop, and a transcription of the official code's normalisation modes.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossbook.classification.bias_loss import (
    NORMS,
    PRESETS,
    BiasLoss,
    _bias_example,
    bias_loss,
    feature_variance,
    feature_variance_weights,
    normalised_variance,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _data(B=12, dtype=torch.float64, seed=0, device="cpu"):
    (logits, target, feats), _ = _bias_example(B, dtype, device, seed)
    return logits, target, feats


def _np_weights(feats, scale, shift, norm="batch", running_min=math.inf):
    "Eqs. (1)-(3) in NumPy (float64); norm='running_min' as the official code's 'global' mode."
    f = feats.detach().double().cpu().numpy().reshape(len(feats), -1)
    v = f.var(axis=1, ddof=1)
    lo, hi = v.min(), v.max()
    floor = lo if norm == "batch" else min(lo, running_min)
    v_hat = (v - floor) / (hi - lo) if hi > lo else np.zeros_like(v)
    return np.exp(scale * v_hat) - shift


def _loop_loss(logits, target, feats, scale, shift):
    "Eq. (4) one sample at a time in Python floats."
    rows = [[float(x) for x in r] for r in feats.reshape(len(feats), -1).tolist()]
    var = []
    for r in rows:
        m = sum(r) / len(r)
        var.append(sum((x - m) ** 2 for x in r) / (len(r) - 1))
    lo, hi = min(var), max(var)
    tot = 0.0
    for o, y, v in zip(logits.tolist(), target.tolist(), var):
        mx = max(o)
        lse = mx + math.log(sum(math.exp(x - mx) for x in o))
        w = math.exp(scale * (v - lo) / (hi - lo)) - shift
        tot += w * (lse - o[y])
    return tot / len(rows)


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("scale,shift", [(0.3, 0.3), (0.3, 0.7), (1.0, 0.0), (2.5, -1.0), (0.0, 0.5)])
def test_matches_ce_times_numpy_weights(scale, shift):
    logits, y, feats = _data()
    ref = F.cross_entropy(logits, y, reduction="none") * torch.from_numpy(_np_weights(feats, scale, shift))
    got = bias_loss(logits, y, feats, scale=scale, shift=shift, reduction="none")
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert bias_loss(logits, y, feats, scale, shift).item() == pytest.approx(_loop_loss(logits, y, feats, scale, shift),
                                                                             rel=1e-12)


def test_defaults_are_the_paper_preset():
    logits, y, feats = _data(seed=3)
    want = (F.cross_entropy(logits, y, reduction="none") * torch.from_numpy(_np_weights(feats, 0.3, 0.3))).mean()
    torch.testing.assert_close(bias_loss(logits, y, feats), want, rtol=1e-12, atol=0)
    torch.testing.assert_close(BiasLoss()(logits, y, feats), want, rtol=1e-12, atol=0)
    assert PRESETS["paper"] == {"scale": 0.3, "shift": 0.3, "norm": "batch"}
    assert PRESETS["official_2021"] == {"scale": 0.3, "shift": 0.7, "norm": "running_min"}
    assert NORMS == ("batch", "running_min")
    m = BiasLoss()
    assert (m.scale, m.shift, m.norm, m.reduction, m.gather_distributed) == (0.3, 0.3, "batch", "mean", False)
    torch.testing.assert_close(feature_variance_weights(feats), torch.from_numpy(_np_weights(feats, 0.3, 0.3)),
                               rtol=1e-12, atol=1e-12)


def test_official_code_global_mode_transcribed():
    "The official BiasLoss (mode 'global', 2021 weights) over three batches, against our module's running minimum."
    m = BiasLoss.from_preset("official_2021", reduction="none")
    gmin = 100000.0  # the official code's initial value
    for seed, factor in [(0, 1.0), (1, 0.2), (2, 3.0)]:
        logits, y, feats = _data(B=9, seed=seed)
        feats = feats * factor
        v = feats.reshape(9, -1).var(1)
        gmin = min(gmin, float(v.min()))
        v_hat = (v - gmin) / (v.max() - v.min())
        w = (torch.exp(v_hat * 0.3) - 1.0) + 0.3  # the 2021 code's formula, alpha = beta = 0.3
        torch.testing.assert_close(m(logits, y, feats), w * F.cross_entropy(logits, y, reduction="none"),
                                   rtol=1e-12, atol=1e-12)
        assert m.running_min.item() == pytest.approx(gmin, rel=1e-15)
    m.reset()
    assert m.running_min.item() == math.inf


# ---------------------------------------------------------------- properties
def test_zero_scale_and_shift_is_cross_entropy():
    logits, y, feats = _data()
    torch.testing.assert_close(bias_loss(logits, y, feats, scale=0.0, shift=0.0), F.cross_entropy(logits, y),
                               rtol=1e-14, atol=0)
    # the code's own parameter names: beta_code = 0, alpha_code = 1 gives CE as well
    torch.testing.assert_close(bias_loss(logits, y, feats, scale=0.0, shift=0.0, reduction="sum"),
                               F.cross_entropy(logits, y, reduction="sum"), rtol=1e-14, atol=0)


@pytest.mark.parametrize("scale,shift", [(0.3, 0.3), (0.3, 0.7), (1.5, 0.9)])
def test_weights_monotone_with_extremes(scale, shift):
    _, _, feats = _data(B=20, seed=4)
    w = feature_variance_weights(feats, scale, shift)
    v = feature_variance(feats)
    order = v.argsort()
    assert (w[order].diff() >= 0).all()
    assert w[order[0]].item() == pytest.approx(1 - shift, abs=1e-14)
    assert w[order[-1]].item() == pytest.approx(math.exp(scale) - shift, abs=1e-14)


@pytest.mark.parametrize("c,b", [(10.0, 0.0), (1e-3, 0.0), (1.0, 7.0), (4.0, -2.5)])
def test_invariant_to_affine_feature_changes(c, b):
    logits, y, feats = _data()
    torch.testing.assert_close(bias_loss(logits, y, c * feats + b, reduction="none"),
                               bias_loss(logits, y, feats, reduction="none"), rtol=1e-9, atol=1e-12)


def test_gradients_closed_form_and_none_for_features():
    logits, y, feats = _data()
    lg, fg = logits.clone().requires_grad_(True), feats.clone().requires_grad_(True)
    bias_loss(lg, y, fg).backward()
    assert fg.grad is None  # detached: the weights carry no gradient
    w = torch.from_numpy(_np_weights(feats, 0.3, 0.3))
    want = w[:, None] * (logits.softmax(1) - F.one_hot(y, 10).double()) / len(y)
    torch.testing.assert_close(lg.grad, want, rtol=1e-12, atol=1e-14)


def test_gradcheck_logits():
    logits, y, feats = _data(B=6)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda o: bias_loss(o, y, feats, scale=0.7, shift=0.2), (logits,))
    assert torch.autograd.gradcheck(lambda o: bias_loss(o, y, feats, reduction="none"), (logits,))


def test_equal_variances_give_no_nan():
    logits, y, _ = _data(B=5)
    feats = torch.randn(1, 3, 2, 2, dtype=torch.float64).repeat(5, 1, 1, 1)  # five identical feature maps
    out = bias_loss(logits, y, feats, reduction="none")
    torch.testing.assert_close(out, 0.7 * F.cross_entropy(logits, y, reduction="none"))
    # a batch of one
    one = bias_loss(logits[:1], y[:1], feats[:1], shift=0.4)
    torch.testing.assert_close(one, 0.6 * F.cross_entropy(logits[:1], y[:1]))
    # running-minimum mode with a constant batch: v_hat = 0 as well (the code would divide by zero)
    w = feature_variance_weights(feats, 0.3, 0.7, "running_min", 0.0)
    torch.testing.assert_close(w, torch.full((5,), 0.3, dtype=torch.float64))


def test_normalised_variance_modes():
    v = torch.tensor([2.0, 4.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(normalised_variance(v), torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(normalised_variance(v, "running_min", 1.0), torch.tensor([0.5, 1.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(normalised_variance(v, "running_min", 3.0), normalised_variance(v))  # min(3, 2) = 2
    torch.testing.assert_close(normalised_variance(v, "running_min", None), normalised_variance(v))
    torch.testing.assert_close(normalised_variance(v, "running_min", math.inf), normalised_variance(v))
    assert normalised_variance(v, "running_min", 1).tolist() == [0.5, 1.5, 1.0]  # an int is accepted


def test_feature_variance_is_unbiased_and_detached():
    f = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    v = feature_variance(f)
    assert not v.requires_grad
    want = f.detach().reshape(4, -1).numpy().var(axis=1, ddof=1)
    np.testing.assert_allclose(v.numpy(), want, rtol=1e-13)
    # 2-d features (B, M) are allowed
    torch.testing.assert_close(feature_variance(f.detach().reshape(4, 6)), v)


def test_running_min_module_vs_function():
    logits, y, feats = _data()
    m = BiasLoss(norm="running_min")
    first = m(logits, y, feats)
    torch.testing.assert_close(first, bias_loss(logits, y, feats))  # before any batch: the batch minimum
    assert m.running_min.item() == pytest.approx(feature_variance(feats).min().item())
    small = feats * 0.1
    m(logits, y, small)
    rm = m.running_min.clone()
    torch.testing.assert_close(m(logits, y, feats), bias_loss(logits, y, feats, norm="running_min", running_min=rm))
    assert m(logits, y, feats) > bias_loss(logits, y, feats)  # the running minimum raises every weight
    # a module in 'batch' mode never touches its buffer
    b = BiasLoss()
    b(logits, y, feats)
    assert b.running_min.item() == math.inf


def test_presets():
    logits, y, feats = _data()
    for name, p in PRESETS.items():
        m = BiasLoss.from_preset(name)
        assert (m.scale, m.shift, m.norm) == (p["scale"], p["shift"], p["norm"])
    torch.testing.assert_close(BiasLoss.from_preset()(logits, y, feats), bias_loss(logits, y, feats))
    assert BiasLoss.from_preset("paper", reduction="sum").reduction == "sum"
    with pytest.raises(ValueError, match="^preset: expected one of"):
        BiasLoss.from_preset("ours")
    assert "shift=0.7" in repr(BiasLoss.from_preset("official_2021"))


# ---------------------------------------------------------------- DDP with the running minimum
def _ddp_running_min_worker(rank, world, sizes, gather):
    "Three steps of BiasLoss('official_2021') on this rank's rows; (value, logits grad / world, running_min) per step."
    from lossbook.classification.bias_loss import BiasLoss as _BiasLoss
    m = _BiasLoss.from_preset("official_2021", gather_distributed=gather)
    rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
    out = []
    for step, factor in enumerate([1.0, 0.2, 3.0]):
        logits, y, feats = _data(B=sum(sizes), seed=step)
        lg = logits[rows].clone().requires_grad_(True)
        value = m(lg, y[rows], feats[rows] * factor)
        value.backward()
        out.append((value.detach(), lg.grad / world, m.running_min.clone()))
    return out


@pytest.mark.parametrize("sizes", [(6, 6), (7, 4)], ids=["even", "uneven"])
def test_ddp_running_min_two_processes_equal_one(sizes):
    "gather_distributed=True: two gloo processes equal one process with the whole batch, step after step (buffer too)."
    from ddp_utils import run_distributed

    one = BiasLoss.from_preset("official_2021")
    want = []
    for step, factor in enumerate([1.0, 0.2, 3.0]):
        logits, y, feats = _data(B=sum(sizes), seed=step)
        lg = logits.clone().requires_grad_(True)
        value = one(lg, y, feats * factor)
        value.backward()
        want.append((value.detach(), lg.grad, one.running_min.clone()))
    results = run_distributed(_ddp_running_min_worker, 2, (sizes, True))
    for rank, steps in enumerate(results):
        rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
        for (v_r, g_r, rm_r), (v, g, rm) in zip(steps, want):
            torch.testing.assert_close(v_r, v, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(g_r, g[rows], rtol=1e-9, atol=1e-12)
            assert rm_r.item() == rm.item()  # the buffers stay equal to the one-process buffer


def test_ddp_running_min_per_rank_without_gather():
    "gather_distributed=False: each process normalises its own rows and keeps the minimum of its own batches."
    from ddp_utils import run_distributed

    sizes = (7, 4)
    results = run_distributed(_ddp_running_min_worker, 2, (sizes, False))
    for rank, steps in enumerate(results):
        rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
        local = BiasLoss.from_preset("official_2021")
        for step, (factor, (v_r, _, rm_r)) in enumerate(zip([1.0, 0.2, 3.0], steps)):
            logits, y, feats = _data(B=sum(sizes), seed=step)
            torch.testing.assert_close(v_r, local(logits[rows], y[rows], feats[rows] * factor), rtol=1e-12, atol=0)
            assert rm_r.item() == local.running_min.item()
    assert results[0][-1][2].item() != results[1][-1][2].item()  # the two ranks' minima differ


# ---------------------------------------------------------------- reductions, module, dtypes
@pytest.mark.parametrize("norm", ["batch", "running_min"])
def test_reductions(norm):
    logits, y, feats = _data()
    kw = dict(norm=norm, running_min=0.01 if norm == "running_min" else None)
    none = bias_loss(logits, y, feats, reduction="none", **kw)
    assert none.shape == (12,)
    torch.testing.assert_close(bias_loss(logits, y, feats, reduction="mean", **kw), none.mean())
    torch.testing.assert_close(bias_loss(logits, y, feats, reduction="sum", **kw), none.sum())


def test_functional_equals_module():
    logits, y, feats = _data()
    for kw in [dict(), dict(scale=1.0, shift=-0.5, reduction="sum"), dict(reduction="none")]:
        torch.testing.assert_close(BiasLoss(**kw)(logits, y, feats), bias_loss(logits, y, feats, **kw), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_dtypes_and_devices(dtype, device):
    logits, y, feats = _data(dtype=dtype, device=device)
    out = bias_loss(logits, y, feats)
    assert out.dtype == dtype and out.device.type == device
    ref = bias_loss(*_data())
    torch.testing.assert_close(out.double().cpu(), ref, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_keeps_float32():
    logits, y, feats = _data(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = bias_loss(logits, y, feats)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, bias_loss(logits, y, feats))


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs():
    logits, y, feats = _data()
    with pytest.raises(ValueError, match="^logits: expected finite values"):
        bias_loss(logits.clone().fill_(float("nan")), y, feats)
    bad = feats.clone()
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="^features: expected finite values"):
        bias_loss(logits, y, bad)
    with pytest.raises(ValueError, match=r"^features: expected shape \(12, \.\.\.\)"):
        bias_loss(logits, y, feats[:-1])
    with pytest.raises(ValueError, match=r"^features: expected shape \(12, \.\.\.\)"):
        bias_loss(logits, y, feats[:, 0, 0, 0])  # one number per sample: no variance
    with pytest.raises(ValueError, match="^features: expected at least 2 entries|^features: expected shape"):
        bias_loss(logits, y, feats[:, :1, :1, :1])
    with pytest.raises(ValueError, match="^features: expected a floating-point tensor"):
        bias_loss(logits, y, feats.long())
    with pytest.raises(ValueError, match="^target: expected 12 labels"):
        bias_loss(logits, y[:-1], feats)
    with pytest.raises(ValueError, match=r"^target: labels must lie in \[0, 9\]"):
        bias_loss(logits, y + 10, feats)
    with pytest.raises(ValueError, match=r"^target: labels must lie in \[0, 9\]"):
        bias_loss(logits, y - 10, feats)
    with pytest.raises(ValueError, match="^target: expected an integer tensor"):
        bias_loss(logits, y.double(), feats)
    with pytest.raises(ValueError, match="^logits: expected at least 1 sample"):
        bias_loss(logits[:0], y[:0], feats[:0])
    with pytest.raises(ValueError, match="^logits: expected 2 dimensions"):
        bias_loss(logits[0], y, feats)
    with pytest.raises(ValueError, match="^scale: expected a finite number >= 0"):
        bias_loss(logits, y, feats, scale=-0.1)
    with pytest.raises(ValueError, match="^scale: expected a finite number >= 0"):
        bias_loss(logits, y, feats, scale=float("nan"))
    with pytest.raises(ValueError, match="^shift: expected < 1"):
        bias_loss(logits, y, feats, shift=1.0)
    with pytest.raises(ValueError, match="^shift: expected a finite real number"):
        bias_loss(logits, y, feats, shift=float("-inf"))
    with pytest.raises(ValueError, match="^norm: expected one of"):
        bias_loss(logits, y, feats, norm="global")
    with pytest.raises(ValueError, match="^reduction: expected one of"):
        bias_loss(logits, y, feats, reduction="avg")
    with pytest.raises(ValueError, match="^running_min: only used with norm='running_min'"):
        bias_loss(logits, y, feats, running_min=0.0)
    with pytest.raises(ValueError, match="^running_min: expected one number"):
        bias_loss(logits, y, feats, norm="running_min", running_min=torch.zeros(2))
    with pytest.raises(ValueError, match="^running_min: expected one number"):
        bias_loss(logits, y, feats, norm="running_min", running_min=float("nan"))
    with pytest.raises(ValueError, match="^running_min: expected one number"):
        bias_loss(logits, y, feats, norm="running_min", running_min=-math.inf)
    with pytest.raises(ValueError, match="^running_min: expected one number"):
        bias_loss(logits, y, feats, norm="running_min", running_min="low")
    with pytest.raises(ValueError, match="^running_min: expected one number"):
        bias_loss(logits, y, feats, norm="running_min", running_min=torch.tensor(0))
    with pytest.raises(ValueError, match="^v: expected 1 dimensions"):
        normalised_variance(torch.ones(2, 2))
    with pytest.raises(ValueError, match="^features: expected at least 2 entries"):
        feature_variance(torch.ones(3, 1))
    with pytest.raises(ValueError, match="^features: expected at least 2 entries"):
        feature_variance(torch.ones(3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        bias_loss(logits, y, feats.numpy())


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="^scale: expected a finite number >= 0"):
        BiasLoss(scale=-1.0)
    with pytest.raises(ValueError, match="^shift: expected < 1"):
        BiasLoss(shift=1.5)
    with pytest.raises(ValueError, match="^shift: expected a finite real number"):
        BiasLoss(shift=float("nan"))
    with pytest.raises(ValueError, match="^norm: expected one of"):
        BiasLoss(norm="local")
    with pytest.raises(ValueError, match="^reduction: expected one of"):
        BiasLoss(reduction="avg")
    with pytest.raises(ValueError, match="^shift: expected < 1"):
        feature_variance_weights(torch.ones(2, 3), shift=2.0)


# ---------------------------------------------------------------- tests asked for by mutation testing (issue #7)
def test_module_refuses_shift_one_exactly():
    "shift = 1 makes the smallest weight 1 - shift = 0: refused by the module as by the function (the bound is >= 1)."
    with pytest.raises(ValueError, match="^shift: expected < 1"):
        BiasLoss(shift=1.0)
    assert BiasLoss(shift=0.999).shift == 0.999


def test_ddp_path_normalises_over_the_gathered_variances(monkeypatch):
    "gather / local_slice / all_sum only under DDP; then min / max and the mean are over the global batch (one process)."
    import lossbook.classification.bias_loss as mod
    logits, y, feats = _data(12, seed=3)
    v_other = feature_variance(feats[:5])  # rank 0's 5 samples; this process is rank 1 with the other 7
    calls, seen, real = [], [], mod.ddp_active
    monkeypatch.setattr(mod, "gather", lambda x: calls.append(("gather", tuple(x.shape))) or torch.cat([v_other.to(x), x]))
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append(("slice", n, device)) or slice(5, 5 + n))
    monkeypatch.setattr(mod, "all_sum", lambda x, active=True: calls.append(("all_sum", int(x), active)) or x + 5)
    monkeypatch.setattr(mod, "ddp_active", lambda g: seen.append(g) or real(g))
    feature_variance_weights(feats[5:])
    assert seen == [False]  # gather_distributed defaults to False
    bias_loss(logits[5:], y[5:], feats[5:], gather_distributed=True)  # no process group: DDP is not active
    assert calls == []
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    full = bias_loss(logits, y, feats, reduction="none")
    got = bias_loss(logits[5:], y[5:], feats[5:], reduction="none", gather_distributed=True)
    torch.testing.assert_close(got, full[5:], rtol=1e-12, atol=1e-14)
    assert ("slice", 7, feats.device) in calls and ("gather", (7,)) in calls
    calls.clear()
    torch.testing.assert_close(bias_loss(logits[5:], y[5:], feats[5:], gather_distributed=True), full[5:].sum() / 12,
                               rtol=1e-12, atol=1e-14)
    assert ("all_sum", 7, True) in calls
    m = BiasLoss(norm="running_min", gather_distributed=True)
    m(logits[5:], y[5:], feats[5:])
    assert float(m.running_min) == float(torch.cat([v_other, feature_variance(feats[5:])]).min())


def test_two_dimensional_features_and_the_weights_take_the_logits_dtype():
    logits, y, feats = _data(12, seed=4)
    flat = feats.reshape(12, -1)  # (B, M) features are legal: Eq. (1) needs only M >= 2 entries per sample
    assert torch.equal(bias_loss(logits, y, flat), bias_loss(logits, y, feats))
    out = bias_loss(logits.float(), y, feats, reduction="none")  # float64 features do not promote float32 logits
    assert out.dtype == torch.float32


def test_half_precision_logits_are_computed_in_float32():
    "full_precision: bf16 logits are cast to float32 before the cross-entropy (a bf16 log-softmax is off by ~1e-2)."
    logits, y, feats = _data(12, seed=5)
    lb = (4 * logits).bfloat16()
    out = bias_loss(lb, y, feats.float(), reduction="none")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, bias_loss(lb.float(), y, feats.float(), reduction="none"), rtol=1e-6, atol=1e-6)


def test_feature_variance_and_normalised_variance_check_their_own_arguments():
    with pytest.raises(ValueError, match="^features: expected finite values"):
        feature_variance(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="^features: expected a floating-point tensor"):
        feature_variance(torch.ones(3, 4, dtype=torch.long))
    # the smallest legal feature map: 2 entries per sample (unbiased variance (a - b)^2 / 2)
    torch.testing.assert_close(feature_variance(torch.tensor([[0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)),
                               torch.tensor([2.0, 0.0], dtype=torch.float64))
    assert feature_variance(torch.rand(3, 4).bfloat16()).dtype == torch.float32  # computed in full precision
    with pytest.raises(ValueError, match="^v: expected a floating-point tensor"):
        normalised_variance(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="^norm: expected one of"):
        normalised_variance(torch.tensor([1.0, 2.0]), norm="global")
    # integer features are refused by name before any other argument is looked at
    logits, y, feats = _data()
    with pytest.raises(ValueError, match="^features: expected a floating-point tensor"):
        bias_loss(logits, y, feats.long(), reduction="avg")


def test_equal_variances_have_finite_gradients_through_the_normalisation():
    "All variances equal: v_hat = 0 through a `where` whose other branch divides by a safe 1, not by 0 (no 0/0 gradient)."
    v = torch.ones(3, dtype=torch.float64, requires_grad=True)
    out = normalised_variance(v)
    assert torch.equal(out, torch.zeros(3, dtype=torch.float64))
    out.sum().backward()
    assert torch.isfinite(v.grad).all()
