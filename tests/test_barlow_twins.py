"""Tests for lossbook.ssl.barlow_twins (Zbontar et al. 2021, Barlow Twins).

The card's reference library (lightly) is not installed here, so the reference is (a) a plain float64 loop transcribed
from the paper's Eq. (1) with the official code's normalisation (biased batch variance + eps, C divided by N), and
(b) the official `main.py` forward (nn.BatchNorm1d(affine=False), off_diagonal) rewritten for one process. The paper's
Algorithm 1 (torch.std, unbiased) differs from the code by a factor (N-1)/N on C; a test pins that relation. Both
branches of the implementation (D <= 2N: the D x D product; D > 2N: the Gram form) are compared with both.
The DDP test runs two gloo processes and checks that loss and gradients equal one process with the whole batch.
"""

import math

import pytest
import torch
import torch.nn as nn
from ddp_utils import run_distributed

from lossbook.ssl.barlow_twins import (
    BarlowTwinsLoss,
    BarlowTwinsProjector,
    barlow_twins_loss,
    cross_correlation,
    off_diagonal,
)

SHAPES = [(8, 5), (16, 31), (16, 32), (6, 20), (3, 1)]  # direct (D < 2N) and Gram (D >= 2N) branches, D = 1


def _views(N=8, D=5, dtype=torch.float64, seed=0, device="cpu", requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(N, D, generator=g, dtype=torch.float64) * 2 + 1
    z2 = 0.6 * z1 + torch.randn(N, D, generator=g, dtype=torch.float64)  # correlated views
    z1, z2 = z1.to(device=device, dtype=dtype), z2.to(device=device, dtype=dtype)
    return z1.requires_grad_(requires_grad), z2.requires_grad_(requires_grad)


def _reference_loop(z1, z2, lambd, eps):
    "Eq. (1) with the official normalisation, one entry at a time in Python floats."
    a, b = z1.tolist(), z2.tolist()
    N, D = len(a), len(a[0])

    def standardise(z):
        cols = []
        for i in range(D):
            col = [z[n][i] for n in range(N)]
            mu = sum(col) / N
            var = sum((v - mu) ** 2 for v in col) / N  # biased, as BatchNorm
            cols.append([(v - mu) / math.sqrt(var + eps) for v in col])
        return cols

    A, B = standardise(a), standardise(b)
    C = [[sum(A[i][n] * B[j][n] for n in range(N)) / N for j in range(D)] for i in range(D)]
    on = sum((1 - C[i][i]) ** 2 for i in range(D))
    off = sum(C[i][j] ** 2 for i in range(D) for j in range(D) if i != j)
    return on + lambd * off, on, off, C


def _official(z1, z2, lambd, eps):
    "The official main.py forward for one process (differentiable, for gradient comparisons)."
    bn = nn.BatchNorm1d(z1.shape[1], affine=False, eps=eps).to(z1)
    c = bn(z1).T @ bn(z2) / z1.shape[0]
    on_diag = torch.diagonal(c).add(-1).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("N,D", SHAPES)
@pytest.mark.parametrize("lambd,eps", [(5e-3, 1e-5), (0.0, 1e-5), (0.3, 1e-3)])
def test_matches_float64_loop(N, D, lambd, eps):
    z1, z2 = _views(N, D)
    loss, on, off = barlow_twins_loss(z1, z2, lambd=lambd, eps=eps, return_terms=True)
    ref, ref_on, ref_off, ref_C = _reference_loop(z1, z2, lambd, eps)
    assert loss.item() == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert on.item() == pytest.approx(ref_on, rel=1e-10, abs=1e-12)
    assert off.item() == pytest.approx(ref_off, rel=1e-9, abs=1e-11)
    torch.testing.assert_close(cross_correlation(z1, z2, eps=eps), torch.tensor(ref_C, dtype=torch.float64),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("N,D", SHAPES)
def test_value_and_gradient_match_official_code(N, D):
    z1, z2 = _views(N, D, requires_grad=True)
    loss = barlow_twins_loss(z1, z2, lambd=0.0051)
    g1, g2 = torch.autograd.grad(loss, (z1, z2))
    ref = _official(z1, z2, 0.0051, 1e-5)
    r1, r2 = torch.autograd.grad(ref, (z1, z2))
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g1, r1, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(g2, r2, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("N,D", [(8, 5), (16, 40)])
def test_paper_algorithm_1_is_the_unbiased_variant(N, D):
    # the paper's Algorithm 1 normalises with torch.std (unbiased, 1/(N-1)); the official code (which we follow) with
    # BatchNorm's biased variance: for eps -> 0 the two cross-correlations differ by exactly (N-1)/N (Eq. 3a)
    z1, z2 = _views(N, D)
    alg1 = lambda z: (z - z.mean(0)) / z.std(0)
    c_alg1 = alg1(z1).T @ alg1(z2) / N
    torch.testing.assert_close(c_alg1, (N - 1) / N * cross_correlation(z1, z2, eps=1e-14), rtol=1e-10, atol=1e-12)
    # identical views: the official diagonal is 1 (up to eps), Algorithm 1's is (N-1)/N, never 1
    diag = torch.diagonal(cross_correlation(z1, z1, eps=1e-14))
    torch.testing.assert_close(diag, torch.ones(D, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.diagonal(alg1(z1).T @ alg1(z1) / N), torch.full((D,), (N - 1) / N,
                               dtype=torch.float64), rtol=0, atol=1e-12)


def test_both_branches_agree_at_the_threshold():
    # D = 2N - 1 uses the D x D product, D = 2N the Gram form; a column that is constant in both views adds
    # exactly (1 - 0)^2 = 1 (its row and column of C vanish)
    z1, z2 = _views(8, 15)
    base = barlow_twins_loss(z1, z2)
    pad = torch.full((8, 1), 3.0, dtype=torch.float64)
    torch.testing.assert_close(barlow_twins_loss(torch.cat([z1, pad], 1), torch.cat([z2, pad], 1)), base + 1,
                               rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("N,D", [(8, 5), (4, 12)])  # direct and Gram branches
def test_gradcheck(N, D):
    z1, z2 = _views(N, D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: barlow_twins_loss(a, b, lambd=0.1), (z1, z2))
    assert torch.autograd.gradcheck(lambda a, b: cross_correlation(a, b), (z1, z2))


# ---------------------------------------------------------------- API
def test_float32_matches_float64(device, dtype):  # fixtures from conftest.py
    z1, z2 = _views(64, 48, dtype=dtype, device=device)
    loss = barlow_twins_loss(z1, z2)
    assert loss.dtype == dtype and loss.device == z1.device
    ref = barlow_twins_loss(*_views(64, 48))
    torch.testing.assert_close(loss.double().cpu(), ref, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6)


def test_half_precision_is_computed_in_float32():
    z1, z2 = _views(32, 16)
    loss = barlow_twins_loss(z1.bfloat16(), z2.bfloat16())
    assert loss.dtype == torch.float32
    ref = barlow_twins_loss(z1.bfloat16().float(), z2.bfloat16().float())
    torch.testing.assert_close(loss, ref)


def test_module_equals_function():
    z1, z2 = _views(16, 6)
    m = BarlowTwinsLoss(lambd=0.02, eps=1e-4)
    torch.testing.assert_close(m(z1, z2), barlow_twins_loss(z1, z2, lambd=0.02, eps=1e-4))
    loss, on, off = BarlowTwinsLoss(lambd=0.02, return_terms=True)(z1, z2)
    torch.testing.assert_close(loss, on + 0.02 * off)
    assert "lambd=0.02" in repr(m)


def test_gather_distributed_without_process_group_is_a_no_op():
    z1, z2 = _views(16, 6)
    torch.testing.assert_close(barlow_twins_loss(z1, z2, gather_distributed=True), barlow_twins_loss(z1, z2))


def test_projector_matches_official_layer_pattern():
    p = BarlowTwinsProjector(2048, (64, 64, 32))
    kinds = [type(m) for m in p]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear]
    linears = [m for m in p if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 64), (64, 64), (64, 32)]
    assert all(m.bias is None for m in linears)
    assert all(m.affine for m in p if isinstance(m, nn.BatchNorm1d))  # the projector's BN keeps its affine parameters
    assert p.out_dim == 32 and p(torch.randn(4, 2048)).shape == (4, 32)
    single = BarlowTwinsProjector(10, (7,))
    assert [type(m) for m in single] == [nn.Linear] and single[0].bias is None


# ---------------------------------------------------------------- properties from the card
def test_collapse_gives_D_exactly():
    for D in (1, 7, 40):
        const = torch.full((8, D), 2.0)
        assert barlow_twins_loss(const, const).item() == float(D)
        assert barlow_twins_loss(const, torch.randn(8, D)).item() == pytest.approx(float(D), abs=1e-6)


def test_whitened_identical_views_give_zero():
    N, D = 64, 16
    w = torch.randn(N, D, dtype=torch.float64)
    w, _ = torch.linalg.qr(w - w.mean(0))
    w = w * math.sqrt(N)
    C = cross_correlation(w, w)
    torch.testing.assert_close(C, torch.eye(D, dtype=torch.float64) / (1 + 1e-5), rtol=1e-10, atol=1e-12)
    assert barlow_twins_loss(w, w).item() < 1e-8


def test_nonnegative_and_symmetric():
    for seed in range(5):
        z1, z2 = _views(12, 30, seed=seed)
        loss = barlow_twins_loss(z1, z2, lambd=0.05)
        assert loss.item() >= 0
        torch.testing.assert_close(barlow_twins_loss(z2, z1, lambd=0.05), loss, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(cross_correlation(z2, z1), cross_correlation(z1, z2).T)


def test_invariant_to_per_dimension_affine_maps():
    z1, z2 = _views(16, 6)
    g = torch.Generator().manual_seed(1)
    a1, a2 = torch.rand(6, generator=g, dtype=torch.float64) * 5 + 0.1, torch.rand(6, generator=g, dtype=torch.float64) + 0.1
    b1, b2 = torch.randn(6, generator=g, dtype=torch.float64) * 10, torch.randn(6, generator=g, dtype=torch.float64)
    ref = barlow_twins_loss(z1, z2, eps=1e-14)
    torch.testing.assert_close(barlow_twins_loss(a1 * z1 + b1, a2 * z2 + b2, eps=1e-14), ref, rtol=1e-9, atol=1e-12)
    # flipping the sign of the same dimensions in both views keeps C_ii and C_ij^2
    s = torch.tensor([1.0, -1, 1, -1, -1, 1], dtype=torch.float64)
    torch.testing.assert_close(barlow_twins_loss(s * z1, s * z2), barlow_twins_loss(z1, z2), rtol=1e-12, atol=1e-12)
    # ... but flipping it in one view only does not (the test can fail)
    assert not torch.allclose(barlow_twins_loss(s * z1, z2), barlow_twins_loss(z1, z2))


def test_permutation_invariances():
    z1, z2 = _views(16, 6)
    ref = barlow_twins_loss(z1, z2)
    ps, pd = torch.randperm(16), torch.randperm(6)
    torch.testing.assert_close(barlow_twins_loss(z1[ps], z2[ps]), ref, rtol=1e-12, atol=1e-12)  # same samples
    torch.testing.assert_close(barlow_twins_loss(z1[:, pd], z2[:, pd]), ref, rtol=1e-12, atol=1e-12)  # same dims
    assert not torch.allclose(barlow_twins_loss(z1[ps], z2), ref)  # pairs broken: different
    pd2 = torch.roll(torch.arange(6), 1)
    assert not torch.allclose(barlow_twins_loss(z1[:, pd2], z2), ref)  # dims matched wrongly: different


def test_lambda_zero_is_the_invariance_term_only():
    z1, z2 = _views(16, 6)
    loss, on, off = barlow_twins_loss(z1, z2, return_terms=True)
    torch.testing.assert_close(barlow_twins_loss(z1, z2, lambd=0.0), on)
    C = cross_correlation(z1, z2)
    torch.testing.assert_close(on, (1 - torch.diagonal(C)).pow(2).sum())
    torch.testing.assert_close(off, off_diagonal(C).pow(2).sum())


def test_independent_views_have_off_diagonal_about_one_over_N():
    N, D = 512, 64
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(N, D, generator=g, dtype=torch.float64), torch.randn(N, D, generator=g, dtype=torch.float64)
    _, _, off = barlow_twins_loss(z1, z2, return_terms=True)
    mean_sq = off.item() / (D * (D - 1))
    assert 0.8 / N < mean_sq < 1.2 / N  # E C_ij^2 = 1/N; 4032 terms make the average tight


def test_off_diagonal_equals_mask():
    for D in (1, 2, 5):
        x = torch.randn(D, D)
        mask = ~torch.eye(D, dtype=torch.bool)
        torch.testing.assert_close(off_diagonal(x), x[mask])
        torch.testing.assert_close(off_diagonal(x.T), x.T[mask])  # non-contiguous input
    assert off_diagonal(torch.randn(4, 4)).numel() == 12


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("z1,z2,match", [
    (torch.randn(8, 4), torch.randn(8, 5), "same shape"),
    (torch.randn(8, 4), torch.randn(7, 4), "same shape"),
    (torch.randn(1, 4), torch.randn(1, 4), "at least 2"),
    (torch.randn(0, 4), torch.randn(0, 4), "empty batch"),
    (torch.randn(8), torch.randn(8), "expected 2 dimensions"),
    (torch.randn(2, 8, 4), torch.randn(2, 8, 4), "expected 2 dimensions"),
    (torch.randint(0, 3, (8, 4)), torch.randint(0, 3, (8, 4)), "floating-point"),
    (torch.tensor([[float("nan"), 1.0], [2.0, 3.0]]), torch.randn(2, 2), "z1: expected finite"),
    (torch.randn(2, 2), torch.tensor([[float("inf"), 1.0], [2.0, 3.0]]), "z2: expected finite"),
])
def test_bad_inputs_raise(z1, z2, match):
    with pytest.raises(ValueError, match=match):
        barlow_twins_loss(z1, z2)
    with pytest.raises(ValueError, match=match):
        cross_correlation(z1, z2)


def test_nan_in_one_entry_of_a_wide_gram_batch_is_caught():
    z1, z2 = torch.randn(4, 64), torch.randn(4, 64)  # the Gram branch
    z2[2, 17] = float("nan")
    with pytest.raises(ValueError, match="z2: expected finite values, got 1 NaN"):
        barlow_twins_loss(z1, z2, lambd=0.0)


def test_overflow_is_reported_not_returned():
    z = torch.full((8, 4), 3e38)  # finite, but the batch sum overflows float32: the mean is inf, the result NaN
    with pytest.raises(ValueError, match="overflow"):
        barlow_twins_loss(z, z.flip(0))


def test_bad_hyper_parameters():
    z1, z2 = _views(8, 4)
    with pytest.raises(ValueError, match="lambd"):
        barlow_twins_loss(z1, z2, lambd=-1.0)
    with pytest.raises(ValueError, match="eps"):
        barlow_twins_loss(z1, z2, eps=0.0)
    with pytest.raises(ValueError, match="lambd"):
        BarlowTwinsLoss(lambd=float("nan"))
    with pytest.raises(ValueError, match="square"):
        off_diagonal(torch.randn(3, 4))
    with pytest.raises(ValueError, match="sizes"):
        BarlowTwinsProjector(16, ())
    with pytest.raises(ValueError, match="in_dim"):
        BarlowTwinsProjector(0, (8,))


# ---------------------------------------------------------------- DDP: 2 processes == 1 process with the whole batch
SIZES_EVEN, SIZES_UNEVEN = (8, 8), (5, 11)


def _ddp_problem():
    g = torch.Generator().manual_seed(0)
    X1 = torch.randn(16, 6, generator=g, dtype=torch.float64)
    X2 = X1 + 0.3 * torch.randn(16, 6, generator=g, dtype=torch.float64)  # two "views"
    torch.manual_seed(0)
    # no BatchNorm inside the model: only the loss couples the batch (a projector's BN would need SyncBatchNorm)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 10)).double()
    return X1, X2, model


def _single_process():
    X1, X2, model = _ddp_problem()
    loss = barlow_twins_loss(model(X1), model(X2), lambd=0.05)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _ddp_worker(rank, world, scenarios):
    out = {}
    for name, sizes, gather_distributed in scenarios:
        X1, X2, model = _ddp_problem()
        ddp = nn.parallel.DistributedDataParallel(model)
        start = sum(sizes[:rank])
        rows = slice(start, start + sizes[rank])
        loss = barlow_twins_loss(ddp(X1[rows]), ddp(X2[rows]), lambd=0.05, gather_distributed=gather_distributed)
        loss.backward()
        out[name] = {"loss": loss.detach(), "grads": [p.grad.clone() for p in model.parameters()]}
    return out


def test_ddp_two_processes_equal_one_process():
    scenarios = [("even", SIZES_EVEN, True), ("uneven", SIZES_UNEVEN, True), ("local", SIZES_EVEN, False)]
    results = run_distributed(_ddp_worker, 2, (scenarios,))
    ref_loss, ref_grads = _single_process()
    for res in results:
        for name in ("even", "uneven"):
            torch.testing.assert_close(res[name]["loss"], ref_loss, rtol=1e-12, atol=1e-12)
            for g, g0 in zip(res[name]["grads"], ref_grads):
                torch.testing.assert_close(g, g0, rtol=1e-10, atol=1e-12)
        # without the gather each rank sees its own 8 samples: the loss and the gradients differ
        assert not torch.allclose(res["local"]["loss"], ref_loss, rtol=1e-3)
        assert not all(torch.allclose(g, g0, rtol=1e-3, atol=1e-8) for g, g0 in zip(res["local"]["grads"], ref_grads))
    assert not torch.allclose(results[0]["local"]["loss"], results[1]["local"]["loss"])


# ---------------------------------------------------------------- what mutation testing asked for
def test_error_messages_start_with_the_argument_name():
    "Each message starts with the argument's name (`name: ...`), in the functions, the module and the projector."
    z1, z2 = _views(8, 4)
    cases = [
        (lambda: barlow_twins_loss(z1[0], z2[0]), "z1"), (lambda: barlow_twins_loss(z1, z2[0]), "z2"),
        (lambda: barlow_twins_loss(z1[None], z2[None]), "z1"), (lambda: cross_correlation(z1, z2[None]), "z2"),
        (lambda: barlow_twins_loss(z1.long(), z2), "z1"), (lambda: barlow_twins_loss(z1, z2.long()), "z2"),
        (lambda: barlow_twins_loss(z1, z2[:7]), "z1 and z2 must have the same shape"),
        (lambda: cross_correlation(z1, z2[:, :3]), "z1 and z2 must have the same shape"),
        (lambda: barlow_twins_loss(z1[:1], z2[:1]), r"z1: expected at least 2 sample\(s\)"),
        (lambda: cross_correlation(z1[:1], z2[:1]), r"z1: expected at least 2 sample\(s\)"),
        (lambda: barlow_twins_loss(z1, z2, lambd=-1.0), "lambd"), (lambda: barlow_twins_loss(z1, z2, eps=0.0), "eps"),
        (lambda: cross_correlation(z1, z2, eps=-1.0), "eps"),
        (lambda: BarlowTwinsLoss(lambd=-1.0), "lambd"), (lambda: BarlowTwinsLoss(eps=0.0), "eps"),
        (lambda: BarlowTwinsLoss(eps=float("nan")), "eps"),
        (lambda: off_diagonal(torch.randn(3)), "x"), (lambda: off_diagonal(torch.randn(2, 2, 2)), "x"),
        (lambda: off_diagonal(torch.randn(3, 4)), r"x \(a square matrix\) and its transpose must have the same shape"),
        (lambda: BarlowTwinsProjector(0, (8,)), "in_dim"), (lambda: BarlowTwinsProjector(4, (8, 0)), "sizes"),
        (lambda: BarlowTwinsProjector(4, ()), r"sizes \(at least one layer width\): expected a finite number > 0, got 0$"),
    ]
    for call, name in cases:
        # a bare argument name must be followed by ':' (a shape check naming two arguments does not count)
        with pytest.raises(ValueError, match=rf"^{name}:" if name.isidentifier() else rf"^{name}(?:[:, ]|$)"):
            call()


def test_non_finite_matrices_and_integers_are_fine_for_off_diagonal():
    x = torch.arange(9.0).view(3, 3)
    x[0, 1] = float("nan")
    out = off_diagonal(x)
    assert out.shape == (6,) and out[0].isnan() and torch.equal(out[1:], torch.tensor([2.0, 3.0, 5.0, 6.0, 7.0]))
    assert torch.equal(off_diagonal(torch.arange(4).view(2, 2)), torch.tensor([1, 2]))


def test_non_finite_result_message(monkeypatch):
    "The overflow message names the function, the dtype and the largest |z|; under DDP it says the NaN may be elsewhere."
    import lossbook.ssl.barlow_twins as mod
    z = torch.full((8, 4), 3e38)
    msg = (r"^barlow_twins_loss: the result is not finite although z1 and z2 are; the embeddings overflow in "
           r"torch.float32 \(\|z\| up to 3e\+38\); compute them in a wider dtype or rescale them$")
    with pytest.raises(ValueError, match=msg):
        barlow_twins_loss(z, z.flip(0))
    with pytest.raises(ValueError, match=msg.replace("barlow_twins_loss", "cross_correlation")):
        cross_correlation(z, z.flip(0))
    monkeypatch.setattr(mod, "is_distributed", lambda: True)  # as under torch.distributed (no gather: the default)
    with pytest.raises(ValueError, match=r"^barlow_twins_loss: the result is not finite although z1 and z2 are on this "
                                         r"rank \(another rank's embeddings may hold NaN/Inf\); the embeddings overflow"):
        barlow_twins_loss(z, z.flip(0))


@pytest.mark.parametrize("call,gathers", [
    (lambda a, b: barlow_twins_loss(a, b), False), (lambda a, b: cross_correlation(a, b), False),
    (lambda a, b: BarlowTwinsLoss()(a, b), False),
    (lambda a, b: barlow_twins_loss(a, b, gather_distributed=True), True),
    (lambda a, b: cross_correlation(a, b, gather_distributed=True), True),
    (lambda a, b: BarlowTwinsLoss(gather_distributed=True)(a, b), True),
])
def test_gather_distributed_default_and_pass_through(monkeypatch, call, gathers):
    "Under torch.distributed (faked: is_distributed -> True, gather -> identity) only gather_distributed=True gathers."
    import lossbook.ssl.barlow_twins as mod
    seen = []
    monkeypatch.setattr(mod, "is_distributed", lambda: True)
    monkeypatch.setattr(mod, "gather", lambda t: seen.append(t.shape) or t)
    z1, z2 = _views(8, 4)
    call(z1, z2)
    assert seen == ([(8, 4), (8, 4)] if gathers else [])


def test_defaults_are_pinned():
    z1, z2 = _views(8, 5, seed=3)
    assert barlow_twins_loss(z1, z2) == barlow_twins_loss(z1, z2, 5e-3, 1e-5, False, False)
    assert barlow_twins_loss(z1, z2) != barlow_twins_loss(z1, z2, 6e-3)
    assert barlow_twins_loss(z1, z2) != barlow_twins_loss(z1, z2, eps=1e-3)
    assert torch.equal(cross_correlation(z1, z2), cross_correlation(z1, z2, 1e-5, False))
    assert not torch.equal(cross_correlation(z1, z2), cross_correlation(z1, z2, 1e-3))
    m = BarlowTwinsLoss()
    assert (m.lambd, m.eps, m.gather_distributed, m.return_terms) == (5e-3, 1e-5, False, False)
    assert m(z1, z2) == barlow_twins_loss(z1, z2)
    m = BarlowTwinsLoss(0.0, 1e-3, True, True)
    assert (m.lambd, m.eps, m.gather_distributed, m.return_terms) == (0.0, 1e-3, True, True)  # lambd = 0 is legal
    loss, on, off = m(z1, z2)
    assert loss == on and off > 0
    import inspect  # the projector's default widths (the paper's 8192 x 3) without building 200M parameters
    assert inspect.signature(BarlowTwinsProjector).parameters["sizes"].default == (8192, 8192, 8192)


def test_cross_correlation_under_autocast_is_float32():
    z1, z2 = _views(16, 6, dtype=torch.float32, seed=4)
    ref = cross_correlation(z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = cross_correlation(z1, z2)
        v = barlow_twins_loss(z1, z2)
    assert c.dtype == torch.float32 and v.dtype == torch.float32
    torch.testing.assert_close(c, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(v, barlow_twins_loss(z1, z2), rtol=1e-6, atol=1e-6)


def test_projector_dimensions():
    p = BarlowTwinsProjector(5, (7, 6, 4, 3))
    linears = [m for m in p if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 7), (7, 6), (6, 4), (4, 3)]
    assert [m.num_features for m in p if isinstance(m, nn.BatchNorm1d)] == [7, 6, 4]
    assert (p.in_dim, p.out_dim) == (5, 3)
    assert BarlowTwinsProjector(5.0, [3.0]).in_dim == 5


@pytest.mark.parametrize("N,D,gram", [(8, 15, False), (8, 16, True), (8, 17, True), (3, 1, False), (2, 3, False)])
def test_the_cheaper_branch_is_taken(monkeypatch, N, D, gram):
    "D >= 2N: the Gram form (Eq. 6, two N x N products); D < 2N: the D x D product and one dot product (Eq. 5)."
    calls = []
    real = torch.dot
    monkeypatch.setattr(torch, "dot", lambda a, b: calls.append(a.numel()) or real(a, b))
    z1, z2 = _views(N, D, seed=5)
    loss = barlow_twins_loss(z1, z2, lambd=0.3)
    assert calls == ([] if gram else [D * D])
    torch.testing.assert_close(loss, torch.tensor(_reference_loop(z1, z2, 0.3, 1e-5)[0], dtype=torch.float64),
                               rtol=1e-10, atol=1e-12)
