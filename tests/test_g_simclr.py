"""Tests for lossbook.ssl.g_simclr (Chakraborty et al. 2020, G-SimCLR): the batch composition, not a loss.

The loss is the core's NT-Xent (tested in tests/test_contrastive.py and by the shared battery). Here: the
pseudo-label-disjoint batch sampler in both modes (every sample exactly once per epoch, batch sizes, disjointness when
feasible, the fewest same-label pairs of Eq. 4 in 'spread' mode checked against the bound and against brute force on
tiny cases, the official rank order transcribed from the official notebook with pandas, determinism for a generator,
usable as `fit(batch_sampler=...)`), the false-negative rate against a loop, the bound of Eq. 4 against brute force,
k-means pseudo-labels, and every bad input.
"""
import itertools
import math

import pytest
import torch

from lossbook.ssl.g_simclr import (MODES, cluster_disjoint_batches, false_negative_rate, kmeans_pseudo_labels,
                                   min_same_label_pairs)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _same_pairs(labels, bs):
    "Unordered same-label pairs inside the batches, by a loop."
    total = 0
    for b in bs:
        y = labels[b].tolist()
        total += sum(1 for i in range(len(y)) for j in range(i + 1, len(y)) if y[i] == y[j])
    return total


def _random_labels(n, k, seed, skew=False):
    g = _gen(seed)
    if skew:  # unequal cluster sizes
        p = torch.rand(k, generator=g) ** 3 + 0.01
        return torch.multinomial(p / p.sum(), n, replacement=True, generator=g)
    return torch.randint(k, (n,), generator=g)


# ------------------------------------------------------------------------------------------------- the sampler
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n,k,B,skew", [(100, 10, 10, False), (97, 7, 10, True), (50, 3, 8, False), (64, 64, 8, False),
                                         (31, 5, 31, True), (10, 2, 1, False), (23, 23, 50, False)])
def test_every_sample_once_per_epoch(mode, n, k, B, skew):
    labels = _random_labels(n, k, seed=n + k, skew=skew)
    bs = list(cluster_disjoint_batches(labels, B, _gen(1), mode=mode))
    idx = torch.cat(bs)
    assert idx.dtype == torch.long
    assert sorted(idx.tolist()) == list(range(n))
    assert all(1 <= len(b) <= B for b in bs)


@pytest.mark.parametrize("n,B", [(100, 10), (97, 10), (50, 8), (7, 3), (23, 50), (10, 1)])
def test_spread_batch_count_and_sizes(n, B):
    labels = _random_labels(n, 4, seed=n)
    bs = list(cluster_disjoint_batches(labels, B, _gen(2)))
    M = math.ceil(n / B)
    assert len(bs) == M
    sizes = sorted(len(b) for b in bs)
    assert sizes[-1] - sizes[0] <= 1 and sizes[-1] <= B  # floor(N/M) or ceil(N/M)


