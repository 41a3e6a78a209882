import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.data import (
    TwoViews,
    balanced_batches,
    batches,
    fashion_mnist_dir,
    gaussian_blur,
    gaussian_mixture,
    load_digits,
    load_fashion_mnist,
    load_mnist1d,
    random_affine,
    random_erasing,
    random_patches,
    random_resized_crop,
    skimage_images,
)
from lossbook.train import (
    accuracy,
    calibration_bins,
    expected_calibration_error,
    fit,
    linear_probe,
    mlp,
    nmi,
    recall_at_k,
    results_table,
    topk_accuracy,
)


def test_digits_split():
    d = load_digits()
    assert d.X_train.shape == (1437, 64) and d.X_test.shape == (360, 64) and d.n_classes == 10
    assert d.X_train.dtype == torch.float32 and d.y_train.dtype == torch.long
    assert abs(float(d.X_train.mean())) < 1e-3  # standardised with the training statistics
    im = load_digits(images=True)
    assert im.X_train.shape == (1437, 1, 8, 8) and 0 <= im.X_train.min() and im.X_train.max() <= 1
    assert torch.equal(load_digits(seed=1).y_test, load_digits(seed=1).y_test)



def test_digits_constant_training_pixels_keep_scale_one():
    "A pixel that is 0 in every training image but not in some test image is not divided by a zero std."
    for seed, test_size in [(0, 0.2), (0, 0.5), (4, 0.5)]:  # splits with such pixels (2, 2 and 2 test entries)
        d = load_digits(test_size=test_size, seed=seed)
        const = d.X_train.std(0) == 0
        assert const.any()
        assert float(d.X_test.abs().max()) < 1e3  # was up to 1e6 with std + 1e-6 (rare pixels still reach ~120)
        # scale 1 there: the test entries are the raw pixel values x / 16 (the training mean is 0), nonzero in some
        seen = d.X_test[:, const]
        assert float(seen.abs().max()) <= 1 and bool((seen != 0).any())


def test_split_helpers():
    d = load_digits()
    z = d.keep_classes([5, 6, 7])
    assert set(z.y_train.unique().tolist()) == {0, 1, 2} and z.classes == ["5", "6", "7"]
    assert len(z.y_train) == int(sum((d.y_train == c).sum() for c in (5, 6, 7)))
    s = d.subset(100, 50, seed=0)
    assert len(s.y_train) == 100 and len(s.y_test) == 50


def test_fashion_mnist():
    try:
        fashion_mnist_dir()
    except FileNotFoundError:
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    d = load_fashion_mnist(n_train=500, n_test=100)
    assert d.X_train.shape == (500, 1, 28, 28) and d.n_classes == 10
    assert 0 <= d.X_train.min() and d.X_train.max() <= 1 and d.X_train.max() > 0.9


def test_fashion_mnist_missing_says_how(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(root=tmp_path)


def test_mnist1d_local():
    d = load_mnist1d(num_samples=400)
    assert d.X_train.shape == (320, 40) and d.X_test.shape == (80, 40)


def test_images_and_patches():
    ims = skimage_images(["camera", "astronaut"])
    assert ims["camera"].shape == (1, 512, 512) and ims["astronaut"].shape[0] == 1
    assert skimage_images(["astronaut"], gray=False)["astronaut"].shape == (3, 512, 512)
    p = random_patches(ims, 10, 16, seed=0)
    assert p.shape == (10, 1, 16, 16) and torch.equal(p, random_patches(ims, 10, 16, seed=0))


def test_gaussian_mixture():
    d = gaussian_mixture(50, 8, 4, 2, sep=3.0, seed=0)
    assert d.X_train.shape == (200, 8) and d.X_test.shape == (100, 8) and d.n_classes == 50


def test_batches():
    assert sorted(torch.cat(list(batches(11, 4))).tolist()) == list(range(11))
    assert [len(b) for b in batches(11, 4, drop_last=True)] == [4, 4]
    y = torch.arange(10).repeat(20)
    for b in balanced_batches(y, 4, 16, torch.Generator().manual_seed(0)):
        counts = torch.bincount(y[b])
        assert sorted(counts[counts > 0].tolist()) == [4, 4, 4, 4]
    with pytest.raises(ValueError, match="multiple"):
        next(balanced_batches(y, 3, 16))


def test_augmentations_shapes_and_identity():
    x = torch.rand(6, 1, 8, 8)
    g = lambda: torch.Generator().manual_seed(0)
    assert random_resized_crop(x, generator=g()).shape == x.shape
    torch.testing.assert_close(random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=g()), x)
    torch.testing.assert_close(random_affine(x, 0.0, 0.0, (1.0, 1.0), generator=g()), x)
    torch.testing.assert_close(gaussian_blur(x, p=0.0, kernel_size=3, generator=g()), x)
    assert (random_erasing(x, p=1.0, generator=g()) == 0).any()
    v1, v2 = TwoViews(flip=0.0, generator=g())(x)
    w1, w2 = TwoViews(flip=0.0, generator=g())(x)
    assert torch.equal(v1, w1) and torch.equal(v2, w2) and not torch.equal(v1, v2)
    with pytest.raises(ValueError, match="4 dimensions"):
        TwoViews()(torch.rand(8, 8))


