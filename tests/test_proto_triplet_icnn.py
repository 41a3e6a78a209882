"""Tests for lossbook.metric.proto_triplet_icnn (Mendez-Ruiz et al. 2023: the Proto-Triplet and ICNN losses).

References: torch's TripletMarginLoss with the hardest other prototype as the negative (Proto-Triplet),
pytorch-metric-learning's LpDistance (the distance matrix), scikit-learn's NearestNeighbors (the purity gamma), and a
plain float64 loop transcribed from the algorithm of the official `modified_score` (the ICNN score), which also covers
its 'faithful' handling of a separate target set. Then the card's properties, gradcheck and every bad input.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.metric.proto_triplet_icnn import (
    DIST_EPS,
    TERMS,
    FewShotLoss,
    ICNNLoss,
    ProtoTripletLoss,
    episode_labels,
    icnn_loss,
    icnn_score,
    icnn_terms,
    pairwise_distance,
    proto_triplet_loss,
    protonet_logits,
    prototypes,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _episode(n_way=5, n_query=15, dim=8, seed=0, spread=0.6, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(n_way, dim, generator=g, dtype=torch.float64)
    y = torch.arange(n_query) % n_way
    q = protos[y] + spread * torch.randn(n_query, dim, generator=g, dtype=torch.float64)
    return q.to(dtype), y, protos.to(dtype)


def _clusters(n_cls=4, per=6, dim=5, seed=0, scale=1.0, noise=0.7, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_cls).repeat_interleave(per)
    x = scale * torch.randn(n_cls, dim, generator=g, dtype=torch.float64)[y] + noise * torch.randn(n_cls * per, dim, generator=g, dtype=torch.float64)
    return x.to(dtype), y


# ---------------------------------------------------------------- independent references
def _d(a, b, eps=1e-6):
    return math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b)) + eps)


def _proto_triplet_loop(q, y, p, margin=0.5):
    out = []
    for row, c in zip(q.tolist(), y.tolist()):
        ds = [_d(row, pr) for pr in p.tolist()]
        neg = min(v for j, v in enumerate(ds) if j != c)
        out.append(max(0.0, ds[c] - neg + margin))
    return torch.tensor(out, dtype=torch.float64)


def _icnn_loop(x, y, target=None, target_labels=None, k=4, ipc=None, eps=1e-7, faithful=False):
    "The official modified_score's algorithm, one sample at a time in Python floats (self excluded by index)."
    X, Y = x.tolist(), y.tolist()
    T, TY = (X, Y) if target is None else (target.tolist(), target_labels.tolist())
    m = len(T)
    k = m - 2 if k + 2 >= m else k
    p = k + 1 if ipc is None else ipc
    Ds, Ss = [], []
    for i, xi in enumerate(X):
        cand = sorted((_d(xi, T[j]), j) for j in range(m) if not (target is None and j == i))
        if target is not None and faithful:
            cand = cand[1:]
        cand = cand[:p]
        Ds.append([c[0] for c in cand])
        Ss.append([TY[c[1]] == Y[i] for c in cand])
    sc_sum, sc_rows, dc_rows, dc_vals = 0.0, 0, [], []
    for D, S in zip(Ds, Ss):
        others = [d for d, s in zip(D, S) if not s]
        r = [D[j] / (min(others) + eps) if others else 0.0 for j in range(k)]
        top = max(1.0, max(r))
        r = [v / top for v in r]
        cnt = sum(S[:k])
        sc_sum += sum(r[j] for j in range(k) if S[j]) / (cnt + eps)
        sc_rows += cnt > 0
        dc_vals.append([D[j] * (not S[j]) for j in range(k)])
    lam_sc = 1 - sc_sum / (sc_rows + eps)
    big = max(max(r) for r in dc_vals)
    dc_sum, n_dc = 0.0, 0
    for row, S in zip(dc_vals, Ss):
        cnt = sum(not s for s in S[:k])
        dc_sum += sum(v / (big + eps) for v in row) / (cnt + eps)
        n_dc += cnt > 0
    lam_dc = dc_sum / (n_dc + eps)
    if n_dc == 0:
        lam_dc = abs(lam_dc - 1)
    gamma = sum(sum(S[:k]) / k for S in Ss) / len(X) if k + 2 < m else 1.0
    return ((lam_sc + lam_dc) / 2 + gamma) / 2, lam_sc, lam_dc, gamma


# ---------------------------------------------------------------- the distance and ProtoNet parts
def test_pairwise_distance_matches_pytorch_metric_learning():
    pml = pytest.importorskip("pytorch_metric_learning.distances")
    a, _ = _clusters(seed=1)
    b, _ = _clusters(seed=2)
    ref = pml.LpDistance(normalize_embeddings=False, p=2, power=1)(a, b)
    torch.testing.assert_close(pairwise_distance(a, b, eps=0.0), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(pairwise_distance(a, b), (ref ** 2 + 1e-6).sqrt(), rtol=1e-6, atol=1e-6)
    assert DIST_EPS == 1e-6
    torch.testing.assert_close(pairwise_distance(a, a).diagonal(), torch.full((len(a),), 1e-3, dtype=a.dtype))


def test_prototypes_and_logits():
    s = torch.randn(10, 3, dtype=torch.float64)
    lab = episode_labels(5, 2)
    torch.testing.assert_close(lab, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]))
    p = prototypes(s, lab, 5)
    torch.testing.assert_close(p, s.view(5, 2, 3).mean(1))
    q = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(protonet_logits(q, p), -torch.cdist(q, p) ** 2)
    # unsorted support with unequal class sizes
    lab2 = torch.tensor([1, 0, 1, 1, 0])
    s2 = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(prototypes(s2, lab2, 2), torch.stack([s2[lab2 == 0].mean(0), s2[lab2 == 1].mean(0)]))


# ---------------------------------------------------------------- Proto-Triplet, Eq. (3)
def test_proto_triplet_matches_torch_triplet_margin_loss():
    q, y, p = _episode()
    d = torch.cdist(q, p).masked_fill(F.one_hot(y, 5).bool(), float("inf"))
    neg = p[d.argmin(1)]
    ref = torch.nn.TripletMarginLoss(margin=0.5, p=2)(q, p[y], neg)
    torch.testing.assert_close(proto_triplet_loss(q, y, p), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("margin", [0.0, 0.5, 2.0])
def test_proto_triplet_matches_loop(margin):
    for seed in range(3):
        q, y, p = _episode(seed=seed)
        ref = _proto_triplet_loop(q, y, p, margin)
        torch.testing.assert_close(proto_triplet_loss(q, y, p, margin=margin, reduction="none"), ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(proto_triplet_loss(q, y, p, margin=margin), ref.mean(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(proto_triplet_loss(q, y, p, margin=margin, reduction="sum"), ref.sum(), rtol=1e-12, atol=1e-12)


def test_proto_triplet_defaults():
    q, y, p = _episode(seed=4)
    torch.testing.assert_close(proto_triplet_loss(q, y, p), _proto_triplet_loop(q, y, p, 0.5).mean(), rtol=1e-12, atol=1e-12)
    assert proto_triplet_loss(q, y, p, reduction="none").shape == (len(q),)
    m = ProtoTripletLoss()
    assert m.margin == 0.5 and m.reduction == "mean"
    torch.testing.assert_close(m(q, y, p), proto_triplet_loss(q, y, p))
    torch.testing.assert_close(ProtoTripletLoss(1.5, "sum")(q, y, p), proto_triplet_loss(q, y, p, 1.5, "sum"))
    assert "margin=0.5" in repr(m) and "'mean'" in repr(m)


def test_proto_triplet_limits():
    p = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
    q = p + 0.1
    assert float(proto_triplet_loss(q, torch.arange(3), p)) == 0.0  # own prototype nearer by more than the margin
    same = torch.ones(3, 2, dtype=torch.float64)
    torch.testing.assert_close(proto_triplet_loss(torch.randn(6, 2, dtype=torch.float64), torch.arange(6) % 3, same),
                               torch.tensor(0.5, dtype=torch.float64))
    # the hardest negative: a far prototype does not count
    q1 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    p1 = torch.tensor([[0.0, 0.0], [1.2, 0.0], [100.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(proto_triplet_loss(q1, torch.tensor([0]), p1),
                               torch.tensor(math.sqrt(1 + 1e-6) - math.sqrt(0.04 + 1e-6) + 0.5, dtype=torch.float64))


def test_proto_triplet_gradcheck():
    q, y, p = _episode(n_query=7, dim=4, seed=3, spread=1.5)
    q.requires_grad_()
    p.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: proto_triplet_loss(a, y, b, reduction="none"), (q, p))


# ---------------------------------------------------------------- ICNN, Eqs. (4)-(11)
@pytest.mark.parametrize("k,ipc", [(4, None), (4, 6), (2, 3), (3, 8), (1, None)])
def test_icnn_matches_loop(k, ipc):
    for seed in range(3):
        x, y = _clusters(seed=seed)
        t = icnn_terms(x, y, k=k, ipc=ipc)
        s, lsc, ldc, gam = _icnn_loop(x, y, k=k, ipc=ipc)
        for got, want in [(t["score"], s), (t["lambda_sc"], lsc), (t["lambda_dc"], ldc), (t["gamma"], gam)]:
            assert abs(float(got) - want) < 1e-12, (float(got), want)
        assert abs(float(icnn_loss(x, y, k=k, ipc=ipc)) + math.log(s)) < 1e-12


def test_icnn_defaults():
    x, y = _clusters(seed=5)
    s = _icnn_loop(x, y, k=4, ipc=None, eps=1e-7)[0]
    assert abs(float(icnn_score(x, y)) - s) < 1e-13
    t = icnn_terms(x, y)
    assert t["k"] == 4 and t["ipc"] == 5
    # eps enters every ratio: a large eps changes the score
    assert abs(float(icnn_score(x, y, eps=0.5)) - _icnn_loop(x, y, eps=0.5)[0]) < 1e-12
    assert abs(float(icnn_score(x, y, eps=0.5)) - s) > 1e-4
    m = ICNNLoss()
    assert (m.k, m.ipc, m.eps, m.faithful, m.gather_distributed) == (4, None, 1e-7, False, False)
    torch.testing.assert_close(m(x, y), icnn_loss(x, y))
    torch.testing.assert_close(ICNNLoss(k=2, ipc=7, eps=1e-3)(x, y), icnn_loss(x, y, k=2, ipc=7, eps=1e-3))
    assert "k=4" in repr(m) and "faithful=False" in repr(m)


def test_icnn_separate_target_default_and_faithful():
    x, y = _clusters(seed=6, per=3)
    t, ty = _clusters(seed=7, per=4)
    for faithful in (False, True):
        got = icnn_score(x, y, t, ty, k=3, ipc=5, faithful=faithful)
        assert abs(float(got) - _icnn_loop(x, y, t, ty, k=3, ipc=5, faithful=faithful)[0]) < 1e-12
    assert abs(float(icnn_score(x, y, t, ty, k=3, ipc=5)) - float(icnn_score(x, y, t, ty, k=3, ipc=5, faithful=True))) > 1e-6
    # faithful with target = x itself reproduces the self-excluding score
    torch.testing.assert_close(icnn_score(x, y, x, y, ipc=5, faithful=True), icnn_score(x, y, ipc=5))


def test_icnn_k_ceiling_and_gamma_one():
    x, y = _clusters(n_cls=2, per=2, seed=1)  # m = 4: k = 4 -> 2, gamma = 1
    t = icnn_terms(x, y)
    assert t["k"] == 2 and t["ipc"] == 3 and float(t["gamma"]) == 1.0
    assert abs(float(t["score"]) - _icnn_loop(x, y)[0]) < 1e-12
    t5 = icnn_terms(*_clusters(n_cls=1, per=7, seed=2), k=4)  # m = 7 > k + 2: gamma computed (all one class -> 1)
    assert t5["k"] == 4 and float(t5["gamma"]) == 1.0


def test_icnn_no_different_class_neighbour():
    "lambda_dc = |0 - 1| = 1 when nobody has a different-class neighbour; lambda_sc = 1 (r = 0 where nu is absent)."
    x, y = _clusters(n_cls=2, per=8, scale=100.0, noise=0.1, seed=3)
    t = icnn_terms(x, y, k=3, ipc=4)  # 4 nearest are all of the own class
    assert float(t["lambda_dc"]) == 1.0 and float(t["gamma"]) == 1.0
    assert abs(float(t["lambda_sc"]) - 1.0) < 1e-6
    x.requires_grad_()
    icnn_loss(x, y, k=3, ipc=4).backward()
    assert torch.isfinite(x.grad).all()


def test_icnn_gradients_finite_with_rows_without_nu():
    "Some rows have a different-class neighbour among their p, others not: the masked rows give no inf/NaN."
    x, y = _clusters(n_cls=3, per=6, scale=1.5, noise=1.0, seed=8)
    t = icnn_terms(x, y, k=4, ipc=5)
    nbr = pairwise_distance(x, x).fill_diagonal_(float("inf")).topk(5, largest=False).indices
    has_other = (y[nbr] != y[:, None]).any(1)
    assert 0 < int(has_other.sum()) < len(y)  # both kinds of rows
    x.requires_grad_()
    icnn_loss(x, y, k=4, ipc=5).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert 0 < float(t["score"]) <= 1


def test_icnn_separated_vs_permuted():
    x, y = _clusters(n_cls=4, per=8, scale=20.0, noise=0.05, seed=9)
    s = float(icnn_score(x, y, ipc=8))
    assert s > 0.95 and float(icnn_loss(x, y, ipc=8)) < 0.05
    g = torch.Generator().manual_seed(0)
    assert float(icnn_score(x, y[torch.randperm(len(y), generator=g)], ipc=8)) < s - 0.2


def test_icnn_invariances():
    g = torch.Generator().manual_seed(11)
    for seed in range(3):
        x, y = _clusters(seed=seed)
        s = icnn_score(x, y, ipc=6)
        Q, _ = torch.linalg.qr(torch.randn(x.shape[1], x.shape[1], generator=g, dtype=torch.float64))
        c = float(torch.rand(1, generator=g)) * 10 + 0.5
        shift = torch.randn(1, x.shape[1], generator=g, dtype=torch.float64) * 5
        torch.testing.assert_close(icnn_score(x @ Q.T + shift, y, ipc=6), s, rtol=0, atol=1e-9)
        torch.testing.assert_close(icnn_score(c * x, y, ipc=6), s, rtol=0, atol=1e-5)  # only the eps's move


def test_icnn_bounds_random():
    g = torch.Generator().manual_seed(12)
    for _ in range(30):
        n = int(torch.randint(3, 30, (1,), generator=g))
        x = torch.randn(n, 4, generator=g, dtype=torch.float64) * float(torch.rand(1, generator=g) * 10 + 0.01)
        y = torch.randint(0, int(torch.randint(1, 5, (1,), generator=g)), (n,), generator=g)
        s = float(icnn_score(x, y))
        assert 0.0 <= s <= 1.0
        assert abs(s - _icnn_loop(x, y)[0]) < 1e-12


def test_gamma_is_knn_purity_by_sklearn():
    nbrs = pytest.importorskip("sklearn.neighbors")
    x, y = _clusters(n_cls=5, per=7, seed=13, noise=1.2)
    nn_ = nbrs.NearestNeighbors(n_neighbors=5).fit(x.numpy())
    idx = nn_.kneighbors(x.numpy(), return_distance=False)[:, 1:]  # drop self
    purity = (y.numpy()[idx] == y.numpy()[:, None]).mean()
    assert abs(float(icnn_terms(x, y, k=4)["gamma"]) - purity) < 1e-12


def test_icnn_duplicates_do_not_break_self_exclusion():
    "Exact duplicates: the diagonal mask still excludes self (the official column-0 drop could drop the twin)."
    x, y = _clusters(seed=14)
    x = torch.cat([x, x[:1]])
    y = torch.cat([y, y[:1]])
    t = icnn_terms(x, y)
    assert 0 <= float(t["score"]) <= 1 and abs(float(t["score"]) - _icnn_loop(x, y)[0]) < 1e-12


def test_icnn_gradcheck():
    x, y = _clusters(n_cls=3, per=4, dim=3, seed=15, noise=1.0)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: icnn_loss(a, y, k=3, ipc=4), (x,))
    t, ty = _clusters(n_cls=3, per=3, dim=3, seed=16, noise=1.0)
    t.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: icnn_loss(a, y, b, ty, k=2, ipc=4), (x, t))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_dtypes_and_devices(dtype, device):
    q, y, p = _episode()
    x, yx = _clusters()
    v = proto_triplet_loss(q.to(device, dtype), y.to(device), p.to(device, dtype))
    w = icnn_loss(x.to(device, dtype), yx.to(device))
    assert v.dtype == dtype and w.dtype == dtype and v.device.type == device
    torch.testing.assert_close(v.double().cpu(), proto_triplet_loss(q, y, p), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.double().cpu(), icnn_loss(x, yx), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- the combiner, Eq. (12)
def test_few_shot_loss_terms():
    g = torch.Generator().manual_seed(17)
    s = torch.randn(10, 4, generator=g, dtype=torch.float64)  # 5-way 2-shot, class-sorted
    q = torch.randn(15, 4, generator=g, dtype=torch.float64)
    ql = torch.arange(15) % 5
    sl = episode_labels(5, 2)
    p = prototypes(s, sl, 5)
    ce = F.cross_entropy(protonet_logits(q, p), ql)
    full = icnn_loss(torch.cat([s, q]), torch.cat([sl, ql]), ipc=2 + 3)
    pt = proto_triplet_loss(q, ql, p)
    supp = icnn_loss(s, sl)
    qp = icnn_loss(q, ql, p, torch.arange(5))
    qs = icnn_loss(q, ql, s, sl)
    torch.testing.assert_close(FewShotLoss()(s, q, ql, 5), (ce + full + pt) / 3)
    assert FewShotLoss().losses == ("cross", "fullicnn", "prototriplet")
    torch.testing.assert_close(FewShotLoss(["cross"])(s, q, ql, 5), ce)
    torch.testing.assert_close(FewShotLoss("cross, prototriplet")(s, q, ql, 5), (ce + pt) / 2)
    torch.testing.assert_close(FewShotLoss("fullicnn")(s, q, ql, 5), full)
    torch.testing.assert_close(FewShotLoss("suppicnn")(s, q, ql, 5), supp)
    torch.testing.assert_close(FewShotLoss("queryicnn")(s, q, ql, 5), qp)
    torch.testing.assert_close(FewShotLoss("queryicnn", query_protos=False)(s, q, ql, 5), qs)
    torch.testing.assert_close(FewShotLoss("queryicnn", faithful=True)(s, q, ql, 5),
                               icnn_loss(q, ql, p, torch.arange(5), faithful=True))
    torch.testing.assert_close(FewShotLoss("prototriplet", margin=1.5)(s, q, ql, 5), proto_triplet_loss(q, ql, p, 1.5))
    torch.testing.assert_close(FewShotLoss("suppicnn", k=2)(s, q, ql, 5), icnn_loss(s, sl, k=2))
    m = FewShotLoss()
    assert (m.k, m.margin, m.query_protos, m.faithful) == (4, 0.5, True, False)
    assert set(TERMS) == {"cross", "suppicnn", "queryicnn", "fullicnn", "prototriplet"}
    assert "losses=('cross', 'fullicnn', 'prototriplet')" in repr(m)


def test_few_shot_loss_trains_a_gradient():
    g = torch.Generator().manual_seed(18)
    s = torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    q = torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    FewShotLoss()(s, q, torch.arange(10) % 5, 5).backward()
    assert torch.isfinite(s.grad).all() and torch.isfinite(q.grad).all() and s.grad.abs().sum() > 0


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_proto_triplet():
    q, y, p = _episode()
    cases = [
        (lambda: proto_triplet_loss(q.clone().fill_(float("nan")), y, p), r"^query:"),
        (lambda: proto_triplet_loss(q, y, p.clone().fill_(float("inf"))), r"^protos:"),
        (lambda: proto_triplet_loss(q[:0], y[:0], p), r"^query:"),
        (lambda: proto_triplet_loss(q, y[:-1], p), r"^query_labels:"),
        (lambda: proto_triplet_loss(q, y + 5, p), r"^query_labels:"),
        (lambda: proto_triplet_loss(q, y - 1, p), r"^query_labels:"),
        (lambda: proto_triplet_loss(q, y.float(), p), r"^query_labels:"),
        (lambda: proto_triplet_loss(q, y % 1, p[:1]), r"^protos: the Proto-Triplet loss needs at least 2 prototypes \(a negative\), got 1$"),
        (lambda: proto_triplet_loss(q, y, p[:, :3]), r"^query and protos must have the same embedding size"),
        (lambda: proto_triplet_loss(q[0], y, p), r"^query:"),
        (lambda: proto_triplet_loss(q.long(), y, p), r"^query:"),
        (lambda: proto_triplet_loss(q, y, p, margin=-0.1), r"^margin:"),
        (lambda: proto_triplet_loss(q, y, p, margin=float("nan")), r"^margin:"),
        (lambda: proto_triplet_loss(q, y, p, reduction="avg"), r"^reduction:"),
        (lambda: ProtoTripletLoss(margin=-1.0), r"^margin:"),
        (lambda: ProtoTripletLoss(reduction="max"), r"^reduction:"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg):
            fn()


def test_bad_inputs_icnn():
    x, y = _clusters()
    t, ty = _clusters(seed=3)
    cases = [
        (lambda: icnn_loss(x.clone().fill_(float("nan")), y), r"^x:"),
        (lambda: icnn_loss(x[:0], y[:0]), r"^x:"),
        (lambda: icnn_loss(x[:2], y[:2]), r"^x: the ICNN score needs at least 3 samples"),
        (lambda: icnn_loss(x, y[:-1]), r"^labels:"),
        (lambda: icnn_loss(x, y.float()), r"^labels:"),
        (lambda: icnn_loss(x.long(), y), r"^x:"),
        (lambda: icnn_loss(x, y, k=0), r"^k:"),
        (lambda: icnn_loss(x, y, k=2.5), r"^k:"),
        (lambda: icnn_loss(x, y, k=True), r"^k:"),
        (lambda: icnn_loss(x, y, k=4, ipc=3), r"^ipc:"),
        (lambda: icnn_loss(x, y, ipc=0), r"^ipc:"),
        (lambda: icnn_loss(x, y, ipc=len(x)), r"^ipc:"),
        (lambda: icnn_loss(x, y, t, ty, ipc=len(t), faithful=True), r"^ipc:"),
        (lambda: icnn_loss(x, y, eps=0.0), r"^eps:"),
        (lambda: icnn_loss(x, y, t), r"^target and target_labels: give both or neither$"),
        (lambda: icnn_loss(x, y, None, ty), r"^target and target_labels: give both or neither$"),
        (lambda: icnn_loss(x, y, t[:, :2], ty), r"^x and target must have the same embedding size"),
        (lambda: icnn_loss(x, y, t.clone().fill_(float("inf")), ty), r"^target:"),
        (lambda: icnn_loss(x, y, t, ty[:-1]), r"^target_labels:"),
        (lambda: icnn_loss(x, y, t[:2], ty[:2]), r"^target: the ICNN score needs at least 3 samples"),
        (lambda: ICNNLoss(k=0), r"^k:"),
        (lambda: ICNNLoss(ipc=0), r"^ipc:"),
        (lambda: ICNNLoss(eps=-1.0), r"^eps:"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg):
            fn()
    assert icnn_loss(x, y, t, ty, ipc=len(t)).isfinite()  # without faithful every target is a candidate


def test_bad_inputs_prototypes_and_combiner():
    s = torch.randn(10, 4)
    q = torch.randn(15, 4)
    ql = torch.arange(15) % 5
    cases = [
        (lambda: prototypes(s, episode_labels(5, 2), 6), r"^support_labels: every class 0\.\.5 needs a support sample; classes \[5\] have none$"),
        (lambda: prototypes(s, episode_labels(5, 2), 0), r"^n_way:"),
        (lambda: prototypes(s, episode_labels(5, 2), 4), r"^support_labels:"),
        (lambda: prototypes(s, episode_labels(5, 2)[:-1], 5), r"^support_labels:"),
        (lambda: prototypes(s.clone().fill_(float("nan")), episode_labels(5, 2), 5), r"^support:"),
        (lambda: protonet_logits(q, s[:, :3]), r"^query and protos must have the same embedding size"),
        (lambda: FewShotLoss("cross,triplet"), r"^losses:"),
        (lambda: FewShotLoss([]), r"^losses:"),
        (lambda: FewShotLoss("cross,cross"), r"^losses: a term is selected twice"),
        (lambda: FewShotLoss(k=0), r"^k:"),
        (lambda: FewShotLoss(margin=-1.0), r"^margin:"),
        (lambda: FewShotLoss()(s, q, ql, 3), r"^n_way: expected an integer >= 2 dividing the support's 10 rows, got 3$"),
        (lambda: FewShotLoss()(s, q, ql, 1), r"^n_way:"),
        (lambda: FewShotLoss()(s, q, ql + 5, 5), r"^query_labels:"),
        (lambda: FewShotLoss()(s, q[:, :3], ql, 5), r"^support and query must have the same embedding size"),
        (lambda: FewShotLoss()(s, q, ql[:-1], 5), r"^query_labels:"),
        (lambda: FewShotLoss()(s.clone().fill_(float("nan")), q, ql, 5), r"^support:"),
        (lambda: FewShotLoss()(s, q.long(), ql, 5), r"^query:"),
        (lambda: protonet_logits(q.long(), s), r"^query:"),
        (lambda: protonet_logits(q, s.long()), r"^protos:"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg):
            fn()


def test_small_but_valid_shapes():
    "One embedding dimension, one class, and a single query are all valid."
    s = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    torch.testing.assert_close(prototypes(s, torch.tensor([0, 0]), 1), torch.tensor([[2.0]], dtype=torch.float64))
    p = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    torch.testing.assert_close(proto_triplet_loss(torch.tensor([[0.4]], dtype=torch.float64), torch.tensor([0]), p),
                               torch.tensor(math.sqrt(0.16 + 1e-6) - math.sqrt(0.36 + 1e-6) + 0.5, dtype=torch.float64))
    x = torch.tensor([[0.0], [0.1], [5.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    assert abs(float(icnn_score(x, y)) - _icnn_loop(x, y)[0]) < 1e-12  # m = 3: k = 1, gamma = 1
    for bad in (True, 2.0, None):
        with pytest.raises(ValueError, match="n_way"):
            prototypes(s, torch.tensor([0, 0]), bad)
        with pytest.raises(ValueError, match="n_way"):
            FewShotLoss()(torch.randn(4, 2), torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), bad)


# ---------------------------------------------------------------- mutation pass (#7): the gaps its survivors showed
def test_zero_margins_and_two_way_episodes_are_legal():
    q, y, p = _episode()
    m = ProtoTripletLoss(margin=0.0)
    assert m.margin == 0.0
    torch.testing.assert_close(m(q, y, p), proto_triplet_loss(q, y, p, 0.0), rtol=0, atol=0)
    f = FewShotLoss("prototriplet", margin=0.0)
    assert f.margin == 0.0
    g = torch.Generator().manual_seed(19)
    s, qq = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    ql = torch.tensor([0, 1, 0, 1])
    sl = episode_labels(2, 2)
    torch.testing.assert_close(f(s, qq, ql, 2), proto_triplet_loss(qq, ql, prototypes(s, sl, 2), 0.0), rtol=0, atol=0)


def test_few_shot_icnn_terms_pass_k_and_ipc():
    g = torch.Generator().manual_seed(17)
    centres = 5 * torch.randn(5, 4, generator=g, dtype=torch.float64)  # tight classes: the 4 nearest are same-class
    ql = torch.arange(15) % 5
    sl = episode_labels(5, 2)
    s = centres[sl] + 0.1 * torch.randn(10, 4, generator=g, dtype=torch.float64)
    q = centres[ql] + 0.1 * torch.randn(15, 4, generator=g, dtype=torch.float64)
    p = prototypes(s, sl, 5)
    torch.testing.assert_close(FewShotLoss("queryicnn", k=2)(s, q, ql, 5), icnn_loss(q, ql, p, torch.arange(5), k=2),
                               rtol=0, atol=0)
    want = icnn_loss(torch.cat([s, q]), torch.cat([sl, ql]), k=2, ipc=2 + 3)  # ipc = shot + queries per class, not k + 1
    torch.testing.assert_close(FewShotLoss("fullicnn", k=2)(s, q, ql, 5), want, rtol=0, atol=0)
    assert not torch.equal(want, icnn_loss(torch.cat([s, q]), torch.cat([sl, ql]), k=2))


def test_icnn_module_passes_target_and_faithful():
    x, y = _clusters()
    t, ty = _clusters(seed=3)
    m = ICNNLoss(faithful=True)
    assert m.faithful is True
    want = icnn_loss(x, y, t, ty, faithful=True)
    torch.testing.assert_close(m(x, y, t, ty), want, rtol=0, atol=0)
    assert not torch.equal(want, icnn_loss(x, y, t, ty))


def test_proto_triplet_computes_in_the_widest_input_dtype():
    q, y, p = _episode()
    for a, b in ((q, p.float()), (q.float(), p)):
        got = proto_triplet_loss(a, y, b, reduction="none")
        assert got.dtype == torch.float64 and torch.equal(got, proto_triplet_loss(a.double(), y, b.double(), reduction="none"))


def test_icnn_gathers_and_checks_by_name_only_when_ddp_is_active(monkeypatch):
    import lossbook.metric.proto_triplet_icnn as mod
    calls = []
    monkeypatch.setattr(mod, "gather", lambda t: calls.append(tuple(t.shape)) or t)
    x, y = _clusters()
    t, ty = _clusters(seed=3)
    ref, ref_t = icnn_loss(x, y), icnn_loss(x, y, t, ty)
    icnn_loss(x, y, gather_distributed=True)  # no process group: DDP is not active
    assert calls == []
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    torch.testing.assert_close(icnn_loss(x, y, gather_distributed=True), ref, rtol=0, atol=0)
    assert calls == [(24, 5), (24,)]
    calls.clear()
    torch.testing.assert_close(icnn_loss(x, y, t, ty, gather_distributed=True), ref_t, rtol=0, atol=0)
    assert calls == [(24, 5), (24,), (24, 5), (24,)]
    for args, msg in (((x.long(), y), r"^x:"), ((x, y.float()), r"^labels:"), ((x, y, t.long(), ty), r"^target:"),
                      ((x, y, t, ty.float()), r"^target_labels:")):
        with pytest.raises(ValueError, match=msg):
            icnn_loss(*args, gather_distributed=True)


def test_icnn_terms_default_is_not_faithful_and_mixed_precision_promotes(monkeypatch):
    x, y = _clusters()
    t, ty = _clusters(seed=3)
    plain = icnn_terms(x, y, t, ty)["score"]
    assert torch.equal(plain, icnn_terms(x, y, t, ty, faithful=False)["score"])
    assert not torch.equal(plain, icnn_terms(x, y, t, ty, faithful=True)["score"])
    for a, b in ((x, t.float()), (x.float(), t)):
        got = icnn_score(a, y, b, ty)
        assert got.dtype == torch.float64 and torch.equal(got, icnn_score(a.double(), y, b.double(), ty))
    import lossbook.metric.proto_triplet_icnn as mod
    monkeypatch.setattr(mod, "ddp_active", lambda g: bool(g))
    for args in ((x, y, t, None), (x, y, None, ty)):
        with pytest.raises(ValueError, match=r"^target and target_labels: give both or neither$"):
            icnn_loss(*args, gather_distributed=True)


def test_icnn_with_a_single_searched_neighbour():
    x, y = _clusters()
    got = icnn_score(x, y, k=1, ipc=1)
    assert abs(float(got) - _icnn_loop(x, y, k=1, ipc=1)[0]) < 1e-12


def test_icnn_terms_keys_and_zero_width_embeddings():
    x, y = _clusters()
    terms = icnn_terms(x, y)
    assert set(terms) == {"score", "lambda_sc", "lambda_dc", "lambda", "gamma", "k", "ipc"}
    torch.testing.assert_close(terms["lambda"], (terms["lambda_sc"] + terms["lambda_dc"]) / 2, rtol=0, atol=0)
    q, yq, p = _episode()
    with pytest.raises(ValueError, match=r"^query: expected at least one embedding dimension, got shape \(15, 0\)$"):
        proto_triplet_loss(q[:, :0], yq, p[:, :0])