@pytest.mark.parametrize("n,B", [(100, 10), (97, 10), (50, 8), (7, 3)])
def test_rank_mode_cuts_consecutive_blocks_of_B(n, B):
    labels = _random_labels(n, 5, seed=n)
    bs = list(cluster_disjoint_batches(labels, B, _gen(3), mode="rank"))
    assert [len(b) for b in bs] == [B] * (n // B) + ([n % B] if n % B else [])


@pytest.mark.parametrize("k,B,seed", [(10, 10, 0), (16, 10, 1), (30, 8, 2), (64, 64, 3)])
def test_spread_is_disjoint_whenever_every_cluster_fits(k, B, seed):
    # balanced clusters of size <= M = ceil(N / B): a fully disjoint split exists and 'spread' finds it
    n = 10 * k if B <= 10 else 2 * k
    labels = torch.arange(n) % k
    labels = labels[torch.randperm(n, generator=_gen(seed))]
    M = math.ceil(n / B)
    assert torch.bincount(labels).max() <= M
    for epoch in range(3):
        for b in cluster_disjoint_batches(labels, B, _gen(seed * 10 + epoch)):
            assert len(labels[b].unique()) == len(b), "a pseudo-label repeats inside a batch"


@pytest.mark.parametrize("n,k,B,skew", [(100, 10, 10, False), (97, 7, 10, True), (50, 3, 8, False), (200, 12, 16, True),
                                         (31, 5, 31, True), (1150, 10, 10, True)])
def test_spread_reaches_the_bound_of_eq4(n, k, B, skew):
    labels = _random_labels(n, k, seed=7 * n + k, skew=skew)
    bound = min_same_label_pairs(labels, B)
    for seed in range(3):
        assert _same_pairs(labels, list(cluster_disjoint_batches(labels, B, _gen(seed)))) == bound
        # random batches of the same sizes never do better
        rand = list(torch.randperm(n, generator=_gen(seed)).split(B))
        assert _same_pairs(labels, rand) >= bound


@pytest.mark.parametrize("counts,B", [((3, 1, 1, 1), 2), ((2, 2, 2), 2), ((4, 1, 1), 3), ((3, 3), 3), ((5,), 2)])
def test_bound_of_eq4_against_brute_force(counts, B):
    labels = torch.tensor([c for c, m in enumerate(counts) for _ in range(m)])
    n = len(labels)
    M = math.ceil(n / B)
    best = None
    for assign in itertools.product(range(M), repeat=n):  # every split into at most M batches of size <= B
        sizes = [assign.count(b) for b in range(M)]
        if max(sizes) > B:
            continue
        bs = [torch.tensor([i for i in range(n) if assign[i] == b], dtype=torch.long) for b in range(M)]
        v = _same_pairs(labels, [b for b in bs if len(b)])
        best = v if best is None else min(best, v)
    assert min_same_label_pairs(labels, B) == best


def test_bound_hand_values():
    v = min_same_label_pairs(torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2]), 3)
    assert v == 1 and type(v) is int
    v = min_same_label_pairs(torch.tensor([0] * 7 + [1] * 6), 3)  # M = 5: 7 = 5 + 2, 6 = 5 + 1 -> 2 + 1 pairs
    assert v == 3 and type(v) is int
    v = min_same_label_pairs(torch.tensor([0] * 9 + [1] * 11), 4)  # M = 5: 9 -> 2,2,2,2,1 (4); 11 -> 3,2,2,2,2 (7)
    assert v == 11 and type(v) is int
    assert min_same_label_pairs(torch.tensor([0, 1, 2, 3]), 2) == 0
    assert min_same_label_pairs(torch.tensor([0, 0, 0, 0, 0]), 5) == 10  # one batch: C(5, 2)
    assert min_same_label_pairs(torch.tensor([0] * 7), 2) == 3  # 4 batches of 2, 2, 2, 1
    assert min_same_label_pairs(torch.tensor([4, 4, 9, 9, 9]), 1) == 0


def test_spread_minimal_max_multiplicity_when_clusters_do_not_fit():
    labels = torch.tensor([0] * 25 + [1] * 3 + [2] * 2)  # N = 30, B = 10, M = 3: cluster 0 must repeat
    for b in cluster_disjoint_batches(labels, 10, _gen(0)):
        counts = torch.bincount(labels[b], minlength=3)
        assert counts[0] in (8, 9) and counts[1] <= 1 and counts[2] <= 1


def _official_rank_order(labels):
    "The official notebook: rank inside the cluster by image index, sort by (cluster, rank), then by rank."
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"imag_ind": range(len(labels)), "cluster_labels": labels.tolist()})
    df["rank"] = df.groupby("cluster_labels")["imag_ind"].rank("dense", ascending=True)
    df = df.sort_values(by=["cluster_labels", "rank"]).sort_values(by=["rank"], kind="stable")
    return df["imag_ind"].tolist(), df["rank"].tolist()


@pytest.mark.parametrize("n,k,skew", [(100, 10, False), (97, 7, True), (300, 10, True)])
def test_rank_mode_matches_the_official_order_up_to_the_random_draws(n, k, skew):
    labels = _random_labels(n, k, seed=n, skew=skew)
    off, off_rank = _official_rank_order(labels)
    seq = torch.cat(list(cluster_disjoint_batches(labels, 10, _gen(0), mode="rank"))).tolist()
    # the same multiset of clusters at every rank level, levels in increasing order
    level_sizes = [off_rank.count(r) for r in sorted(set(off_rank))]
    pos = 0
    for size in level_sizes:
        a = sorted(labels[seq[pos:pos + size]].tolist())
        b = sorted(labels[off[pos:pos + size]].tolist())
        assert a == b, "a rank level holds other clusters than the official order's"
        assert len(set(a)) == size, "a rank level repeats a cluster"
        pos += size
    assert pos == n


def test_rank_mode_is_disjoint_while_every_cluster_has_members():
    labels = torch.arange(100) % 10  # equal clusters, k = B: every level is one batch of distinct clusters
    for b in cluster_disjoint_batches(labels, 10, _gen(0), mode="rank"):
        assert len(labels[b].unique()) == 10