def test_metrics():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    y = torch.tensor([0, 2, 2, 1])
    assert accuracy(logits, y) == 0.5 and topk_accuracy(logits, y, 2) == 0.75 and topk_accuracy(logits, y, 3) == 1
    with pytest.raises(ValueError, match="labels must lie"):
        accuracy(logits, torch.tensor([0, 1, 2, 3]))
    # ECE against a float64 loop over bins
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(300, 5, generator=g) * 2, 1)
    t = torch.randint(5, (300,), generator=g)
    conf, pred = p.max(1)
    ece = 0.0
    for b in range(10):
        m = (conf > b / 10) & (conf <= (b + 1) / 10)
        if m.any():
            ece += m.float().mean() * ((pred[m] == t[m]).float().mean() - conf[m].mean()).abs()
    assert expected_calibration_error(p, t, 10) == pytest.approx(float(ece), abs=1e-6)
    assert sum(calibration_bins(p, t, 10)["count"]) == 300


def test_recall_and_nmi():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat_interleave(10)
    emb = torch.eye(4)[y] * 10 + 0.1 * torch.randn(40, 4, generator=g)
    assert recall_at_k(emb, y, (1, 4)) == {1: 1.0, 4: 1.0}
    assert nmi(emb, y) == pytest.approx(1.0)
    shuffled = y[torch.randperm(40, generator=g)]
    assert recall_at_k(emb, shuffled, (1,))[1] < 0.6


def test_fit_deterministic_and_learns():
    d = load_digits()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = mlp([64, 32, 10])
        h = fit(m, d.X_train, d.y_train, loss_fn=F.cross_entropy, epochs=8, lr=3e-3, seed=0,
                eval_fn=lambda m: {"acc": accuracy(m(d.X_test), d.y_test)})
        runs.append(h)
    assert runs[0]["loss"] == runs[1]["loss"]
    assert runs[0]["loss"][-1] < runs[0]["loss"][0] and runs[0]["acc"][-1] > 0.8
    with pytest.raises(ValueError, match="exactly one"):
        fit(mlp([64, 10]), d.X_train, d.y_train)


def test_linear_probe_separable():
    d = load_digits()
    acc = linear_probe(d.X_train, d.y_train, d.X_test, d.y_test)
    assert acc > 0.9  # digits are nearly linearly separable in pixel space
    noise = torch.randn_like(d.X_train)
    assert linear_probe(noise, d.y_train, torch.randn_like(d.X_test), d.y_test) < 0.3


def test_results_table():
    t = results_table({"a": {"acc": [0.5, 0.7]}, "b": {"acc": [0.9]}}, digits=2, scale=100)
    assert t.loc["a", "acc"] == "60.00 ± 14.14" and t.loc["b", "acc"] == "90.00"


def test_psnr():
    from lossbook.train import psnr
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    y = x + 0.01 * torch.randn_like(x)
    ref = [10 * math.log10(1.0 / float(((a - b) ** 2).mean())) for a, b in zip(x, y)]
    torch.testing.assert_close(psnr(y, x), torch.tensor(ref, dtype=torch.float64))
    torch.testing.assert_close(psnr(2 * y, 2 * x, data_range=2.0), psnr(y, x))
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, y[:2])


