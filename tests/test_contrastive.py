"""The shared contrastive losses against pytorch-metric-learning (values and gradients, float64), and their edge cases.

The 2-process DDP equivalence of all three is checked by the shared battery (tests/test_battery.py).
"""
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml

from lossbook.contrastive import InfoNCELoss, NTXentLoss, SupConLoss, info_nce, nt_xent_loss, supcon_loss


def _views(n=8, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    return (z + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_(), \
        (z + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_()


def _grads(loss, *xs):
    return torch.autograd.grad(loss, xs)


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_nt_xent_equals_pml(tau):
    z1, z2 = _views()
    n = z1.shape[0]
    ours = nt_xent_loss(z1, z2, tau)
    ref = pml.NTXentLoss(temperature=tau)(torch.cat([z1, z2]), torch.arange(n).repeat(2))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(_grads(ours, z1, z2), _grads(ref, z1, z2)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n_queue", [0, 5])
def test_info_nce_equals_pml_with_ref_emb(n_queue):
    q, k = _views(seed=1)
    n = q.shape[0]
    queue = torch.randn(n_queue, q.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = info_nce(q, k, 0.1, queue=queue if n_queue else None)
    ref = pml.NTXentLoss(temperature=0.1)(q, torch.arange(n), ref_emb=torch.cat([k, queue]),
                                          ref_labels=torch.arange(n + n_queue))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(_grads(ours, q, k), _grads(ref, q, k)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_supcon_equals_pml_including_anchors_without_positive():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(10, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 5])  # anchors 5, 8, 9 have no positive
    ours = supcon_loss(z, y, 0.1)
    ref = pml.SupConLoss(temperature=0.1)(z, y)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_grads(ours, z)[0], _grads(ref, z)[0], rtol=1e-9, atol=1e-12)
    assert supcon_loss(z, y, 0.1, reduction="none").shape == (7,)


def test_modules_and_defaults():
    z1, z2 = _views()
    assert NTXentLoss()(z1, z2) == nt_xent_loss(z1, z2, 0.1)  # the defaults are pinned: tau 0.1 for NT-Xent
    assert InfoNCELoss()(z1, z2) == info_nce(z1, z2, 0.07)
    y = torch.arange(8) % 3
    assert SupConLoss()(z1, y) == supcon_loss(z1, y, 0.07)
    assert NTXentLoss(temperature=0.5, reduction="sum")(z1, z2) == nt_xent_loss(z1, z2, 0.5, reduction="sum")


def test_scale_invariance_and_bad_input():
    z1, z2 = _views()
    torch.testing.assert_close(nt_xent_loss(3 * z1, 0.5 * z2), nt_xent_loss(z1, z2))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(z1, z2, 0.0)
    with pytest.raises(ValueError, match="at least one negative"):
        info_nce(z1[:1], z2[:1])
    assert torch.isfinite(info_nce(z1[:1], z2[:1], queue=torch.randn(3, 6, dtype=torch.float64)))
    with pytest.raises(ValueError, match="queue"):
        info_nce(z1, z2, queue=torch.randn(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supcon_loss(z1, torch.arange(8))
    with pytest.raises(ValueError, match="labels"):
        supcon_loss(z1, torch.arange(7))


def test_gather_distributed_without_process_group_is_a_no_op():
    z1, z2 = _views()
    assert nt_xent_loss(z1, z2, gather_distributed=True) == nt_xent_loss(z1, z2)
    y = torch.arange(8) % 2
    assert supcon_loss(z1, y, gather_distributed=True) == supcon_loss(z1, y)
    assert torch.equal(info_nce(z1, z2, reduction="none", gather_distributed=True), info_nce(z1, z2, reduction="none"))


def test_collapse_is_penalised():
    z1, z2 = _views()
    same = torch.ones(8, 6, dtype=torch.float64)  # every embedding identical: every candidate ties
    assert nt_xent_loss(same, same) == pytest.approx(torch.log(torch.tensor(15.0)).item())
    assert nt_xent_loss(same, same) > nt_xent_loss(z1, z2)
    assert F.normalize(same, dim=1).std() == 0


def test_modules_pass_every_setting_through():
    z1, z2 = _views()
    queue = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    m = InfoNCELoss(temperature=0.2, reduction="none")
    torch.testing.assert_close(m(z1, z2, queue), info_nce(z1, z2, 0.2, queue, "none"))
    assert not torch.equal(m(z1, z2, queue), m(z1, z2))  # the queue is used
    for cls in (NTXentLoss, InfoNCELoss, SupConLoss):
        assert cls().gather_distributed is False and cls().reduction == "mean"
        assert cls(gather_distributed=True).gather_distributed is True
    y = torch.arange(8) % 3
    torch.testing.assert_close(SupConLoss(temperature=0.3, reduction="sum")(z1, y), supcon_loss(z1, y, 0.3, "sum"))
    torch.testing.assert_close(NTXentLoss(temperature=0.3, reduction="none")(z1, z2), nt_xent_loss(z1, z2, 0.3, "none"))
    with pytest.raises(ValueError, match="reduction"):
        SupConLoss(reduction="avg")
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=-1.0)


# --- what mutation testing asked for (benchmarks/mutation_score.py) ----------------------------------------------------
def test_error_messages_start_with_the_argument_name():
    "Each message starts with the argument's name (`name: ...`), in the functions and the modules."
    z1, z2 = _views()
    y = torch.arange(8) % 3
    cases = [
        (lambda: nt_xent_loss(z1, z2, 0.0), "temperature"), (lambda: info_nce(z1, z2, -1.0), "temperature"),
        (lambda: supcon_loss(z1, y, float("nan")), "temperature"), (lambda: NTXentLoss(temperature=0.0), "temperature"),
        (lambda: InfoNCELoss(temperature=0.0), "temperature"), (lambda: SupConLoss(temperature=0.0), "temperature"),
        (lambda: NTXentLoss(reduction="avg"), "reduction"), (lambda: InfoNCELoss(reduction="avg"), "reduction"),
        (lambda: nt_xent_loss(z1, z2, reduction="avg"), "reduction"), (lambda: info_nce(z1, z2, reduction="avg"), "reduction"),
        (lambda: supcon_loss(z1, y, reduction="avg"), "reduction"),
        (lambda: nt_xent_loss(z1[0], z2), "z1"), (lambda: nt_xent_loss(z1, z2.long()), "z2"),
        (lambda: nt_xent_loss(z1, z2[:7]), "z1 and z2"), (lambda: nt_xent_loss(z1, z2[0]), "z2"),
        (lambda: info_nce(z1, z2[0]), "k"), (lambda: info_nce(z1, z2[None]), "k"),
        (lambda: info_nce(z1[0], z2), "q"), (lambda: info_nce(z1, z2.long()), "k"), (lambda: info_nce(z1, z2[:7]), "q and k"),
        (lambda: info_nce(z1, z2, queue=torch.ones(3, 5, dtype=torch.float64)), "queue"),
        (lambda: info_nce(z1, z2, queue=torch.ones(3, dtype=torch.float64)), "queue"),
        (lambda: info_nce(z1, z2, queue=torch.ones(3, 6, dtype=torch.long)), "queue"),
        (lambda: supcon_loss(z1[0], y), "z"), (lambda: supcon_loss(z1.long(), y), "z"),
        (lambda: supcon_loss(z1, y[:7]), "labels"), (lambda: supcon_loss(z1, torch.arange(8)), "labels"),
        (lambda: nt_xent_loss(z1[:1], z2[:1]), "z1, z2"), (lambda: info_nce(z1[:1], z2[:1]), "q, k"),
    ]
    for call, name in cases:
        # a bare argument name must be followed by ':' (a shape check naming two arguments does not count)
        with pytest.raises(ValueError, match=rf"^{name}:" if name.isidentifier() else rf"^{name}(?:[:, ]|$)"):
            call()


def test_the_smallest_batches():
    "NT-Xent: N = 2 is legal, N = 1 is not; InfoNCE: N = 2, or N = 1 with a non-empty queue; an empty queue is no queue."
    z1, z2 = _views(2, 6, seed=4)
    assert torch.isfinite(nt_xent_loss(z1, z2))
    with pytest.raises(ValueError, match="NT-Xent needs at least 2 pairs.*got 1"):
        nt_xent_loss(z1[:1], z2[:1])
    empty = torch.zeros(0, 6, dtype=torch.float64)
    assert info_nce(z1, z2, queue=empty) == info_nce(z1, z2)
    with pytest.raises(ValueError, match="at least one negative"):
        info_nce(z1[:1], z2[:1], queue=empty)
    queue = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    one = info_nce(z1[:1], z2[:1], 0.1, queue=queue)
    hq, hk, hQ = F.normalize(z1[:1], dim=1), F.normalize(z2[:1], dim=1), F.normalize(queue, dim=1)
    s = torch.cat([hk, hQ]) @ hq[0] / 0.1
    torch.testing.assert_close(one, s.logsumexp(0) - s[0], rtol=1e-12, atol=1e-12)
    # SupCon: one pair is enough; anchors without a positive are left out of the mean, with finite gradients
    z = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6), requires_grad=True)
    v = supcon_loss(z, torch.tensor([0, 0, 1]), reduction="none")
    assert v.shape == (2,)
    v.sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad[2].abs().sum() > 0


def test_defaults_are_pinned():
    "Every default: the value with the defaults equals the value with the explicit default, and differs from another."
    z1, z2 = _views()
    y = torch.arange(8) % 3
    assert nt_xent_loss(z1, z2) == nt_xent_loss(z1, z2, 0.1, "mean", False) != nt_xent_loss(z1, z2, 0.2)
    assert info_nce(z1, z2) == info_nce(z1, z2, 0.07, None, "mean", False) != info_nce(z1, z2, 0.1)
    assert supcon_loss(z1, y) == supcon_loss(z1, y, 0.07, "mean", False) != supcon_loss(z1, y, 0.1)
    for cls, t in ((NTXentLoss, 0.1), (InfoNCELoss, 0.07), (SupConLoss, 0.07)):
        m = cls()
        assert (m.temperature, m.reduction, m.gather_distributed) == (t, "mean", False)
        m = cls(0.3, "none", True)
        assert (m.temperature, m.reduction, m.gather_distributed) == (0.3, "none", True)


_Y = torch.arange(4) % 2
_CALLS = [
    (lambda a, b: nt_xent_loss(a, b), False), (lambda a, b: info_nce(a, b), False),
    (lambda a, b: supcon_loss(a, _Y), False),
    (lambda a, b: nt_xent_loss(a, b, gather_distributed=True), True),
    (lambda a, b: info_nce(a, b, gather_distributed=True), True),
    (lambda a, b: supcon_loss(a, _Y, gather_distributed=True), True),
    (lambda a, b: NTXentLoss()(a, b), False), (lambda a, b: InfoNCELoss()(a, b), False),
    (lambda a, b: SupConLoss()(a, _Y), False),
    (lambda a, b: NTXentLoss(gather_distributed=True)(a, b), True),
    (lambda a, b: InfoNCELoss(gather_distributed=True)(a, b), True),
    (lambda a, b: SupConLoss(gather_distributed=True)(a, _Y), True),
    (lambda a, b: NTXentLoss(gather_distributed=1)(a, b), True),
]


@pytest.mark.parametrize("i", range(len(_CALLS)))
def test_gather_distributed_reaches_ddp_active(monkeypatch, i):
    "The option (default False) reaches `ddp_active` as a bool, from the functions and the modules (one process)."
    import lossbook.contrastive as mod
    call, expected = _CALLS[i]
    seen = []
    real = mod.ddp_active
    monkeypatch.setattr(mod, "ddp_active", lambda g: seen.append(g) or real(g))
    z1, z2 = _views(4, 3)
    call(z1, z2)
    assert seen == [expected] and type(seen[0]) is bool


@pytest.mark.parametrize("fn", [nt_xent_loss, info_nce])
def test_half_inputs_are_computed_in_float32(fn):
    z1, z2 = _views()
    v = fn(z1.detach().half(), z2.detach().half())
    assert v.dtype == torch.float32
    torch.testing.assert_close(v.double(), fn(z1, z2).detach(), rtol=2e-3, atol=2e-3)
    y = torch.arange(8) % 3
    v = supcon_loss(z1.detach().half(), y)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v.double(), supcon_loss(z1, y).detach(), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("name", ["nt_xent", "info_nce", "supcon"])
def test_gathers_only_when_ddp_is_active(monkeypatch, name):
    "Without DDP (or with gather_distributed=False under DDP) nothing is gathered; with it, the candidates and rows."
    import lossbook.contrastive as mod
    calls = []
    monkeypatch.setattr(mod, "gather", lambda t: calls.append("gather") or t)
    monkeypatch.setattr(mod, "local_slice", lambda n, device=None: calls.append("slice") or slice(0, n))
    z1, z2 = _views(6, 4, seed=7)
    y = torch.tensor([0, 1, 0, 1, 2, 2])
    fn = {"nt_xent": lambda **kw: nt_xent_loss(z1, z2, reduction="none", **kw),
          "info_nce": lambda **kw: info_nce(z1, z2, reduction="none", **kw),
          "supcon": lambda **kw: supcon_loss(z1, y, reduction="none", **kw)}[name]
    ref = fn()
    assert calls == []
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))  # as if under torch.distributed, one rank's view
    torch.testing.assert_close(fn(gather_distributed=False), ref, rtol=0, atol=0)
    assert calls == []
    torch.testing.assert_close(fn(gather_distributed=True), ref, rtol=0, atol=0)
    want = {"nt_xent": ["gather", "gather", "slice"], "info_nce": ["gather", "slice"], "supcon": ["gather", "gather", "slice"]}
    assert sorted(calls) == want[name]


def test_supcon_counts_valid_anchors_over_ranks_only_under_ddp(monkeypatch):
    "The number of anchors with a positive (the mean's denominator) is summed over ranks only when DDP is active."
    import lossbook.contrastive as mod
    seen = []
    real = mod.all_sum
    monkeypatch.setattr(mod, "all_sum", lambda x, active=True: seen.append(active) or real(x, active))
    z1, _ = _views(6, 4, seed=8)
    y = torch.tensor([0, 1, 0, 1, 2, 2])
    supcon_loss(z1, y)
    supcon_loss(z1, y, gather_distributed=True)  # no process group: DDP is not active
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    supcon_loss(z1, y, gather_distributed=True)
    assert seen == [False, False, True]
    with pytest.raises(ValueError, match=r"^labels: no anchor has a positive \(every label occurs once\); SupCon needs "
                                         r"at least one pair$"):
        supcon_loss(z1, torch.arange(6))


def test_half_inputs_give_exactly_the_float32_computation():
    "Half inputs are cast to float32 before anything is computed (normalisation included), both views / q, k, queue."
    z1, z2 = (t.detach().half() for t in _views(seed=9))
    y = torch.arange(8) % 3
    assert torch.equal(nt_xent_loss(z1, z2, reduction="none"), nt_xent_loss(z1.float(), z2.float(), reduction="none"))
    assert torch.equal(info_nce(z1, z2, reduction="none"), info_nce(z1.float(), z2.float(), reduction="none"))
    assert torch.equal(supcon_loss(z1, y, reduction="none"), supcon_loss(z1.float(), y, reduction="none"))
    queue = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    a, b = z1.float(), z2.float()
    v = info_nce(a, b, queue=queue, reduction="none")  # a float64 queue is cast to the queries' dtype
    assert v.dtype == torch.float32
    assert torch.equal(v, info_nce(a, b, queue=queue.float(), reduction="none"))
    assert torch.equal(info_nce(z1, z2, queue=queue.half(), reduction="none"),
                       info_nce(a, b, queue=queue.half().float(), reduction="none"))


def test_info_nce_message_without_negatives():
    q, k = _views(1, 6, seed=11)
    with pytest.raises(ValueError, match=r"^q, k: InfoNCE needs at least one negative: 2 or more pairs, or a non-empty "
                                         r"queue$"):
        info_nce(q, k)