def test_rank_mode_can_repeat_where_spread_does_not():
    # sizes 2, 2, 2, 1, 1 with B = 4 (M = 2): a disjoint split exists; the rank order misses it for some draws
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])
    assert min_same_label_pairs(labels, 4) == 0
    rank_pairs = [_same_pairs(labels, list(cluster_disjoint_batches(labels, 4, _gen(s), mode="rank"))) for s in range(40)]
    spread_pairs = [_same_pairs(labels, list(cluster_disjoint_batches(labels, 4, _gen(s)))) for s in range(40)]
    assert max(rank_pairs) > 0 and max(spread_pairs) == 0


@pytest.mark.parametrize("mode", MODES)
def test_deterministic_for_a_generator_and_varies_between_draws(mode):
    labels = _random_labels(200, 10, seed=3, skew=True)
    a = [b.tolist() for b in cluster_disjoint_batches(labels, 10, _gen(5), mode=mode)]
    b = [b.tolist() for b in cluster_disjoint_batches(labels, 10, _gen(5), mode=mode)]
    c = [b.tolist() for b in cluster_disjoint_batches(labels, 10, _gen(6), mode=mode)]
    assert a == b and a != c
    g = _gen(5)
    first = [x.tolist() for x in cluster_disjoint_batches(labels, 10, g, mode=mode)]
    second = [x.tolist() for x in cluster_disjoint_batches(labels, 10, g, mode=mode)]
    assert first == a and second != first  # one generator: a new draw every epoch


def test_global_generator_by_default():
    labels = _random_labels(100, 10, seed=0)
    torch.manual_seed(11)
    a = [b.tolist() for b in cluster_disjoint_batches(labels, 10)]
    torch.manual_seed(11)
    b = [b.tolist() for b in cluster_disjoint_batches(labels, 10)]
    assert a == b


def test_default_mode_is_spread():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])
    for s in range(10):
        d = [b.tolist() for b in cluster_disjoint_batches(labels, 3, _gen(s))]
        sp = [b.tolist() for b in cluster_disjoint_batches(labels, 3, _gen(s), mode="spread")]
        assert d == sp
    assert MODES == ("spread", "rank")


def test_labels_any_values_device_and_order_invariance():
    labels = torch.tensor([7, 7, -3, -3, 100, 100, 5, 5, 5, 0])
    renum = torch.unique(labels, return_inverse=True)[1]
    a = [b.tolist() for b in cluster_disjoint_batches(labels, 4, _gen(0))]
    b = [b.tolist() for b in cluster_disjoint_batches(renum, 4, _gen(0))]
    assert a == b
    for bt in cluster_disjoint_batches(labels, 4, _gen(0)):
        assert bt.device.type == "cpu"


def test_a_single_sample_and_a_single_cluster():
    assert [b.tolist() for b in cluster_disjoint_batches(torch.tensor([3]), 4, _gen(0))] == [[0]]
    bs = list(cluster_disjoint_batches(torch.zeros(9, dtype=torch.long), 3, _gen(0)))
    assert sorted(len(b) for b in bs) == [3, 3, 3] and _same_pairs(torch.zeros(9, dtype=torch.long), bs) == 9


def test_usable_as_a_fit_batch_sampler():
    from lossbook.train import fit
    labels = torch.arange(40) % 4
    seen = []
    model = torch.nn.Linear(1, 1)

    def step(m, xb, _):
        seen.append(xb.flatten().long().tolist())
        return m(xb).pow(2).mean()

    fit(model, torch.arange(40, dtype=torch.float32)[:, None], step_fn=step, epochs=2, batch_size=4,
        batch_sampler=lambda g: cluster_disjoint_batches(labels, 4, g))
    assert len(seen) == 20 and all(len(set(labels[b].tolist())) == 4 for b in seen)
    assert sorted(sum(seen[:10], [])) == list(range(40)) and sorted(sum(seen[10:], [])) == list(range(40))
    assert seen[:10] != seen[10:]


