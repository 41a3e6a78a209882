"""Tests of lossbook.vision.betti_matching (card 20): the induced matching against an independent union-find
transcription and against topolosses' compiled Betti-Matching-3D (when installed), the loss against topolosses'
BettiMatchingLoss(use_base_loss=False), gradients, reductions, defaults, bad inputs and the metrics."""
import importlib.util
import inspect
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lossbook.vision.betti_matching import (BettiMatchingLoss, betti_matching, betti_matching_error,
                                            betti_matching_loss, betti_number_error, betti_numbers, cubical_barcode,
                                            induced_betti_matching)
from references import betti_matching_loss_ref, betti_matching_slow


def load_topolosses_bm():
    """topolosses' compiled `betti_matching` extension and its `BettiMatchingLoss` class, loaded file by file (importing
    the package pulls cv2, POT and torchvision). (None, None) when topolosses is not installed."""
    spec = importlib.util.find_spec("topolosses")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    root = Path(list(spec.submodule_search_locations)[0])
    src = root / "losses" / "betti_matching" / "src"
    so = sorted(src.glob("betti_matching*.so"))
    if not so:
        return None, None
    for name, d in [("_tl", root), ("_tl.losses", root / "losses"), ("_tl.losses.betti_matching", src.parent),
                    ("_tl.losses.betti_matching.src", src)]:
        if name not in sys.modules:
            m = types.ModuleType(name)
            m.__path__ = [str(d)]
            sys.modules[name] = m

    def load(name, path):
        if name not in sys.modules:
            s = importlib.util.spec_from_file_location(name, path)
            m = importlib.util.module_from_spec(s)
            sys.modules[name] = m
            s.loader.exec_module(m)
        return sys.modules[name]

    ext = load("_tl.losses.betti_matching.src.betti_matching", so[0])
    load("_tl.losses.utils", root / "losses" / "utils.py")
    return ext, load("_tl.losses.betti_matching.src.betti_matching_loss", src / "betti_matching_loss.py").BettiMatchingLoss


EXT, TL_LOSS = load_topolosses_bm()
needs_topolosses = pytest.mark.skipif(EXT is None, reason="topolosses==0.2.0 is not installed (pip install topolosses==0.2.0 --no-deps)")


def cases(n, seed, max_side=14):
    "Random sublevel pairs: continuous maps, quantised maps (ties), binary and continuous second images."
    rng = np.random.default_rng(seed)
    for t in range(n):
        H, W = (int(v) for v in rng.integers(2, max_side, 2))
        L = rng.random((H, W))
        if t % 3 == 0:
            L = np.round(L * 4) / 4
        G = (rng.random((H, W)) > 0.5).astype(float) if t % 5 else rng.random((H, W))
        yield 1 - L, 1 - G


def as_sets(res, W):
    "Our result -> per dim (sorted matched, sorted unmatched0, sorted unmatched1) of pixel-coordinate tuples."
    c = lambda v: tuple(int(x) for x in divmod(int(v), W))
    out = {}
    for d, r in enumerate(res):
        p0, p1, m = r["pairs0"], r["pairs1"], r["matched"]
        mi0, mi1 = set(m[:, 0].tolist()), set(m[:, 1].tolist())
        out[d] = (sorted((c(p0[i][0]), c(p0[i][1]), c(p1[j][0]), c(p1[j][1])) for i, j in m),
                  sorted((c(q[0]), c(q[1])) for i, q in enumerate(p0) if i not in mi0),
                  sorted((c(q[0]), c(q[1])) for i, q in enumerate(p1) if i not in mi1))
    return out


def slow_sets(f0, f1):
    out = {}
    for d, (p0, p1, m) in betti_matching_slow(f0.tolist(), f1.tolist()).items():
        t = lambda q: (tuple(map(int, q[0])), tuple(map(int, q[1])))
        out[d] = (sorted(t(a) + t(b) for a, b in m), sorted(t(q) for q in p0 if q not in [a for a, _ in m]),
                  sorted(t(q) for q in p1 if q not in [b for _, b in m]))
    return out