def test_effective_rank_and_spectrum():
    from lossbook.train import effective_rank, singular_spectrum
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(4000, 6, generator=g)
    assert 5.8 < effective_rank(iso) <= 6.0
    assert effective_rank(torch.randn(300, 1, generator=g) * torch.randn(1, 6, generator=g)) == pytest.approx(1.0, abs=1e-4)
    s = singular_spectrum(iso)
    assert s[0] == 1.0 and (s[1:] <= s[:-1]).all()


def test_forward_batch_stats_leaves_running_stats():
    from lossbook.train import forward_batch_stats
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).eval()
    before = m[1].running_mean.clone()
    out = forward_batch_stats(m, torch.randn(16, 4) + 5)
    assert torch.allclose(out.mean(0), torch.zeros(3), atol=1e-5)  # standardised with the batch's own statistics
    assert torch.equal(m[1].running_mean, before) and not m.training


# ---- validation split, best-epoch selection, clustering accuracy, pair AUC, tuned probe, conv autoencoder


def test_carve_validation_stratified_and_random():
    from lossbook.data import carve_validation
    d = load_digits()
    v = carve_validation(d, 300, seed=3)
    assert len(v.y_train) == len(d.y_train) - 300 and len(v.y_val) == 300 and torch.equal(v.y_test, d.y_test)
    # no sample is in both parts: train + val is a permutation of the original training part
    rows = lambda X: sorted(map(tuple, X.tolist()))
    assert rows(torch.cat([v.X_train, v.X_val])) == rows(d.X_train)
    share = torch.bincount(v.y_val, minlength=10).float() / 300
    full = torch.bincount(d.y_train, minlength=10).float() / len(d.y_train)
    assert (share - full).abs().max() < 0.01  # stratified
    r = carve_validation(d, 300, seed=3, stratify=False)
    perm = torch.randperm(len(d.y_train), generator=torch.Generator().manual_seed(3))
    assert torch.equal(r.y_val, d.y_train[perm[:300]])  # the documented random subset
    assert not torch.equal(carve_validation(d, 300, seed=4).y_val, v.y_val)
    assert "val (300, 64)" in repr(v)
    assert v.to("cpu").X_val is not None and v.subset(n_val=10).y_val.shape == (10,)
    with pytest.raises(ValueError, match="n_val"):
        carve_validation(d, 0)
    with pytest.raises(ValueError, match="already"):
        carve_validation(v, 10)


def test_fit_select_restores_best_epoch():
    d = load_digits()
    torch.manual_seed(0)
    m = mlp([64, 32, 10])
    scores = iter([0.3, 0.9, 0.5, 0.9])  # a fake validation metric: epoch 2 is best (first on ties)
    states = []
    def ev(model):
        states.append({k: t.clone() for k, t in model.state_dict().items()})
        return {"val": next(scores)}
    h = fit(m, d.X_train, d.y_train, loss_fn=F.cross_entropy, epochs=4, seed=0, eval_fn=ev, select="val")
    assert h["best_epoch"] == 2
    assert all(torch.equal(t, states[1][k]) for k, t in m.state_dict().items())
    scores = iter([0.3, 0.1, 0.5, 0.2])
    h = fit(m, d.X_train, d.y_train, loss_fn=F.cross_entropy, epochs=4, seed=0, eval_fn=lambda _: {"v": next(scores)},
            select="v", select_mode="min")
    assert h["best_epoch"] == 2
    with pytest.raises(ValueError, match="eval_fn"):
        fit(m, d.X_train, d.y_train, loss_fn=F.cross_entropy, epochs=1, select="val")
    with pytest.raises(ValueError, match="not among"):
        fit(m, d.X_train, d.y_train, loss_fn=F.cross_entropy, epochs=1, eval_fn=lambda _: {"a": 1.0}, select="b")
    with pytest.raises(ValueError, match="select_mode"):
        fit(m, d.X_train, d.y_train, loss_fn=F.cross_entropy, epochs=1, eval_fn=lambda _: {"a": 1.0}, select="a",
            select_mode="best")