@pytest.mark.parametrize("bad,msg", [
    (lambda: cluster_disjoint_batches(torch.tensor([0.0, 1.0]), 2), "pseudo_labels"),
    (lambda: cluster_disjoint_batches(torch.tensor([[0, 1]]), 2), "pseudo_labels"),
    (lambda: cluster_disjoint_batches(torch.tensor([], dtype=torch.long), 2), "pseudo_labels"),
    (lambda: cluster_disjoint_batches(torch.tensor([True, False]), 2), "pseudo_labels"),
    (lambda: cluster_disjoint_batches(torch.tensor([0, 1]), 0), "batch_size"),
    (lambda: cluster_disjoint_batches(torch.tensor([0, 1]), -3), "batch_size"),
    (lambda: cluster_disjoint_batches(torch.tensor([0, 1]), 2.0), "batch_size"),
    (lambda: cluster_disjoint_batches(torch.tensor([0, 1]), True), "batch_size"),
    (lambda: cluster_disjoint_batches(torch.tensor([0, 1]), 2, mode="random"), "mode"),
    (lambda: false_negative_rate(torch.tensor([1])), "labels_of_batch"),
    (lambda: false_negative_rate(torch.tensor([], dtype=torch.long)), "labels_of_batch"),
    (lambda: false_negative_rate(torch.tensor([0.0, 1.0])), "labels_of_batch"),
    (lambda: false_negative_rate(torch.tensor([[0, 1], [1, 0]])), "labels_of_batch"),
    (lambda: min_same_label_pairs(torch.tensor([0.5]), 2), "labels"),
    (lambda: min_same_label_pairs(torch.tensor([], dtype=torch.long), 2), "labels"),
    (lambda: min_same_label_pairs(torch.tensor([0, 1]), 0), "batch_size"),
    (lambda: kmeans_pseudo_labels(torch.randn(10), 2), "latents"),
    (lambda: kmeans_pseudo_labels(torch.ones(4, 2, dtype=torch.long), 2), "latents"),
    (lambda: kmeans_pseudo_labels(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), 1), "latents"),
    (lambda: kmeans_pseudo_labels(torch.randn(0, 3), 1), "latents"),
    (lambda: kmeans_pseudo_labels(torch.randn(5, 3), 0), "k"),
    (lambda: kmeans_pseudo_labels(torch.randn(5, 3), 6), "k"),
    (lambda: kmeans_pseudo_labels(torch.randn(5, 3), 2.0), "k"),
    (lambda: kmeans_pseudo_labels(torch.randn(5, 3), True), "k"),
    (lambda: kmeans_pseudo_labels(torch.randn(5, 3), 2, n_init=0), "n_init"),
    (lambda: kmeans_pseudo_labels(torch.randn(5, 3), 2, n_init=True), "n_init"),
])
def test_bad_inputs_raise_valueerror_naming_the_argument(bad, msg):
    with pytest.raises(ValueError, match=f"^{msg}:"):  # the message starts with the argument's name
        bad()


def test_bad_k_message_gives_the_number_of_latents():
    with pytest.raises(ValueError, match=r"^k: expected an int in 1\.\.5 "):
        kmeans_pseudo_labels(torch.randn(5, 3), 9)


def test_not_a_tensor_raises_typeerror():
    with pytest.raises(TypeError, match="^pseudo_labels:"):
        cluster_disjoint_batches([0, 1, 2], 2)
    with pytest.raises(TypeError, match="^labels_of_batch:"):
        false_negative_rate([0, 1])
    with pytest.raises(TypeError, match="^labels:"):
        min_same_label_pairs([0, 1], 2)
    with pytest.raises(TypeError, match="^latents:"):
        kmeans_pseudo_labels([[0.0, 1.0]], 1)


