"""lossbook.metrics held to well-kept libraries: torchmetrics' calibration error, scikit-learn's Brier score, log loss,
average precision and F1; and label noise against its transition matrix."""

import pytest
import torch
import torch.nn.functional as F

from lossbook.metrics import (
    adaptive_calibration_error,
    add_label_noise,
    average_precision,
    brier_score,
    calibration_bins,
    expected_calibration_error,
    mean_average_precision,
    multilabel_f1,
    negative_log_likelihood,
    noise_transition,
)


def _probs(n=500, c=6, seed=0, temp=1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(n, c, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)
    return (z / temp).softmax(1).to(dtype), y


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [1, 10, 15])
@pytest.mark.parametrize("seed", [0, 1])
def test_ece_equals_torchmetrics(norm, n_bins, seed):
    from torchmetrics.functional.classification import multiclass_calibration_error
    p, y = _probs(seed=seed, temp=0.2)  # sharp: many confidences are exactly 1 in float32
    ref = multiclass_calibration_error(p, y, num_classes=p.shape[1], n_bins=n_bins, norm=norm)
    assert expected_calibration_error(p, y, n_bins, norm) == pytest.approx(float(ref), abs=1e-6)


def test_ece_default_is_15_bins_l1():
    p, y = _probs(seed=3)
    assert expected_calibration_error(p, y) == expected_calibration_error(p, y, 15, "l1")
    assert expected_calibration_error(p, y) != expected_calibration_error(p, y, 10, "l1")
    assert expected_calibration_error(p, y) != expected_calibration_error(p, y, 15, "max")


def test_confidence_one_has_its_own_bin():
    p = torch.tensor([[1.0, 0.0], [0.96, 0.04], [0.97, 0.03]])
    y = torch.tensor([0, 1, 1])
    b = calibration_bins(p, y, 10)
    assert len(b["count"]) == 11 and b["count"][-1] == 1 and b["count"][9] == 2
    assert expected_calibration_error(p, y, 10) == pytest.approx((2 / 3) * 0.965, abs=1e-6)


def _adaptive_loop(p, y, n_bins):
    conf, pred = p.double().max(1)
    order = sorted(range(len(y)), key=lambda i: float(conf[i]))
    n, total, start = len(y), 0.0, 0
    for b in range(n_bins):
        size = n // n_bins + (1 if b < n % n_bins else 0)
        idx = order[start:start + size]
        start += size
        acc = sum(float(pred[i] == y[i]) for i in idx) / size
        c = sum(float(conf[i]) for i in idx) / size
        total += size / n * abs(acc - c)
    return total


@pytest.mark.parametrize("n_bins", [1, 7, 15])
def test_adaptive_ece_equals_loop(n_bins):
    p, y = _probs(n=301, seed=2, dtype=torch.float64)  # distinct confidences: no ties in the order
    assert adaptive_calibration_error(p, y, n_bins) == pytest.approx(_adaptive_loop(p, y, n_bins), abs=1e-12)
    assert adaptive_calibration_error(p, y) == adaptive_calibration_error(p, y, 15)
    assert adaptive_calibration_error(p[:5], y[:5], 15) == adaptive_calibration_error(p[:5], y[:5], 5)  # at most N bins


def test_brier_and_nll_equal_sklearn():
    from sklearn.metrics import brier_score_loss, log_loss
    p, y = _probs(seed=4, dtype=torch.float64)
    onehot = F.one_hot(y, p.shape[1]).numpy()
    ref = ((p.numpy() - onehot) ** 2).sum(1).mean()
    assert brier_score(p, y) == pytest.approx(ref, abs=1e-12)
    try:  # scikit-learn >= 1.7 has the multi-class Brier score (rescaled to [0, 1] by default)
        assert brier_score(p, y) == pytest.approx(2 * brier_score_loss(y.numpy(), p.numpy(), labels=list(range(6)), scale_by_half=True), abs=1e-12)
    except TypeError:
        pass
    assert negative_log_likelihood(p, y) == pytest.approx(log_loss(y.numpy(), p.numpy(), labels=list(range(6))), abs=1e-10)
    hard = F.one_hot((y + 1) % 6, 6).double()  # zero probability on the truth: clipped, finite
    assert negative_log_likelihood(hard, y) == pytest.approx(log_loss(y.numpy(), hard.numpy(), labels=list(range(6))), rel=1e-6)
    assert negative_log_likelihood(hard, y, eps=1e-3) == pytest.approx(-torch.log(torch.tensor(1e-3 / (1 + 5e-3 - 1e-3))).item(), rel=1e-6)


@pytest.mark.parametrize("bad, match", [
    (lambda p, y: (p[:, :, None], y), "probs: expected 2 dimensions"),
    (lambda p, y: (p, y[:-1]), "y"),
    (lambda p, y: (p, y + 6), "y"),
    (lambda p, y: (p * float("nan"), y), "probs: expected finite"),
    (lambda p, y: (p - 0.5, y), r"\[0, 1\]"),
    (lambda p, y: (p[:0], y[:0]), "empty"),
    (lambda p, y: (p.long(), y), "floating"),
])
@pytest.mark.parametrize("fn", [expected_calibration_error, adaptive_calibration_error, brier_score,
                                negative_log_likelihood, calibration_bins])
def test_calibration_bad_inputs(fn, bad, match):
    p, y = _probs(n=20)
    with pytest.raises(ValueError, match=match):
        fn(*bad(p, y))


