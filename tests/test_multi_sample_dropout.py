"""Tests for lossbook.classification.multi_sample_dropout (Inoue 2019, multi-sample dropout).

There is no library implementation: the reference is an explicit float64 loop over the M dropout samples with the
same Bernoulli masks (values and gradients), plus the limit cases (p = 0, M = 1), the evaluation mode, Jensen's
inequality for the `mean_logits` variant, and statistical checks of Eq. (3) (unbiased, variance / M).
"""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lossbook.classification.multi_sample_dropout import (
    COMBINES,
    MultiSampleDropout,
    MultiSampleDropoutLoss,
    dropout_masks,
    multi_sample_dropout_loss,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _data(B=6, F_=5, C=4, M=8, p=0.5, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, F_, generator=g, dtype=torch.float64)
    W = torch.randn(C, F_, generator=g, dtype=torch.float64)
    b = torch.randn(C, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (B,), generator=g)
    masks = dropout_masks(B, F_, M, p, generator=g)
    cast = lambda t: t.to(device=device, dtype=dtype)
    return cast(h), y.to(device), cast(W), cast(b), masks.to(device)


def _loop(h, y, W, b, masks, p, combine="mean_loss"):
    "Eqs. (1), (2) and (4) one example and one sample at a time, in Python floats."
    out = []
    for i in range(h.shape[0]):
        hi, c = h[i].tolist(), int(y[i])
        logits = []
        for m in range(masks.shape[1]):
            z = [v * float(k) / (1 - p) for v, k in zip(hi, masks[i, m].tolist())]
            logits.append([sum(w * zz for w, zz in zip(row, z)) + (0.0 if b is None else float(b[k]))
                           for k, row in enumerate(W.tolist())])
        ce = lambda o: math.log(sum(math.exp(v) for v in o)) - o[c]
        if combine == "mean_loss":
            out.append(sum(ce(o) for o in logits) / len(logits))
        else:
            mean = [sum(o[k] for o in logits) / len(logits) for k in range(len(logits[0]))]
            out.append(ce(mean))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- the loop oracle: values and gradients
@pytest.mark.parametrize("combine", COMBINES)
@pytest.mark.parametrize("p,M", [(0.5, 8), (0.2, 3), (0.7, 1)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_loop(combine, p, M, with_bias):
    h, y, W, b, masks = _data(M=M, p=p)
    b = b if with_bias else None
    got = multi_sample_dropout_loss(h, y, W, b, num_samples=M, p=p, combine=combine, masks=masks, reduction="none")
    torch.testing.assert_close(got, _loop(h, y, W, b, masks, p, combine), rtol=1e-12, atol=1e-12)


def test_gradients_are_the_average_of_the_per_sample_gradients():
    h, y, W, b, masks = _data(M=8)
    leaves = [t.clone().requires_grad_(True) for t in (h, W, b)]
    multi_sample_dropout_loss(*leaves[:1], y, *leaves[1:], masks=masks).backward()
    per_sample = []
    for m in range(8):
        ls = [t.clone().requires_grad_(True) for t in (h, W, b)]
        z = ls[0] * masks[:, m].double() / 0.5
        F.cross_entropy(F.linear(z, ls[1], ls[2]), y).backward()
        per_sample.append([t.grad for t in ls])
    for j, leaf in enumerate(leaves):
        torch.testing.assert_close(leaf.grad, sum(g[j] for g in per_sample) / 8, rtol=1e-10, atol=1e-12)


def test_gradcheck():
    h, y, W, b, masks = _data(B=3, F_=4, C=3, M=2)
    for combine in COMBINES:
        fn = lambda hh, WW, bb: multi_sample_dropout_loss(hh, y, WW, bb, num_samples=2, combine=combine, masks=masks,
                                                         reduction="none")
        assert torch.autograd.gradcheck(fn, tuple(t.clone().requires_grad_(True) for t in (h, W, b)))


def test_hand_value():
    h = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    W, y = torch.eye(2, dtype=torch.float64), torch.tensor([0])
    m = torch.tensor([[[True, False], [True, True]]])
    want = (math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 2
    assert multi_sample_dropout_loss(h, y, W, num_samples=2, masks=m).item() == pytest.approx(want, abs=1e-14)
    assert multi_sample_dropout_loss(h, y, W, num_samples=2, masks=m, combine="mean_logits").item() == \
        pytest.approx(math.log(2), abs=1e-14)
    # p enters as 1 / (1 - p): p = 0.75 scales the kept features by 4
    got = multi_sample_dropout_loss(h, y, W, num_samples=2, p=0.75, masks=m)
    want = (math.log1p(math.exp(-4)) + math.log1p(math.exp(4))) / 2
    assert got.item() == pytest.approx(want, abs=1e-14)


# ---------------------------------------------------------------- limit cases and identities
@pytest.mark.parametrize("M", [1, 2, 8])
@pytest.mark.parametrize("combine", COMBINES)
def test_p_zero_is_the_plain_loss(M, combine):
    h, y, W, b, _ = _data()
    plain = F.cross_entropy(F.linear(h, W, b), y, reduction="none")
    torch.testing.assert_close(multi_sample_dropout_loss(h, y, W, b, num_samples=M, p=0.0, combine=combine,
                                                         reduction="none"), plain, rtol=1e-12, atol=1e-12)
    all_kept = torch.ones(6, M, 5, dtype=torch.bool)
    torch.testing.assert_close(multi_sample_dropout_loss(h, y, W, b, num_samples=M, p=0.0, masks=all_kept,
                                                         combine=combine, reduction="none"), plain)


def test_one_sample_is_the_original_dropout():
    h, y, W, b, masks = _data(M=1)
    want = F.cross_entropy(F.linear(h * masks[:, 0].double() / 0.5, W, b), y)
    torch.testing.assert_close(multi_sample_dropout_loss(h, y, W, b, num_samples=1, masks=masks), want)
    torch.testing.assert_close(multi_sample_dropout_loss(h, y, W, b, num_samples=1, masks=masks, combine="mean_logits"),
                               want)
    # and through torch's own dropout, with the same RNG state
    torch.manual_seed(3)
    a = multi_sample_dropout_loss(h, y, W, b, num_samples=1)
    torch.manual_seed(3)
    torch.testing.assert_close(a, F.cross_entropy(F.linear(F.dropout(h, 0.5, training=True), W, b), y))


def test_mean_logits_is_below_mean_loss_and_differs():
    h, y, W, b, masks = _data(B=32, M=8, seed=4)
    ml = multi_sample_dropout_loss(h, y, W, b, masks=masks, reduction="none")
    mg = multi_sample_dropout_loss(h, y, W, b, masks=masks, combine="mean_logits", reduction="none")
    assert (mg <= ml + 1e-12).all()  # Jensen, Eq. (4)
    assert (ml - mg).max() > 1e-3  # and different in general


def test_defaults():
    h, y, W, b, masks = _data(M=8)
    # default num_samples = 8, p = 0.5, combine = mean_loss, reduction = mean
    explicit = multi_sample_dropout_loss(h, y, W, b, num_samples=8, p=0.5, combine="mean_loss", masks=masks,
                                         reduction="mean")
    assert multi_sample_dropout_loss(h, y, W, b, masks=masks) == explicit
    assert multi_sample_dropout_loss(h, y, W, b, p=0.4, masks=masks) != explicit
    assert multi_sample_dropout_loss(h, y, W, b, masks=masks, combine="mean_logits") != explicit
    torch.testing.assert_close(explicit, _loop(h, y, W, b, masks, 0.5).mean())
    with pytest.raises(ValueError, match=r"^masks: expected shape \(B, num_samples, F\) = \(6, 8, 5\)"):
        multi_sample_dropout_loss(h, y, W, b, masks=masks[:, :4])  # the default M is 8
    # bias defaults to None (no bias)
    torch.testing.assert_close(multi_sample_dropout_loss(h, y, W, masks=masks), _loop(h, y, W, None, masks, 0.5).mean())
    m = MultiSampleDropoutLoss()
    assert (m.num_samples, m.p, m.combine, m.reduction) == (8, 0.5, "mean_loss", "mean")
    layer = MultiSampleDropout(nn.Linear(5, 4))
    assert (layer.num_samples, layer.p, layer.combine, layer.loss_fn) == (8, 0.5, "mean_loss", F.cross_entropy)


def test_dropout_masks():
    g = torch.Generator().manual_seed(0)
    m = dropout_masks(3000, 40, 8, 0.3, generator=g)
    assert m.dtype == torch.bool and m.shape == (3000, 8, 40)
    assert abs(m.float().mean().item() - 0.7) < 3e-3
    assert dropout_masks(2, 3, 4, 0.0).all()
    d = dropout_masks(2000, 10)  # defaults: M = 8, p = 0.5
    assert d.shape == (2000, 8, 10) and abs(d.float().mean().item() - 0.5) < 5e-3
    # the M masks of one example are independent: they agree on about p^2 + (1-p)^2 of the entries
    agree = (m[:, 0] == m[:, 1]).float().mean().item()
    assert abs(agree - (0.3**2 + 0.7**2)) < 5e-3
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(dropout_masks(4, 6, 3, 0.5, generator=g1), dropout_masks(4, 6, 3, 0.5, generator=g2))


def test_random_masks_are_independent_per_sample():
    "Without explicit masks every sample gets its own mask (repeat_interleave + one F.dropout call)."
    h = torch.ones(200, 30, dtype=torch.float64)
    W = torch.eye(30, dtype=torch.float64)
    y = torch.zeros(200, dtype=torch.long)
    torch.manual_seed(0)
    layer = MultiSampleDropout(nn.Identity(), num_samples=4, p=0.5)
    from lossbook.classification.multi_sample_dropout import _samples
    s = _samples(h, 4, 0.5, None).reshape(200, 4, 30)
    assert set(s.unique().tolist()) == {0.0, 2.0}  # inverted scaling
    agree = (s[:, 0] == s[:, 1]).float().mean().item()
    assert abs(agree - 0.5) < 0.02  # independent masks agree on half the entries, identical ones on all
    assert torch.isfinite(multi_sample_dropout_loss(h, y, W)).all()
    logits, _ = layer(h)
    assert logits.shape == (200, 30)


# ---------------------------------------------------------------- Eq. (3): unbiased, variance / M
def test_unbiased_and_variance_over_M():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(16, 32, generator=g, dtype=torch.float64)
    W = torch.randn(10, 32, generator=g, dtype=torch.float64) / 6
    y = torch.randint(0, 10, (16,), generator=g)
    n = 2000
    d1 = torch.stack([multi_sample_dropout_loss(h, y, W, num_samples=1, masks=dropout_masks(16, 32, 1, 0.5, generator=g))
                      for _ in range(n)])
    d8 = torch.stack([multi_sample_dropout_loss(h, y, W, masks=dropout_masks(16, 32, 8, 0.5, generator=g))
                      for _ in range(n)])
    se = math.sqrt(d1.var().item() / n + d8.var().item() / n)
    assert abs(d1.mean().item() - d8.mean().item()) < 3 * se
    ratio = d8.var().item() / d1.var().item()
    assert 0.08 <= ratio <= 0.18, ratio
    # the torch-RNG path is unbiased and less noisy as well
    torch.manual_seed(2)
    r8 = torch.stack([multi_sample_dropout_loss(h, y, W) for _ in range(n)])
    assert abs(r8.mean().item() - d1.mean().item()) < 3 * math.sqrt(d1.var().item() / n + r8.var().item() / n)
    assert 0.08 <= r8.var().item() / d1.var().item() <= 0.18


# ---------------------------------------------------------------- the layer
def test_layer_train_and_eval():
    h, y, W, b, masks = _data()
    head = nn.Linear(5, 4).double()
    with torch.no_grad():
        head.weight.copy_(W)
        head.bias.copy_(b)
    layer = MultiSampleDropout(head, num_samples=8, p=0.5)
    logits, loss = layer(h, y, masks=masks)
    torch.testing.assert_close(loss, multi_sample_dropout_loss(h, y, W, b, masks=masks))
    sample_logits = F.linear((h.unsqueeze(1) * masks.double() / 0.5), W, b)
    torch.testing.assert_close(logits, sample_logits.mean(1))
    _, loss_lg = MultiSampleDropout(head, combine="mean_logits")(h, y, masks=masks)
    torch.testing.assert_close(loss_lg, multi_sample_dropout_loss(h, y, W, b, masks=masks, combine="mean_logits"))
    logits_only, none = layer(h, masks=masks)
    assert none is None and torch.equal(logits_only, logits)
    layer.eval()
    o, l_eval = layer(h, y)
    assert torch.equal(o, head(h))
    torch.testing.assert_close(l_eval, F.cross_entropy(head(h), y))
    o2, none = layer(h)
    assert none is None and torch.equal(o2, o)
    # p and M reach the computation
    layer.train()
    m3 = dropout_masks(6, 5, 3, 0.2, generator=torch.Generator().manual_seed(9))
    _, l3 = MultiSampleDropout(head, num_samples=3, p=0.2)(h, y, masks=m3)
    torch.testing.assert_close(l3, multi_sample_dropout_loss(h, y, W, b, num_samples=3, p=0.2, masks=m3))


def test_layer_custom_loss_fn_and_backprop():
    h, y, W, b, masks = _data()
    head = nn.Linear(5, 4).double()
    calls = []

    def loss_fn(logits, target, reduction="mean"):
        calls.append((tuple(logits.shape), reduction))
        return F.nll_loss(F.log_softmax(logits, 1), target, reduction=reduction)

    layer = MultiSampleDropout(head, loss_fn=loss_fn)
    _, loss = layer(h, y, masks=masks)
    assert calls == [((48, 4), "none")]
    loss.backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()
    layer.eval()
    _, l_eval = layer(h, y)
    assert calls[-1] == ((6, 4), "none")  # eval takes the same reduction path as training
    torch.testing.assert_close(l_eval, F.cross_entropy(head(h), y))


def test_eval_uses_the_per_example_path_of_loss_fn():
    "A loss_fn honouring only reduction='none' (as training requires) must give the batch mean in eval mode too."
    h, y, W, b, masks = _data()
    head = nn.Linear(5, 4).double()

    def per_example_only(logits, target, reduction="mean"):
        if reduction != "none":
            raise AssertionError(f"called with reduction={reduction!r}")
        return F.cross_entropy(logits, target, reduction="none") * (1 + target)  # example-dependent weights

    layer = MultiSampleDropout(head, loss_fn=per_example_only)
    layer(h, y, masks=masks)
    layer.eval()
    _, loss = layer(h, y)
    with torch.no_grad():
        want = (F.cross_entropy(head(h), y, reduction="none") * (1 + y)).mean()
    torch.testing.assert_close(loss, want)


def test_eval_ignores_masks():
    h, y, W, b, masks = _data()
    layer = MultiSampleDropout(nn.Linear(5, 4).double()).eval()
    o, l = layer(h, y)
    zeros = torch.zeros_like(masks)  # in training these masks would drop every feature
    o2, l2 = layer(h, y, masks=zeros)
    assert torch.equal(o2, o) and torch.equal(l2, l)
    o3, _ = layer(h, masks=masks[:, :2])  # not even checked: there is no dropout to mask
    assert torch.equal(o3, o)


def test_masks_on_another_device_are_a_value_error():
    h, y, W, b, masks = _data()
    other = masks.to("meta")  # a device that differs from the features' on every machine
    with pytest.raises(ValueError, match="^masks: expected a tensor on the features' device cpu, got meta"):
        multi_sample_dropout_loss(h, y, W, b, masks=other)
    with pytest.raises(ValueError, match="^masks: expected a tensor on the features' device"):
        MultiSampleDropoutLoss()(h, y, W, b, masks=other)
    with pytest.raises(ValueError, match="^masks: expected a tensor on the features' device"):
        MultiSampleDropout(nn.Linear(5, 4).double())(h, y, masks=other)


def test_module_equals_function_and_repr():
    h, y, W, b, masks = _data(M=3)
    mod = MultiSampleDropoutLoss(num_samples=3, p=0.3, combine="mean_logits", reduction="sum")
    torch.testing.assert_close(mod(h, y, W, b, masks=masks),
                               multi_sample_dropout_loss(h, y, W, b, 3, 0.3, "mean_logits", masks, "sum"))
    h8, y8, W8, b8, m8 = _data(M=8)
    assert MultiSampleDropoutLoss()(h8, y8, W8, b8, masks=m8) == multi_sample_dropout_loss(h8, y8, W8, b8, masks=m8)
    assert MultiSampleDropoutLoss()(h8, y8, W8, masks=m8) == multi_sample_dropout_loss(h8, y8, W8, masks=m8)
    assert repr(MultiSampleDropoutLoss()) == \
        "MultiSampleDropoutLoss(num_samples=8, p=0.5, combine='mean_loss', reduction='mean')"
    assert repr(MultiSampleDropout(nn.Identity(), num_samples=2, p=0.1, combine="mean_logits")) == (
        "MultiSampleDropout(\n  num_samples=2, p=0.1, combine='mean_logits'\n  (head): Identity()\n)")


def test_reductions():
    h, y, W, b, masks = _data()
    none = multi_sample_dropout_loss(h, y, W, b, masks=masks, reduction="none")
    assert none.shape == (6,)
    torch.testing.assert_close(multi_sample_dropout_loss(h, y, W, b, masks=masks, reduction="mean"), none.mean())
    torch.testing.assert_close(multi_sample_dropout_loss(h, y, W, b, masks=masks, reduction="sum"), none.sum())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_devices(dtype, device):
    h64, y, W64, b64, masks = _data(device=device)
    h, W, b = (t.to(dtype).requires_grad_(True) for t in (h64, W64, b64))
    loss = multi_sample_dropout_loss(h, y, W, b, masks=masks)
    assert loss.dtype == dtype and loss.device.type == device
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(loss.double(), multi_sample_dropout_loss(h64, y, W64, b64, masks=masks), rtol=tol, atol=tol)
    loss.backward()
    assert h.grad.dtype == dtype and torch.isfinite(h.grad).all()
    assert multi_sample_dropout_loss(h, y, W, b).dtype == dtype  # the torch-RNG path keeps the dtype too


# ---------------------------------------------------------------- bad inputs
BAD = [  # (call, message start)
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h[0], y, W, b), "features: expected 2 dimensions"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h.long(), y, W, b), "features: expected a floating-point"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h[:0], y[:0], W, b), "features: expected at least 1"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h * float("nan"), y, W, b), "features: expected finite"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W[0], b), "weight: expected 2 dimensions"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W[:, :3], b), r"weight: expected shape \(C, 5\)"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W * float("inf"), b), "weight: expected finite"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W.long(), b), "weight: expected a floating-point"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b[:3]), r"bias: expected shape \(4,\)"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b[None]), "bias: expected 1 dimensions"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b * float("nan")), "bias: expected finite"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y[:3], W, b), "target: expected 6 labels"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y + 4, W, b), r"target: labels must lie in \[0, 3\]"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y - 5, W, b), r"target: labels must lie in \[0, 3\]"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y.double(), W, b), "target: expected an integer tensor"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, num_samples=0), "num_samples: expected an integer >= 1"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, num_samples=2.0), "num_samples: expected an integer"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, num_samples=True), "num_samples: expected an integer"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, p=1.0), r"p: expected a dropout probability in \[0, 1\)"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, p=-0.1), "p: expected a dropout probability"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, p="0.5"), "p: expected a dropout probability"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, p=False), "p: expected a dropout probability"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, combine="sum"), "combine: expected one of"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, reduction="avg"), "reduction: expected one of"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, masks=m.double()), "masks: expected a bool tensor"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, masks=m[:5]), r"masks: expected shape \(B, num_samples, F\)"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, masks=m[:, :, :4]), "masks: expected shape"),
    (lambda h, y, W, b, m: multi_sample_dropout_loss(h, y, W, b, num_samples=4, masks=m), "masks: expected shape"),
    (lambda h, y, W, b, m: MultiSampleDropoutLoss(num_samples=0), "num_samples: expected an integer >= 1"),
    (lambda h, y, W, b, m: MultiSampleDropoutLoss(p=1.5), "p: expected a dropout probability"),
    (lambda h, y, W, b, m: MultiSampleDropoutLoss(combine="x"), "combine: expected one of"),
    (lambda h, y, W, b, m: MultiSampleDropoutLoss(reduction="x"), "reduction: expected one of"),
    (lambda h, y, W, b, m: MultiSampleDropout(nn.Linear(5, 4), num_samples=-1), "num_samples: expected an integer"),
    (lambda h, y, W, b, m: MultiSampleDropout(nn.Linear(5, 4), p=1.0), "p: expected a dropout probability"),
    (lambda h, y, W, b, m: MultiSampleDropout(nn.Linear(5, 4), combine="x"), "combine: expected one of"),
    (lambda h, y, W, b, m: MultiSampleDropout(nn.Linear(5, 4).double())(h[0]), "features: expected 2 dimensions"),
    (lambda h, y, W, b, m: MultiSampleDropout(nn.Linear(5, 4).double())(h, masks=m[:, :2]), "masks: expected shape"),
    (lambda h, y, W, b, m: MultiSampleDropout(nn.Linear(5, 4).double())(h, masks=m.long()), "masks: expected a bool"),
    (lambda h, y, W, b, m: MultiSampleDropout(nn.Linear(5, 4).double())(h, y + 4), r"target: labels must lie in \[0, 3\]"),
    (lambda h, y, W, b, m: MultiSampleDropout(nn.Linear(5, 4).double())(h, y[:2]), "target: expected 6 labels"),
    (lambda h, y, W, b, m: MultiSampleDropout(nn.Linear(5, 4).double()).eval()(h, y + 4), "target: labels must lie"),
    (lambda h, y, W, b, m: MultiSampleDropout(nn.Linear(5, 4).double()).eval()(h * float("inf"), y), "features: expected finite"),
    (lambda h, y, W, b, m: dropout_masks(3, 4, num_samples=0), "num_samples: expected an integer"),
    (lambda h, y, W, b, m: dropout_masks(3, 4, p=1.0), "p: expected a dropout probability"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_inputs_name_the_argument(i):
    h, y, W, b, masks = _data()
    call, msg = BAD[i]
    with pytest.raises(ValueError, match="^" + msg):
        call(h, y, W, b, masks)


def test_type_errors():
    h, y, W, b, masks = _data()
    with pytest.raises(TypeError, match="^features: expected a torch.Tensor"):
        multi_sample_dropout_loss(h.tolist(), y, W, b)
    with pytest.raises(TypeError, match="^masks: expected a torch.Tensor"):
        multi_sample_dropout_loss(h, y, W, b, masks=masks.tolist())
    with pytest.raises(TypeError, match="^head: expected an nn.Module"):
        MultiSampleDropout(lambda x: x)


def test_smallest_legal_inputs():
    h = torch.tensor([[0.3, -1.2]], dtype=torch.float64)  # one example, two features
    W = torch.tensor([[1.0, 0.0]], dtype=torch.float64)  # one class: the loss is 0
    y = torch.tensor([0])
    assert multi_sample_dropout_loss(h, y, W, num_samples=1).item() == 0.0
    m = torch.ones(1, 1, 2, dtype=torch.bool)
    W2 = torch.eye(2, dtype=torch.float64)
    got = multi_sample_dropout_loss(h, torch.tensor([1]), W2, num_samples=1, p=0.0, masks=m)
    torch.testing.assert_close(got, F.cross_entropy(h, torch.tensor([1])))


# ---------------------------------------------------------------- mutation pass (#7): the gaps its survivors showed
def test_dropout_masks_keep_a_feature_whose_draw_equals_p():
    u = torch.rand(1, 1, 6, generator=torch.Generator().manual_seed(3))
    p = float(u[0, 0, 2])  # the boundary: u >= p is kept (Eq. 1)
    masks = dropout_masks(1, 6, 1, p, generator=torch.Generator().manual_seed(3))
    assert torch.equal(masks, u >= p) and bool(masks[0, 0, 2])


def test_type_error_messages_name_the_type_given():
    h, y, W, b, masks = _data()
    with pytest.raises(TypeError, match=r"^masks: expected a torch.Tensor, got list$"):
        multi_sample_dropout_loss(h, y, W, b, masks=masks.tolist())
    with pytest.raises(TypeError, match=r"^head: expected an nn.Module, got function$"):
        MultiSampleDropout(lambda x: x)


def test_registry_example_shapes_and_dtypes():
    from lossbook.classification import multi_sample_dropout as msd
    (h, y, W, b), kw = msd._msd_example(3, torch.float32, "cpu", 0)
    assert h.shape == (3, 16) and W.shape == (10, 16) and b.shape == (10,) and kw["masks"].shape == (3, 8, 16)
    assert h.dtype == W.dtype == b.dtype == torch.float32 and y.dtype == torch.long and kw["masks"].dtype == torch.bool