def oracle_sets(f0, f1):
    r = EXT.compute_matching(np.ascontiguousarray(f0, dtype=np.float64), np.ascontiguousarray(f1, dtype=np.float64))
    T = lambda a: [tuple(int(v) for v in row) for row in np.asarray(a).reshape(-1, 2).tolist()]
    return {d: (sorted(zip(T(r.input1_matched_birth_coordinates[d]), T(r.input1_matched_death_coordinates[d]),
                           T(r.input2_matched_birth_coordinates[d]), T(r.input2_matched_death_coordinates[d]))),
                sorted(zip(T(r.input1_unmatched_birth_coordinates[d]), T(r.input1_unmatched_death_coordinates[d]))),
                sorted(zip(T(r.input2_unmatched_birth_coordinates[d]), T(r.input2_unmatched_death_coordinates[d]))))
            for d in (0, 1)}


# --- the matching ---------------------------------------------------------------------------------------------------------
def test_matching_equals_slow_union_find_transcription():
    for f0, f1 in cases(120, seed=0):
        assert as_sets(induced_betti_matching(f0, f1), f0.shape[1]) == slow_sets(f0, f1)


@needs_topolosses
def test_matching_equals_topolosses_cpp():
    for f0, f1 in cases(300, seed=1):
        assert as_sets(induced_betti_matching(f0, f1), f0.shape[1]) == oracle_sets(f0, f1)


@needs_topolosses
def test_matching_equals_topolosses_cpp_on_larger_smooth_maps():
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(2)
    for _ in range(6):
        L = gaussian_filter(rng.random((40, 48)), 1.5)
        L = (L - L.min()) / (L.max() - L.min())
        G = (gaussian_filter(rng.random((40, 48)), 1.5) > 0.5).astype(float)
        assert as_sets(induced_betti_matching(1 - L, 1 - G), 48) == oracle_sets(1 - L, 1 - G)


def test_betti_matching_coordinates_partition_the_barcodes():
    rng = np.random.default_rng(3)
    L, G = rng.random((9, 11)), (rng.random((9, 11)) > 0.5).astype(float)
    bm = betti_matching(L, G)
    for d, bars in enumerate(cubical_barcode(L)):
        assert len(bm["matched"][d]) + len(bm["unmatched_pred"][d]) == len(bars)
        assert bm["matched"][d].shape[1:] == (2, 2, 2)
    for d, bars in enumerate(cubical_barcode(G)):
        assert len(bm["matched"][d]) + len(bm["unmatched_target"][d]) == len(bars)
    # the sublevel matching of the complements is the same matching
    bs = betti_matching(1 - L, 1 - G, filtration="sublevel")
    for k in bm:
        for d in (0, 1):
            np.testing.assert_array_equal(bm[k][d], bs[k][d])


def test_barcode_counts_components_and_holes_of_every_sublevel_set():
    "Intervals alive at t = Betti numbers of {f <= t} (scipy.ndimage.label, Euler characteristic), reduced in dim 0."
    rng = np.random.default_rng(4)
    for _ in range(5):
        f = np.round(rng.random((12, 13)) * 8) / 8
        bars = cubical_barcode(f, filtration="sublevel")
        vals = [[(f[tuple(b)], f[tuple(d)]) for b, d in arr] for arr in bars]
        for t in np.unique(f):
            mask = f <= t
            b0, b1 = betti_numbers(mask.astype(float))
            alive = [sum(b <= t < d for b, d in v) for v in vals]
            assert alive[0] + 1 == b0 and alive[1] == b1


def test_superlevel_barcode_of_a_known_shape():
    img = np.zeros((9, 9))
    img[1:8, 1:8] = 1
    img[3:6, 3:6] = 0  # a ring: one component, one hole
    img[0, 0] = 0.5  # a separate weaker component (4-connectivity: the diagonal does not connect)
    b0, b1 = cubical_barcode(img)
    assert len(b0) == 1 and len(b1) == 1
    assert tuple(b0[0, 0]) == (0, 0)  # born at the 0.5 pixel
    assert img[tuple(b1[0, 1])] == 0  # the hole dies at value 0 (in superlevel terms, when the hole's pixels enter)