def test_cluster_accuracy_against_brute_force():
    import itertools
    from lossbook.train import cluster_accuracy
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        y = torch.randint(0, 4, (30,), generator=g)
        p = torch.randint(0, 4, (30,), generator=g) * 7 + 3  # any integer ids
        best = max(sum(int((p == 7 * i + 3)[y == perm[i]].sum()) for i in range(4))
                   for perm in itertools.permutations(range(4))) / 30
        assert cluster_accuracy(p, y) == pytest.approx(best)
    with pytest.raises(ValueError, match="pred and labels"):
        cluster_accuracy(torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        cluster_accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_pair_auc_equals_sklearn():
    from sklearn.metrics import roc_auc_score
    from lossbook.train import pair_auc
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (40,), generator=g)
    e = torch.randn(40, 5, generator=g) + F.one_hot(y, 5).float()
    iu = torch.triu_indices(40, 40, 1)
    same = (y[:, None] == y[None, :])[iu[0], iu[1]].numpy()
    cos = F.normalize(e.double(), dim=1)
    s = (cos @ cos.T)[iu[0], iu[1]].numpy()
    assert pair_auc(e, y) == pytest.approx(roc_auc_score(same, s), abs=1e-12)
    d = -torch.cdist(e.double(), e.double())[iu[0], iu[1]].numpy()
    assert pair_auc(e, y, "euclidean") == pytest.approx(roc_auc_score(same, d), abs=1e-12)
    q = torch.round(e * 2) / 2  # ties count one half, as in sklearn
    qq = -torch.cdist(q.double(), q.double())[iu[0], iu[1]].numpy()
    assert pair_auc(q, y, "euclidean") == pytest.approx(roc_auc_score(same, qq), abs=1e-12)
    with pytest.raises(ValueError, match="same-label"):
        pair_auc(e[:3], torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="metric"):
        pair_auc(e, y, "manhattan")
    with pytest.raises(ValueError, match="rows"):
        pair_auc(e, y[:-1])


def test_tuned_probe_chooses_on_validation():
    from lossbook.data import carve_validation
    from lossbook.train import tuned_probe
    d = carve_validation(load_digits(), 300)
    acc, wd = tuned_probe(d.X_train, d.y_train, d.X_val, d.y_val, d.X_test, d.y_test, weight_decays=(1e-3, 10.0),
                          max_iter=50)
    assert wd == 1e-3 and acc > 0.9  # a huge penalty loses on validation
    val = {w: linear_probe(d.X_train, d.y_train, d.X_val, d.y_val, weight_decay=w, max_iter=50) for w in (1e-3, 10.0)}
    assert val[1e-3] > val[10.0]
    ref = linear_probe(torch.cat([d.X_train, d.X_val]), torch.cat([d.y_train, d.y_val]), d.X_test, d.y_test,
                       weight_decay=1e-3, max_iter=50)
    assert acc == ref  # refitted on train + validation


def test_conv_autoencoder_shapes_and_learns():
    from lossbook.train import ConvAutoencoder
    d = load_digits(images=True)
    torch.manual_seed(0)
    ae = ConvAutoencoder(10, image_size=8, latent_act="tanh")
    z, r = ae(d.X_train[:7])
    assert z.shape == (7, 10) and r.shape == (7, 1, 8, 8) and z.abs().max() <= 1
    before = F.mse_loss(ae.eval()(d.X_test)[1], d.X_test).item()
    fit(ae, d.X_train, step_fn=lambda m, xb, _: F.mse_loss(m(xb)[1], xb), epochs=3, lr=3e-3, seed=0)
    assert F.mse_loss(ae(d.X_test)[1], d.X_test).item() < 0.5 * before
    with pytest.raises(ValueError, match="divisible"):
        ConvAutoencoder(4, image_size=10, widths=(8, 8, 8))
    with pytest.raises(ValueError, match="activations"):
        ConvAutoencoder(4, latent_act="gelu")


def test_yeast_multilabel():
    from lossbook.data import load_yeast
    d = load_yeast()
    assert d.X_train.shape == (1934, 103) and d.y_train.shape == (1934, 14) and d.X_test.shape == (483, 103)
    assert d.n_classes == 14 and set(d.y_train.unique().tolist()) == {0, 1}
    assert 4.0 < float(d.y_train.sum(1).float().mean()) < 4.5  # 4.24 labels per gene in MULAN's description
    assert abs(float(d.X_train.mean())) < 1e-3
    assert not torch.equal(load_yeast(seed=1).y_test, d.y_test) and torch.equal(load_yeast().y_test, d.y_test)


