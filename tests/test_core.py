import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from ddp_utils import run_distributed

from lossbook.core import (
    check_labels,
    check_positive,
    check_same_shape,
    check_tensor,
    gather,
    get_device,
    local_slice,
    reduce,
    seed_everything,
    world_size,
)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("bad, match", [
    (torch.randn(3), "expected 2 dimensions"),
    (torch.zeros(0, 4), "empty batch"),
    (torch.tensor([[0.0, float("nan")]]), "1 NaN"),
    (torch.tensor([[float("inf"), 0.0]]), "1 Inf"),
    (torch.ones(2, 2, dtype=torch.long), "floating-point"),
])
def test_check_tensor_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        check_tensor(bad, "logits", ndim=2, floating=True)


def test_check_tensor_names_argument_and_accepts_good():
    x = torch.randn(2, 3, dtype=torch.float64)
    assert check_tensor(x, "z", ndim=(2, 3), floating=True) is x
    with pytest.raises(ValueError, match="^z1: "):
        check_tensor(torch.randn(1, 3), "z1", min_batch=2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_tensor([1.0, 2.0], "x")


def test_check_labels():
    assert check_labels(torch.tensor([0, 2]), 3, batch=2).tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"\[0, 2\].*from -1 to 2"):
        check_labels(torch.tensor([-1, 2]), 3)
    with pytest.raises(ValueError, match="from 0 to 3"):
        check_labels(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="expected 4 labels"):
        check_labels(torch.tensor([0, 1]), 3, batch=4)
    with pytest.raises(ValueError, match="integer"):
        check_labels(torch.tensor([0.0, 1.0]), 3)


def test_check_same_shape_and_positive():
    with pytest.raises(ValueError, match=r"input and target must have the same shape, got \(3, 1\) and \(3,\)"):
        check_same_shape(torch.zeros(3, 1), torch.zeros(3))
    assert check_positive(0.5, "a") == 0.5
    for v in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="^a: "):
            check_positive(v, "a")
    assert check_positive(0, "a", strict=False) == 0.0


def test_reduce():
    l = torch.tensor([1.0, 2.0, 6.0], dtype=torch.float64)
    assert reduce(l, "mean") == 3.0 and reduce(l, "sum") == 9.0 and reduce(l, "none") is l
    w = torch.tensor([1.0, 3.0, 0.0], dtype=torch.float64)
    assert reduce(l, "mean", w) == pytest.approx(7 / 4)
    assert reduce(l, "sum", w) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="reduction"):
        reduce(l, "avg")
    with pytest.raises(ValueError, match="same shape"):
        reduce(l, "mean", torch.ones(2))


def test_seed_and_device():
    a = torch.rand(4, generator=seed_everything(3))
    b = torch.rand(4, generator=seed_everything(3))
    assert torch.equal(a, b)
    assert get_device("cpu").type == "cpu"
    assert get_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            get_device("cuda")


def test_gather_is_identity_outside_distributed():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather(x) is x and world_size() == 1 and local_slice(3) == slice(0, 3)


# ---------------------------------------------------------------- distributed gather == one process
SIZES = (3, 5)  # unequal batches on the two ranks


def _data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(sum(SIZES), 4, generator=g, dtype=torch.float64)
    torch.manual_seed(1)
    model = nn.Linear(4, 3).double()
    return X, model


def _coupled_loss(z):
    "A loss that couples all samples of the batch (a Gram-matrix penalty)."
    z = z - z.mean(0)
    return ((z @ z.T) ** 2).sum() / len(z) ** 2


def _naive_gather(x):
    "all_gather without the gradient sum (each rank keeps only its own slice's gradient): the classic bug."
    pad = x.new_zeros(max(SIZES), *x.shape[1:])
    pad[: len(x)] = x.detach()
    full = [torch.empty_like(pad) for _ in SIZES]
    dist.all_gather(full, pad)
    parts = [f[:s] for f, s in zip(full, SIZES)]
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def _ddp_step(rank, world, naive):
    X, model = _data()
    ddp = nn.parallel.DistributedDataParallel(model)
    start = sum(SIZES[:rank])
    x = X[start : start + SIZES[rank]]
    z = ddp(x)
    zz = _naive_gather(z) if naive else gather(z)
    loss = _coupled_loss(zz)
    loss.backward()
    return {"loss": loss.detach(), "grads": [p.grad.clone() for p in model.parameters()],
            "slice": local_slice(len(x))}


@pytest.mark.parametrize("naive", [False, True], ids=["core_gather", "naive_gather"])
def test_gather_ddp_equals_single_process(naive):
    X, model = _data()
    loss = _coupled_loss(model(X))
    loss.backward()
    ref = [p.grad for p in model.parameters()]
    results = run_distributed(_ddp_step, 2, (naive,))
    for r, res in enumerate(results):
        torch.testing.assert_close(res["loss"], loss.detach(), rtol=1e-12, atol=1e-12)
        assert res["slice"] == slice(sum(SIZES[:r]), sum(SIZES[: r + 1]))
        same = all(torch.allclose(g, g0, rtol=1e-10, atol=1e-12) for g, g0 in zip(res["grads"], ref))
        # the core's gather reproduces one process exactly; the naive one is off by the world size
        assert same is (not naive)


def test_check_tensor_finite_fast_path_is_exact():
    big = torch.tensor([[3e38, 3e38]], dtype=torch.float32)  # finite values whose sum overflows to inf
    assert check_tensor(big, "x") is big
    with pytest.raises(ValueError, match="1 NaN and 1 Inf"):
        check_tensor(torch.tensor([[float("inf"), float("nan"), 1.0]]), "x")
    with pytest.raises(ValueError, match="0 NaN and 2 Inf"):  # +inf + -inf sums to NaN
        check_tensor(torch.tensor([[float("inf"), -float("inf")]]), "x")


def test_num_threads_sets_and_restores():
    from lossbook.core import num_threads
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # not the suite's 1, so that a no-op context manager fails below
        with num_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 3
        with num_threads(None):  # None leaves the count alone
            assert torch.get_num_threads() == 3
        with pytest.raises(RuntimeError), num_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 3  # restored after an exception too
    finally:
        torch.set_num_threads(before)


def test_set_threads_reads_omp_num_threads(monkeypatch):
    from lossbook.core import set_threads
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert set_threads() == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "junk")  # not a number: leave the count alone
        torch.set_num_threads(3)
        assert set_threads() == 3
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert set_threads() == 3
        assert set_threads(1) == 1 and set_threads(0) == 1  # an explicit count wins; at least one thread
    finally:
        torch.set_num_threads(before)


def test_seed_everything_seeds_python_numpy_and_torch():
    import random

    import numpy as np
    seed_everything(5)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    seed_everything(6)
    assert np.random.rand() != a[1]


def test_reduce_default_is_mean():
    l = torch.tensor([1.0, 2.0, 6.0], dtype=torch.float64)
    assert reduce(l) == 3.0


def test_check_real():
    from lossbook.core import check_real
    assert check_real(-2, "b") == -2.0 and check_real(torch.tensor(0.5), "b") == 0.5
    for bad in (float("nan"), float("inf"), "x", None):
        with pytest.raises(ValueError, match="^b: expected a finite real number"):
            check_real(bad, "b")
    with pytest.raises(ValueError, match="^a: expected a finite number > 0"):
        check_positive("x", "a")