def test_calibration_bad_arguments():
    p, y = _probs(n=20)
    with pytest.raises(ValueError, match="norm"):
        expected_calibration_error(p, y, norm="l3")
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(p, y, n_bins=0)
    with pytest.raises(ValueError, match="n_bins"):
        adaptive_calibration_error(p, y, n_bins=0)
    with pytest.raises(ValueError, match="eps"):
        negative_log_likelihood(p, y, eps=0.0)


def _multilabel(n=200, L=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = (torch.rand(n, L, generator=g) < 0.3).long()
    s = (t + 0.8 * torch.randn(n, L, generator=g)).sigmoid()
    return s, t


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_equals_sklearn(seed):
    from sklearn.metrics import average_precision_score
    s, t = _multilabel(seed=seed)
    assert mean_average_precision(s, t) == pytest.approx(average_precision_score(t.numpy(), s.numpy(), average="macro"), abs=1e-12)
    q = torch.round(s * 4) / 4  # many tied scores: one threshold per distinct score, as scikit-learn
    assert mean_average_precision(q, t) == pytest.approx(average_precision_score(t.numpy(), q.numpy(), average="macro"), abs=1e-12)
    for l in range(t.shape[1]):
        assert average_precision(q[:, l], t[:, l]) == pytest.approx(average_precision_score(t[:, l].numpy(), q[:, l].numpy()), abs=1e-12)


def test_map_skips_labels_without_positives():
    from sklearn.metrics import average_precision_score
    s, t = _multilabel()
    t[:, 2] = 0
    m, skipped = mean_average_precision(s, t, return_counts=True)
    keep = [l for l in range(t.shape[1]) if l != 2]
    assert skipped == 1 and m == pytest.approx(average_precision_score(t[:, keep].numpy(), s[:, keep].numpy()), abs=1e-12)
    assert mean_average_precision(s, t) == m
    with pytest.raises(ValueError, match="no label has a positive"):
        mean_average_precision(s, torch.zeros_like(t))


@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.9])
def test_f1_equals_sklearn(average, threshold):
    from sklearn.metrics import f1_score
    s, t = _multilabel(seed=5)
    t[:, 0] = 0  # a label with neither true nor (at 0.9) predicted positives: zero_division=0
    ref = f1_score(t.numpy(), (s >= threshold).long().numpy(), average=average, zero_division=0)
    assert multilabel_f1(s, t, threshold, average) == pytest.approx(ref, abs=1e-12)
    assert multilabel_f1(s, t) == multilabel_f1(s, t, 0.5, "micro")


@pytest.mark.parametrize("fn", [mean_average_precision, multilabel_f1])
def test_multilabel_bad_inputs(fn):
    s, t = _multilabel()
    with pytest.raises(ValueError, match="same shape"):
        fn(s, t[:, :-1])
    with pytest.raises(ValueError, match="0/1"):
        fn(s, t * 2)
    with pytest.raises(ValueError, match="finite"):
        fn(s * float("nan"), t)
    with pytest.raises(ValueError, match="2 dimensions"):
        fn(s[:, 0], t[:, 0])
    with pytest.raises(ValueError, match="empty"):
        fn(s[:0], t[:0])
    if fn is multilabel_f1:
        with pytest.raises(ValueError, match="average"):
            fn(s, t, average="weighted")


def test_noise_transition_matrices():
    T = noise_transition(4, 0.2)
    assert torch.allclose(T, torch.tensor([[0.8] + [0.2 / 3] * 3, [0.2 / 3, 0.8, 0.2 / 3, 0.2 / 3],
                                           [0.2 / 3, 0.2 / 3, 0.8, 0.2 / 3], [0.2 / 3] * 3 + [0.8]], dtype=torch.float64))
    P = noise_transition(4, 0.2, "pair")
    assert torch.equal(P, torch.tensor([[0.8, 0.2, 0, 0], [0, 0.8, 0.2, 0], [0, 0, 0.8, 0.2], [0.2, 0, 0, 0.8]], dtype=torch.float64))
    assert torch.equal(noise_transition(3, 0.0), torch.eye(3, dtype=torch.float64))
    for bad, match in [((1, 0.1), "at least 2"), ((3, 1.0), "rate"), ((3, -0.1), "rate"), ((0, 0.1), "n_classes")]:
        with pytest.raises(ValueError, match=match):
            noise_transition(*bad)
    with pytest.raises(ValueError, match="kind"):
        noise_transition(3, 0.1, "uniform")


@pytest.mark.parametrize("kind", ["symmetric", "pair"])
def test_label_noise_follows_its_matrix(kind):
    y = torch.arange(5).repeat(4000)
    T = noise_transition(5, 0.3, kind)
    noisy, flipped = add_label_noise(y, T, seed=1)
    assert torch.equal(flipped, noisy != y)
    emp = torch.zeros(5, 5, dtype=torch.float64).index_put_((y, noisy), torch.ones(len(y), dtype=torch.float64), accumulate=True) / 4000
    assert (emp - T).abs().max() < 0.03  # 4000 draws per row: 4 standard errors
    assert torch.equal(add_label_noise(y, T, seed=1)[0], noisy)
    assert not torch.equal(add_label_noise(y, T, seed=2)[0], noisy)
    assert torch.equal(add_label_noise(y, noise_transition(5, 0.0), seed=1)[0], y)


def test_label_noise_bad_inputs():
    y = torch.arange(5)
    with pytest.raises(ValueError, match="square"):
        add_label_noise(y, torch.full((5, 4), 0.25))
    with pytest.raises(ValueError, match="row-stochastic"):
        add_label_noise(y, torch.full((5, 5), 0.5))
    with pytest.raises(ValueError, match="y"):
        add_label_noise(y + 1, noise_transition(5, 0.1))