# --- the loss: value --------------------------------------------------------------------------------------------------------
@needs_topolosses
@pytest.mark.parametrize("side", [16, 32])
@pytest.mark.parametrize("push", [False, True])
def test_loss_equals_topolosses_per_image(side, push):
    torch.manual_seed(side)
    probs = torch.rand(3, 1, side, side)
    probs[1] = torch.sigmoid(4 * torch.randn(1, side, side))  # saturated values: ties at 0 and 1 in float32
    target = (torch.rand(3, 1, side, side) > 0.5).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = TL_LOSS(use_base_loss=False, push_unmatched_to_1_0=push)
        for i in range(3):
            a = ref(probs[i:i + 1], target[i:i + 1])
            b = betti_matching_loss(probs[i:i + 1], target[i:i + 1], push_unmatched_to_1_0=push)
            torch.testing.assert_close(b, a.reshape(()), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(betti_matching_loss(probs, target, push_unmatched_to_1_0=push),
                                   ref(probs, target).reshape(()), rtol=1e-5, atol=1e-6)


@needs_topolosses
def test_loss_equals_topolosses_sublevel():
    torch.manual_seed(5)
    probs, target = torch.rand(2, 1, 14, 15), torch.rand(2, 1, 14, 15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = TL_LOSS(use_base_loss=False, filtration_type="sublevel")(probs, target)
    torch.testing.assert_close(betti_matching_loss(probs, target, filtration="sublevel"), ref.reshape(()),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("filtration", ["superlevel", "sublevel"])
@pytest.mark.parametrize("push", [False, True])
def test_loss_equals_float64_reference(filtration, push):
    g = torch.Generator().manual_seed(6)
    probs = torch.rand(3, 2, 9, 10, generator=g, dtype=torch.float64)
    target = (torch.rand(3, 2, 9, 10, generator=g, dtype=torch.float64) > 0.4).double()
    torch.testing.assert_close(betti_matching_loss(probs, target, filtration, push),
                               betti_matching_loss_ref(probs, target, filtration, push), rtol=1e-12, atol=1e-12)


def test_defaults():
    sig = inspect.signature(betti_matching_loss)
    assert sig.parameters["filtration"].default == "superlevel"
    assert sig.parameters["push_unmatched_to_1_0"].default is False
    assert sig.parameters["reduction"].default == "mean"
    m = BettiMatchingLoss()
    assert (m.filtration, m.push_unmatched_to_1_0, m.reduction) == ("superlevel", False, "mean")
    g = torch.Generator().manual_seed(7)
    probs, target = torch.rand(2, 1, 8, 8, generator=g, dtype=torch.float64), torch.rand(2, 1, 8, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(betti_matching_loss(probs, target), betti_matching_loss_ref(probs, target), rtol=1e-12, atol=0)
    assert inspect.signature(betti_numbers).parameters["threshold"].default == 0.5
    assert inspect.signature(betti_number_error).parameters["threshold"].default == 0.5
    assert inspect.signature(betti_matching_error).parameters["threshold"].default == 0.5
    assert inspect.signature(cubical_barcode).parameters["filtration"].default == "superlevel"
    assert inspect.signature(betti_matching).parameters["filtration"].default == "superlevel"


def test_identical_binary_masks_give_zero_and_match_everything():
    rng = np.random.default_rng(8)
    m = (rng.random((12, 12)) > 0.5).astype(float)
    t = torch.tensor(m)[None, None]
    assert betti_matching_loss(t, t).item() == 0.0
    bm = betti_matching(m, m)
    assert all(len(u) == 0 for u in bm["unmatched_pred"] + bm["unmatched_target"])
    assert sum(len(x) for x in bm["matched"]) == sum(len(b) for b in cubical_barcode(m)) > 0
    assert betti_matching_error(m, m) == 0 and betti_number_error(m, m) == 0


def test_module_equals_function_and_reductions():
    g = torch.Generator().manual_seed(9)
    probs = torch.rand(3, 2, 8, 9, generator=g, dtype=torch.float64)
    target = (torch.rand(3, 2, 8, 9, generator=g, dtype=torch.float64) > 0.5).double()
    none = betti_matching_loss(probs, target, reduction="none")
    assert none.shape == (3, 2) and (none >= 0).all()
    for c in range(2):  # each (b, c) image on its own
        for b in range(3):
            torch.testing.assert_close(none[b, c], betti_matching_loss(probs[b:b + 1, c:c + 1], target[b:b + 1, c:c + 1]))
    torch.testing.assert_close(betti_matching_loss(probs, target), none.mean())
    torch.testing.assert_close(betti_matching_loss(probs, target, reduction="sum"), none.sum())
    for kw in [dict(filtration="sublevel"), dict(push_unmatched_to_1_0=True), dict(reduction="none")]:
        torch.testing.assert_close(BettiMatchingLoss(**kw)(probs, target), betti_matching_loss(probs, target, **kw))


def test_float32_keeps_dtype_and_agrees():
    g = torch.Generator().manual_seed(10)
    probs, target = torch.rand(2, 1, 10, 10, generator=g), (torch.rand(2, 1, 10, 10, generator=g) > 0.5).float()
    v = betti_matching_loss(probs, target)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v.double(), betti_matching_loss(probs.double(), target.double()), rtol=1e-5, atol=1e-6)


# --- the loss: gradient -----------------------------------------------------------------------------------------------------
def test_gradcheck_float64():
    g = torch.Generator().manual_seed(11)
    probs = (torch.rand(2, 1, 6, 7, generator=g, dtype=torch.float64) + 1e-6 * torch.arange(84).reshape(2, 1, 6, 7)).requires_grad_()
    target = torch.rand(2, 1, 6, 7, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, t: betti_matching_loss(p, t), (probs, target), eps=1e-8, atol=1e-6)
    assert torch.autograd.gradcheck(lambda p, t: betti_matching_loss(p, t, push_unmatched_to_1_0=True), (probs, target),
                                    eps=1e-8, atol=1e-6)


def test_gradient_only_at_critical_pixels():
    rng = np.random.default_rng(12)
    L, G = rng.random((10, 10)), (rng.random((10, 10)) > 0.5).astype(float)
    p = torch.tensor(L)[None, None].requires_grad_()
    betti_matching_loss(p, torch.tensor(G)[None, None]).backward()
    bm = betti_matching(L, G)
    crit = {tuple(c) for d in (0, 1) for arr in (bm["unmatched_pred"][d], bm["matched"][d][:, 0]) for c in arr.reshape(-1, 2).tolist()}
    nz = {tuple(c) for c in torch.nonzero(p.grad[0, 0]).tolist()}
    assert nz and nz <= crit


def test_unmatched_blob_adds_its_length_squared():
    yy, xx = np.mgrid[:16, :16]
    L = 0.05 * (1 - np.hypot(yy - 4.5, xx - 4.5) / 20)
    L[3:7, 3:7] += 0.9
    G = np.zeros((16, 16))
    G[3:7, 3:7] = 1
    t = lambda a: torch.tensor(a)[None, None]
    assert betti_matching_loss(t(L), t(G)).item() == 0.0
    L[12, 12] = 0.7
    (b, d), = betti_matching(L, G)["unmatched_pred"][0]
    assert tuple(b) == (12, 12)
    torch.testing.assert_close(betti_matching_loss(t(L), t(G)), torch.tensor((L[tuple(b)] - L[tuple(d)]) ** 2, dtype=torch.float64))
    assert betti_matching_loss(t(L), t(G), push_unmatched_to_1_0=True).item() == pytest.approx(
        2 * ((1 - L[tuple(b)] - 1) ** 2 + (1 - L[tuple(d)]) ** 2))


# --- bad inputs -------------------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_naming_the_argument():
    p, t = torch.rand(2, 1, 6, 6), (torch.rand(2, 1, 6, 6) > 0.5).float()
    for bad in (float("nan"), float("inf")):
        x = p.clone()
        x[0, 0, 0, 0] = bad
        with pytest.raises(ValueError, match=r"^probs:"):
            betti_matching_loss(x, t)
        y = t.clone()
        y[1, 0, 2, 2] = bad
        with pytest.raises(ValueError, match=r"^target:"):
            betti_matching_loss(p, y)
    with pytest.raises(ValueError, match=r"^probs and target must have the same shape"):
        betti_matching_loss(p, t[:, :, :, :-1])
    with pytest.raises(ValueError, match=r"^probs and target must have the same shape"):
        betti_matching_loss(p, t[:1])
    with pytest.raises(ValueError, match=r"^probs:"):
        betti_matching_loss(p[0], t[0])  # 3-D
    with pytest.raises(ValueError, match=r"^probs:"):
        betti_matching_loss((p > 0.5).long(), t)
    with pytest.raises(ValueError, match=r"^target:"):
        betti_matching_loss(p, t.long())
    with pytest.raises(ValueError, match=r"^probs:"):
        betti_matching_loss(p[:0], t[:0])
    with pytest.raises(ValueError, match=r"^probs:"):
        betti_matching_loss(p[:, :, :1], t[:, :, :1])  # a 1×W image
    with pytest.raises(ValueError, match=r"^probs:"):
        betti_matching_loss(p[:, :, :, :1], t[:, :, :, :1])
    with pytest.raises(ValueError, match=r"^filtration:"):
        betti_matching_loss(p, t, filtration="both")
    with pytest.raises(ValueError, match=r"^reduction:"):
        betti_matching_loss(p, t, reduction="avg")
    with pytest.raises(ValueError, match=r"^target:"):
        betti_matching(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"^target:"):
        betti_matching_error(np.zeros((4, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"^pred:"):
        betti_matching(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match=r"^pred:"):
        betti_matching(np.full((3, 3), np.nan), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"^img:"):
        cubical_barcode(np.zeros((1, 5)))
    with pytest.raises(ValueError, match=r"^filtration:"):
        cubical_barcode(np.zeros((3, 3)), filtration="up")
    with pytest.raises(ValueError, match=r"^filtration:"):
        betti_matching(np.zeros((3, 3)), np.zeros((3, 3)), filtration="up")
    with pytest.raises(ValueError, match=r"^mask:"):
        betti_numbers(np.zeros((2, 2, 2)))


# --- metrics ----------------------------------------------------------------------------------------------------------------
def _disk(r_out, r_in=-1.0, n=21, c=(10, 10)):
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - c[0], xx - c[1])
    return ((r <= r_out) & (r > r_in)).astype(float)


def test_betti_numbers_of_known_shapes():
    assert betti_numbers(np.zeros((5, 5))) == (0, 0)
    assert betti_numbers(_disk(6)) == (1, 0)
    assert betti_numbers(_disk(6, 3)) == (1, 1)
    two_rings = np.maximum(_disk(4, 2, c=(5, 5)), _disk(4, 2, c=(15, 15)))
    assert betti_numbers(two_rings) == (2, 2)
    eight = np.zeros((7, 11))
    eight[1:6, 1:10] = 1
    eight[2:5, 2:5] = 0
    eight[2:5, 6:9] = 0
    assert betti_numbers(eight) == (1, 2)
    assert betti_numbers(np.array([[1.0, 0.0], [0.0, 1.0]])) == (2, 0)  # 4-connected foreground
    ring_diag = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], float)
    assert betti_numbers(ring_diag) == (4, 0)  # a "diamond" of diagonal pixels: no hole in the V-construction
    # the threshold: values >= 0.5 are foreground
    assert betti_numbers(np.array([[0.5, 0.49], [0.49, 0.5]])) == (2, 0)
    assert betti_numbers(np.array([[0.5, 0.49], [0.49, 0.5]]), threshold=0.4) == (1, 0)


def test_barcode_counts_equal_betti_numbers():
    for m in (_disk(6, 3), np.maximum(_disk(4, 2, c=(5, 5)), _disk(4, 2, c=(15, 15))), _disk(6)):
        b0, b1 = cubical_barcode(m)
        assert (len(b0) + 1, len(b1)) == betti_numbers(m)


def test_matching_error_on_known_shapes():
    ring, disk = _disk(6, 3), _disk(6)
    assert betti_number_error(ring, disk) == 1 and betti_matching_error(ring, disk) == 1
    # two rings vs two rings elsewhere: Betti numbers agree (error 0) but the features are not co-located
    a = np.maximum(_disk(3, 1.5, c=(4, 4)), _disk(3, 1.5, c=(16, 16)))
    b = np.maximum(_disk(3, 1.5, c=(4, 16)), _disk(3, 1.5, c=(16, 4)))
    assert betti_number_error(a, b) == 0
    assert betti_matching_error(a, b) > 0
    # a broken line: one component against two
    line = np.zeros((5, 12))
    line[2, 1:11] = 1
    broken = line.copy()
    broken[2, 6] = 0
    assert betti_number_error(broken, line) == 1 and betti_matching_error(broken, line) == 1
    # empty prediction: the essential component counts once
    assert betti_matching_error(np.zeros((5, 12)), line) == 1 == betti_number_error(np.zeros((5, 12)), line)
    assert betti_matching_error(np.zeros((5, 12)), np.zeros((5, 12))) == 0
    # thresholding at 0.5 by default
    assert betti_matching_error(0.6 * line, line) == 0
    assert betti_matching_error(0.4 * line, line) == 1
    assert betti_matching_error(0.4 * line, line, threshold=0.3) == 0


def test_matching_error_bounds_betti_number_error():
    rng = np.random.default_rng(13)
    for _ in range(40):
        p, t = (rng.random((10, 10)) > 0.55).astype(float), (rng.random((10, 10)) > 0.55).astype(float)
        assert betti_matching_error(p, t) >= betti_number_error(p, t)


# --- tests asked for by mutation testing (issue #7) -------------------------------------------------------------------------
def test_matching_error_equals_the_slow_transcription():
    "The unmatched count of the thresholded masks (the complements 1 - mask as sublevel images), exactly."
    rng = np.random.default_rng(14)
    p = np.array([[1, 0, 1, 1, 0], [1, 1, 1, 0, 1], [1, 1, 0, 1, 1], [1, 0, 1, 1, 1]], float)
    t = np.array([[0, 0, 1, 1, 0], [1, 0, 1, 0, 1], [1, 0, 1, 0, 1], [1, 1, 0, 1, 0]], float)
    pairs = [(p, t)] + [((rng.random((7, 8)) > 0.5).astype(float), (rng.random((7, 8)) > 0.5).astype(float))
                        for _ in range(10)]
    for p, t in pairs:
        s = slow_sets(1 - p, 1 - t)
        want = sum(len(s[d][1]) + len(s[d][2]) for d in (0, 1)) + int(p.any() != t.any())
        assert betti_matching_error(p, t) == want
    assert betti_matching_error(*pairs[0]) == 4


def test_metrics_thresholds_and_tensor_inputs():
    line = np.zeros((5, 12))
    line[2, 1:11] = 1
    # values equal to the threshold are foreground, in both arguments
    assert betti_matching_error(0.5 * line, line) == 0 and betti_matching_error(line, 0.5 * line) == 0
    # the threshold reaches both images
    for a, b in ((0.4 * line, line), (line, 0.4 * line)):
        assert betti_number_error(a, b) == 1 and betti_number_error(a, b, threshold=0.3) == 0
    # tensors are read as arrays
    rng = np.random.default_rng(15)
    L, G = rng.random((6, 7)), (rng.random((6, 7)) > 0.5).astype(float)
    tL, tG = torch.tensor(L, requires_grad=True), torch.tensor(G)
    bm, bt = betti_matching(L, G), betti_matching(tL, tG)
    for k in bm:
        for d in (0, 1):
            np.testing.assert_array_equal(bt[k][d], bm[k][d])
    for d in (0, 1):
        np.testing.assert_array_equal(cubical_barcode(tL)[d], cubical_barcode(L)[d])
    assert betti_numbers(torch.tensor(G)) == betti_numbers(G)
    assert betti_matching_error(tL, tG) == betti_matching_error(L, G)


def test_metrics_name_the_bad_argument():
    ok = np.zeros((4, 4))
    for bad, match in ((np.zeros(4), r"^{}: expected an \(H, W\) image with H, W >= 2, got shape \(4,\)$"),
                       (np.full((4, 4), np.nan), r"^{}: expected finite values, got NaN or Inf$")):
        for fn in (betti_matching, betti_matching_error):
            with pytest.raises(ValueError, match=match.format("pred")):
                fn(bad, ok)
            with pytest.raises(ValueError, match=match.format("target")):
                fn(ok, bad)


def test_loss_checks_each_argument_by_name_before_the_shapes():
    p, t = torch.rand(2, 1, 6, 6), (torch.rand(2, 1, 6, 6) > 0.5).float()
    for bad in (t[0], t[..., None]):
        with pytest.raises(ValueError, match=r"^target: expected 4 dimensions"):
            betti_matching_loss(p, bad)
        with pytest.raises(ValueError, match=r"^probs: expected 4 dimensions"):
            betti_matching_loss(bad, t)


def test_smallest_images_are_legal():
    g = torch.Generator().manual_seed(16)
    for H, W in ((2, 2), (2, 5), (5, 2)):
        probs = torch.rand(2, 1, H, W, generator=g, dtype=torch.float64)
        target = (torch.rand(2, 1, H, W, generator=g, dtype=torch.float64) > 0.5).double()
        v = betti_matching_loss(probs, target)
        torch.testing.assert_close(v, betti_matching_loss_ref(probs, target), rtol=1e-12, atol=1e-12)
        assert v.item() > 0
    p = torch.rand(1, 1, 1, 5, generator=g)
    with pytest.raises(ValueError, match=r"^probs: expected images of at least 2×2 pixels, got 1×5$"):
        betti_matching_loss(p, p)
    with pytest.raises(ValueError, match=r"^probs: expected images of at least 2×2 pixels, got 5×1$"):
        betti_matching_loss(p.transpose(2, 3), p.transpose(2, 3))