def _reference_draw(labels, B, g, mode):
    "The documented procedure, step by step in Python: the same random draws, in the same order, as the sampler."
    values = sorted(set(labels.tolist()))
    cluster = [values.index(v) for v in labels.tolist()]  # clusters renumbered 0..K-1 in sorted order
    n, K = len(cluster), len(values)
    perm = torch.randperm(n, generator=g).tolist()  # the members' random order
    key = torch.randperm(K, generator=g).tolist()  # the clusters' random order
    if mode == "spread":
        seq = [a for c in sorted(range(K), key=lambda c: key[c]) for a in perm if cluster[a] == c]
        M = -(-n // B)
        out = [[seq[p] for p in range(n) if p % M == b] for b in range(M)]  # Eq. (5)
        return [out[b] for b in torch.randperm(M, generator=g).tolist()]
    rank, seen = {}, [0] * K
    for a in perm:  # rank inside the cluster, in the members' random order
        rank[a], seen[cluster[a]] = seen[cluster[a]], seen[cluster[a]] + 1
    seq = sorted(range(n), key=lambda a: (rank[a], key[cluster[a]]))
    return [seq[i:i + B] for i in range(0, n, B)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n,k,B,skew", [(100, 10, 10, False), (97, 7, 10, True), (30, 3, 4, True), (12, 12, 5, False)])
def test_sampler_follows_the_documented_procedure(mode, n, k, B, skew):
    labels = _random_labels(n, k, seed=n * k, skew=skew) * 3 - 5  # any label values
    got = [b.tolist() for b in cluster_disjoint_batches(labels, B, _gen(9), mode=mode)]
    assert got == _reference_draw(labels, B, _gen(9), mode)


# ------------------------------------------------------------------------------------ the false-negative rate
def _fn_loop(y):
    "Eq. (2) from the NT-Xent side: over the 2B anchors, the share of the 2B-2 negatives with the anchor's label."
    y = y.tolist()
    B = len(y)
    views = [(a, v) for a in range(B) for v in (0, 1)]
    false = total = 0
    for a, _ in views:
        for b, _ in views:
            if b != a:
                total += 1
                false += y[a] == y[b]
    return false / total


@pytest.mark.parametrize("y", [[0, 1, 2, 3], [0, 0, 1, 1], [5, 5, 5], [1, 2], [2, 2], [0, 1, 0, 2, 0, 3, 3, 9, 9, 9]])
def test_false_negative_rate_against_the_nt_xent_loop(y):
    y = torch.tensor(y)
    assert false_negative_rate(y) == pytest.approx(_fn_loop(y), abs=1e-15)


def test_false_negative_rate_hand_values_and_range():
    assert false_negative_rate(torch.tensor([0, 1, 2, 3])) == 0.0
    assert false_negative_rate(torch.tensor([0, 0, 1, 1])) == pytest.approx(4 / 12)
    assert false_negative_rate(torch.tensor([7, 7])) == 1.0
    assert isinstance(false_negative_rate(torch.tensor([0, 1])), float)
    y = torch.randint(10, (1000,), generator=_gen(0))
    v = false_negative_rate(y)
    assert 0.08 < v < 0.12  # about sum_c p_c^2 = 1/10


def test_false_negative_rate_ignores_order_and_values():
    y = torch.tensor([3, 3, 8, 1, 8, 8])
    assert false_negative_rate(y) == false_negative_rate(y.flip(0)) == false_negative_rate(y * 10 - 4)


# ------------------------------------------------------------------------------------ k-means pseudo-labels
def test_kmeans_recovers_separated_clusters_and_is_deterministic():
    from lossbook.train import cluster_accuracy
    g = _gen(0)
    centres = 10 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    y = torch.arange(200) % 4
    x = centres[y] + 0.1 * torch.randn(200, 3, generator=g, dtype=torch.float64)
    pl = kmeans_pseudo_labels(x.float(), 4)
    assert pl.dtype == torch.long and pl.shape == (200,) and set(pl.tolist()) == {0, 1, 2, 3}
    assert cluster_accuracy(pl, y) == 1.0
    assert torch.equal(pl, kmeans_pseudo_labels(x.float(), 4))
    assert torch.equal(kmeans_pseudo_labels(x, 3, seed=1), kmeans_pseudo_labels(x, 3, seed=1))


def test_kmeans_defaults_are_seed_0_and_10_restarts():
    sk = pytest.importorskip("sklearn.cluster")
    x = torch.randn(60, 2, generator=_gen(1), dtype=torch.float64)
    ref = sk.KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(x.numpy())
    assert kmeans_pseudo_labels(x, 5).tolist() == ref.tolist()
    ref1 = sk.KMeans(n_clusters=5, n_init=1, random_state=3).fit_predict(x.numpy())
    assert kmeans_pseudo_labels(x, 5, seed=3, n_init=1).tolist() == ref1.tolist()


def test_kmeans_default_seed_and_restarts_are_pinned():
    # data on which scikit-learn's result changes with random_state and with n_init (checked first)
    sk = pytest.importorskip("sklearn.cluster")
    x = torch.rand(40, 2, generator=_gen(1), dtype=torch.float64)
    ref = sk.KMeans(n_clusters=6, n_init=10, random_state=0).fit_predict(x.numpy()).tolist()
    assert ref != sk.KMeans(n_clusters=6, n_init=11, random_state=0).fit_predict(x.numpy()).tolist()
    assert ref != sk.KMeans(n_clusters=6, n_init=10, random_state=1).fit_predict(x.numpy()).tolist()
    assert kmeans_pseudo_labels(x, 6).tolist() == ref
    assert kmeans_pseudo_labels(x, 6, seed=0, n_init=10).tolist() == ref


def test_kmeans_k_equals_n_and_one():
    x = torch.randn(5, 2, generator=_gen(2))
    assert sorted(kmeans_pseudo_labels(x, 5).tolist()) == [0, 1, 2, 3, 4]
    assert kmeans_pseudo_labels(x, 1).tolist() == [0] * 5


def test_module_import_stays_cheap():
    import subprocess
    import sys
    code = ("import sys, lossbook.ssl.g_simclr\nheavy = [m for m in ('sklearn', 'pandas', 'matplotlib') if m in sys.modules]"
            "\nassert not heavy, heavy")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
