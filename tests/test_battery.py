"""One battery of checks over every registered loss (lossbook.registry).

Each loss is called on the inputs its registry entry builds (`example`), and on variations of them: other batch sizes
and seeds (hypothesis), dtypes, corrupted inputs, extreme scales, bf16 autocast, every reduction, two gloo processes,
and an independent computation of its value at the default arguments (tests/references.py).
"""
import inspect
import sys
import math

import pytest
import torch
from ddp_utils import run_distributed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from references import REFERENCES

from lossbook.registry import get, losses

SPECS = losses()
NAMES = [s.name for s in SPECS]
COUPLED = [s.name for s in SPECS if s.batch_coupled]
MODULES = [s.name for s in SPECS if s.module is not None]
BATCH = 11  # a prime: no feature dimension of an example coincides with it
HYP = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _example(spec, batch=BATCH, dtype=torch.float64, seed=0):
    args, kwargs = spec.example(batch, torch.float64, "cpu", seed)
    cast = lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
    return [cast(a) for a in args], {k: cast(v) for k, v in kwargs.items()}


def _named_tensors(spec, args, kwargs):
    "[(name, 'arg'|'kw', position or key, tensor)] for every tensor input, named by the function's signature."
    params = list(inspect.signature(spec.fn).parameters)
    out = [(params[i] if i < len(params) else f"args[{i}]", "arg", i, a) for i, a in enumerate(args)
           if isinstance(a, torch.Tensor)]
    out += [(k, "kw", k, v) for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
    return out


def _replace(args, kwargs, where, key, value):
    args, kwargs = list(args), dict(kwargs)
    if where == "arg":
        args[key] = value
    else:
        kwargs[key] = value
    return args, kwargs


def _batched(spec, args, kwargs, batch):
    return [t for t in _named_tensors(spec, args, kwargs) if t[3].ndim > 0 and t[3].shape[0] == batch]


def _with_grad(spec, args, kwargs, copy=True):
    "The inputs with requires_grad on every floating tensor, except those the spec declares constant_inputs."
    params = list(inspect.signature(spec.fn).parameters)
    def wants(name, t):
        return isinstance(t, torch.Tensor) and t.is_floating_point() and name not in spec.constant_inputs
    def on(t):
        return (t.detach().clone() if copy else t).requires_grad_()
    args = [on(a) if wants(params[i] if i < len(params) else None, a) else a for i, a in enumerate(args)]
    kwargs = {k: on(v) if wants(k, v) else v for k, v in kwargs.items()}
    return args, kwargs


def _call_with_grad(spec, args, kwargs):
    args, kwargs = _with_grad(spec, args, kwargs)
    value = spec.fn(*args, **kwargs)
    value.backward()
    grads = [a.grad for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor) and a.requires_grad]
    return value.detach(), grads


def test_every_paper_module_registers_a_loss():
    from lossbook.runner import find_notebooks
    from pathlib import Path
    nbs = find_notebooks(Path(__file__).resolve().parents[1] / "nbs")
    for info in nbs:
        mod = f"lossbook.{info.theme}.{info.slug}"
        why_none = info.meta.get("no_loss")  # a paper whose method is not a loss (a batch sampler, say) says so, with the reason
        if why_none:
            assert len(str(why_none)) > 20, f"{info.slug}: no_loss must say why the paper exports no loss"
            assert not any(s.fn.__module__ == mod for s in SPECS), f"{info.slug}: says no_loss but registers one"
            continue
        assert any(s.fn.__module__ == mod for s in SPECS), f"{info.slug}: its notebook registers no loss"


def test_constant_inputs_are_not_asked_for_gradients():
    "A loss that detaches a declared constant input passes; an undeclared detached input would give no gradient."
    from lossbook.registry import LossSpec
    def ranked(pred, target):
        return (pred - target.detach()).pow(2).mean()
    def ex(batch, dtype=torch.float64, device="cpu", seed=0):
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(batch, 3, generator=g, dtype=dtype), torch.randn(batch, 3, generator=g, dtype=dtype)), {}
    declared = LossSpec("ranked", ranked, None, 0, "toy", False, ex, ("mean",), 2, ("target",))
    _, grads = _call_with_grad(declared, *ex(4))
    assert len(grads) == 1 and torch.isfinite(grads[0]).all()
    undeclared = LossSpec("ranked", ranked, None, 0, "toy", False, ex, ("mean",), 2)
    _, grads = _call_with_grad(undeclared, *ex(4))
    assert grads[1] is None  # the battery's finite-gradient check fails on this, as it should