def test_identity_glyphs():
    from lossbook.data import identity_glyphs, load_identities
    X, y = identity_glyphs(5, 4, size=16, seed=2)
    assert X.shape == (20, 1, 16, 16) and y.tolist() == [k for k in range(5) for _ in range(4)]
    assert 0 <= X.min() and X.max() <= 1 and X.dtype == torch.float32
    assert torch.equal(identity_glyphs(5, 4, seed=2)[0], identity_glyphs(5, 4, seed=2)[0])  # deterministic
    assert not torch.equal(identity_glyphs(5, 4, seed=3)[0], X)
    still = dict(deform=0, rotation=0, scale=0, shift=0, jitter=0, noise=0, occlusion=0)
    a, _ = identity_glyphs([7, 2], 2, seed=1, **still)
    b, _ = identity_glyphs(8, 2, seed=1, **still)
    assert torch.equal(a[:2], b[14:16]) and torch.equal(a[2:], b[4:6])  # identity k is one glyph whatever else is drawn
    assert torch.equal(a[0], a[1])  # without variations, samples of an identity are identical
    assert (b[0] - b[2]).abs().max() > 0.1  # different identities differ
    d = load_identities(30, 20, per_identity=6, size=12)
    assert set(d.y_train.tolist()) == set(range(30)) and set(d.y_test.tolist()) == set(range(30, 50))
    assert d.X_train.shape == (180, 1, 12, 12) and d.n_classes == 50
    with pytest.raises(ValueError, match="at least one identity"):
        identity_glyphs([], 3)
    with pytest.raises(ValueError, match="at least one identity"):
        identity_glyphs(3, 0)


def test_identities_are_hard_but_learnable_from_pixels():
    from lossbook.data import load_identities
    d = load_identities(10, 60, per_identity=10, seed=0)
    r1 = recall_at_k(d.X_test.flatten(1), d.y_test, (1,))[1]
    assert 0.2 < r1 < 0.9  # far above chance (9/599), far from solved: room for a learned embedding


def test_zero_shot_split():
    from lossbook.data import carve_validation, zero_shot_split
    d = load_digits()
    z = zero_shot_split(d, [0, 2, 4])
    assert set(z.y_train.tolist()) == {0, 2, 4} and set(z.y_test.tolist()) == {1, 3, 5, 6, 7, 8, 9}
    assert len(z.y_train) + len(z.y_test) == 1797
    assert len(zero_shot_split(carve_validation(d, 100), [0, 2, 4]).y_train) == len(z.y_train)  # the validation part is pooled too
    with pytest.raises(ValueError, match="train_classes"):
        zero_shot_split(d, [])
    with pytest.raises(ValueError, match="train_classes"):
        zero_shot_split(d, [11])
    with pytest.raises(ValueError, match="nothing is left unseen"):
        zero_shot_split(d, range(10))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_class_filters_on_a_cuda_split():
    # issue #11: keep_classes and zero_shot_split index their lookup tables with the labels: the tables follow them
    from lossbook.data import carve_validation, zero_shot_split
    d = carve_validation(load_digits(), 100)
    dc = d.to("cuda")
    for relabel in (True, False):
        k, kc = d.keep_classes([5, 6, 7], relabel=relabel), dc.keep_classes([5, 6, 7], relabel=relabel)
        for a, b in [(k.X_train, kc.X_train), (k.y_train, kc.y_train), (k.X_val, kc.X_val), (k.y_val, kc.y_val),
                     (k.X_test, kc.X_test), (k.y_test, kc.y_test)]:
            assert b.device.type == "cuda"
            torch.testing.assert_close(b.cpu(), a, rtol=0, atol=0)
    z, zc = zero_shot_split(d, [0, 2, 4]), zero_shot_split(dc, [0, 2, 4])
    for a, b in [(z.X_train, zc.X_train), (z.y_train, zc.y_train), (z.X_test, zc.X_test), (z.y_test, zc.y_test)]:
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=0)
