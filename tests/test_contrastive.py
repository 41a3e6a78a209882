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