def test_every_loss_has_an_independent_reference():
    missing = [n for n in NAMES if n not in REFERENCES]
    assert not missing, f"no independent reference in tests/references.py for {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_value_pinned_against_an_independent_computation(name):
    spec = get(name)
    for seed in (0, 1):
        args, kwargs = _example(spec, seed=seed)
        torch.testing.assert_close(spec.fn(*args, **kwargs), REFERENCES[name](*args, **kwargs).to(torch.float64),
                                   rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
@HYP
@given(batch=st.integers(2, 9), seed=st.integers(0, 2**16))
def test_finite_scalar_finite_grads_deterministic(name, batch, seed):
    spec = get(name)
    batch = max(batch, spec.min_batch)
    args, kwargs = _example(spec, batch, seed=seed)
    v1, g1 = _call_with_grad(spec, args, kwargs)
    v2, g2 = _call_with_grad(spec, args, kwargs)
    assert v1.ndim == 0 and torch.isfinite(v1), f"{name}: not a finite scalar: {v1}"
    assert g1 and all(torch.isfinite(g).all() for g in g1), f"{name}: non-finite gradients"
    assert torch.equal(v1, v2) and all(torch.equal(a, b) for a, b in zip(g1, g2)), f"{name}: two calls differ"


@pytest.mark.parametrize("name", MODULES)
def test_module_equals_function(name):
    spec = get(name)
    args, kwargs = _example(spec)
    torch.testing.assert_close(spec.module()(*args, **kwargs), spec.fn(*args, **kwargs), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_float32_close_to_float64(name):
    spec = get(name)
    v64 = spec.fn(*_example(spec)[0], **_example(spec)[1])
    a32, k32 = _example(spec, dtype=torch.float32)
    v32 = spec.fn(*a32, **k32)
    assert v32.dtype == torch.float32, f"{name}: float32 inputs gave {v32.dtype}"
    torch.testing.assert_close(v32.double(), v64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_input_raises_naming_the_argument(name):
    spec = get(name)
    args, kwargs = _example(spec)
    for arg_name, where, key, t in _named_tensors(spec, args, kwargs):
        if not t.is_floating_point():
            continue
        for bad in (float("nan"), float("inf")):
            x = t.clone()
            x.view(-1)[0] = bad
            a, k = _replace(args, kwargs, where, key, x)
            with pytest.raises(ValueError, match=arg_name):
                spec.fn(*a, **k)


@pytest.mark.parametrize("name", NAMES)
def test_integer_features_raise_naming_the_argument(name):
    spec = get(name)
    args, kwargs = _example(spec)
    for arg_name, where, key, t in _named_tensors(spec, args, kwargs):
        if t.is_floating_point():
            a, k = _replace(args, kwargs, where, key, (t * 3).round().long())
            with pytest.raises(ValueError, match=arg_name):
                spec.fn(*a, **k)


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_raises(name):
    spec = get(name)
    args, kwargs = _example(spec)
    batched = _batched(spec, args, kwargs, BATCH)
    assert batched and batched[0][2] == 0 and batched[0][1] == "arg", f"{name}: args[0] must be batched"
    a, k = args, kwargs
    for _, where, key, t in batched:
        a, k = _replace(a, k, where, key, t[:0])
    with pytest.raises(ValueError):
        spec.fn(*a, **k)


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_batch_sizes_raise(name):
    spec = get(name)
    args, kwargs = _example(spec)
    batched = _batched(spec, args, kwargs, BATCH)
    if len(batched) < 2:
        pytest.skip(f"{name} takes one batched tensor")
    for i, (arg_name, where, key, t) in enumerate(batched[1:], 1):
        a, k = _replace(args, kwargs, where, key, t[:-1])
        with pytest.raises(ValueError):
            spec.fn(*a, **k)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1e-4, 1e4])
def test_extreme_scales_stay_finite(name, scale):
    spec = get(name)
    for dtype in (torch.float32, torch.float64):
        args, kwargs = _example(spec, dtype=dtype)
        f = lambda t: t * scale if isinstance(t, torch.Tensor) and t.is_floating_point() else t
        v, grads = _call_with_grad(spec, [f(a) for a in args], {k: f(v) for k, v in kwargs.items()})
        assert torch.isfinite(v), f"{name}: {v} at scale {scale} in {dtype}"
        assert all(torch.isfinite(g).all() for g in grads), f"{name}: non-finite gradient at scale {scale} in {dtype}"


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_on_cpu(name):
    spec = get(name)
    args, kwargs = _example(spec, dtype=torch.float32)
    v32 = spec.fn(*args, **kwargs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v16 = spec.fn(*args, **kwargs)
    assert torch.isfinite(v16), f"{name}: {v16} under bf16 autocast"
    torch.testing.assert_close(v16.float(), v32, rtol=3e-2, atol=1e-3)  # relative: bf16 keeps ~3 significant digits


@pytest.mark.parametrize("name", [s.name for s in SPECS if {"mean", "sum", "none"} <= set(s.reductions)])
def test_reductions_consistent(name):
    spec = get(name)
    args, kwargs = _example(spec)
    none = spec.fn(*args, **kwargs, reduction="none")
    assert none.ndim >= 1 and torch.isfinite(none).all()
    torch.testing.assert_close(spec.fn(*args, **kwargs, reduction="mean"), none.mean())
    torch.testing.assert_close(spec.fn(*args, **kwargs, reduction="sum"), none.sum())
    with pytest.raises(ValueError, match="reduction"):
        spec.fn(*args, **kwargs, reduction="avg")


# --- batch-coupled losses: the option reaches the core's DDP switch --------------------------------------------------------
ROUTED = [n for n in COUPLED if hasattr(sys.modules[get(n).fn.__module__], "ddp_active")]


@pytest.mark.parametrize("name", ROUTED)
def test_gather_distributed_reaches_ddp_active(monkeypatch, name):
    "`gather_distributed` (default False) reaches `core.ddp_active` as a bool, from the function and the module (one process)."
    spec = get(name)
    mod = sys.modules[spec.fn.__module__]
    seen, real = [], mod.ddp_active
    monkeypatch.setattr(mod, "ddp_active", lambda g: seen.append(g) or real(g))
    args, kwargs = _example(spec)
    calls = [(lambda: spec.fn(*args, **kwargs), False), (lambda: spec.fn(*args, **kwargs, gather_distributed=True), True)]
    if spec.module is not None:
        calls += [(lambda: spec.module()(*args, **kwargs), False),
                  (lambda: spec.module(gather_distributed=True)(*args, **kwargs), True)]
    for call, expected in calls:
        seen.clear()
        call()
        assert seen and all(g is expected for g in seen), f"{name}: gather_distributed reached ddp_active as {seen}"


# --- batch-coupled losses: 2 gloo processes == 1 process with the whole batch --------------------------------------------
def _ddp_worker(rank, world, name, sizes):
    spec = get(name)
    args, kwargs = _example(spec, batch=sum(sizes))
    start, stop = sum(sizes[:rank]), sum(sizes[: rank + 1])
    take = lambda t: (t[start:stop] if isinstance(t, torch.Tensor) and t.ndim and t.shape[0] == sum(sizes) else t)
    args, kwargs = [take(a) for a in args], {k: take(v) for k, v in kwargs.items()}
    args, kwargs = _with_grad(spec, args, kwargs, copy=False)
    value = spec.fn(*args, **kwargs, gather_distributed=True)
    value.backward()
    grads = [t.grad / world for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor) and t.requires_grad]
    return value.detach(), grads  # DDP averages gradients over ranks: grad / world is what it applies


@pytest.mark.parametrize("name", COUPLED)
@pytest.mark.parametrize("sizes", [(6, 6), (7, 4)], ids=["even", "uneven"])
def test_ddp_two_processes_equal_one_process(name, sizes):
    spec = get(name)
    assert "gather_distributed" in inspect.signature(spec.fn).parameters, f"{name} is batch-coupled: gather_distributed"
    full_args, full_kwargs = _example(spec, batch=sum(sizes))
    value, grads = _call_with_grad(spec, full_args, full_kwargs)
    results = run_distributed(_ddp_worker, 2, (name, sizes))
    for rank, (v_r, g_r) in enumerate(results):
        torch.testing.assert_close(v_r, value, rtol=1e-10, atol=1e-12)
        rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
        for gr, gfull in zip(g_r, grads):
            torch.testing.assert_close(gr, gfull[rows], rtol=1e-9, atol=1e-12)


def test_battery_covers_something():
    assert len(SPECS) >= 4
