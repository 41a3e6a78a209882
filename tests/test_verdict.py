"""The shared verdict rule: compare / equivalent against scipy, their simulated error rates and power, decide's whole
rule table, gates, Claim, and recompute."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from lossbook.verdict import (
    OUTCOMES,
    STATUSES,
    Claim,
    beats,
    compare,
    compare_test,
    decide,
    equivalence_test,
    equivalent,
    observed,
    plateau,
    recompute,
)


# --- compare ------------------------------------------------------------------------------------------------------
def test_compare_p_value_is_scipys_one_sided_paired_t_test():
    rng = np.random.default_rng(0)
    for n in (3, 5, 8):
        m, b = rng.normal(0.3, 1, n), rng.normal(0, 1, n)
        ref = stats.ttest_rel(m, b, alternative="greater").pvalue
        assert math.isclose(compare_test(m, b).p_value, ref, rel_tol=1e-9)
        # lower is better: the p-value of "method lower"
        ref_low = stats.ttest_rel(m, b, alternative="less").pvalue
        assert math.isclose(compare_test(m, b, higher_is_better=False).p_value, ref_low, rel_tol=1e-9)


def test_compare_welch_and_one_sample_match_scipy():
    rng = np.random.default_rng(1)
    m, b = rng.normal(0.5, 1, 6), rng.normal(0, 2, 4)
    ref = stats.ttest_ind(m, b, equal_var=False, alternative="greater").pvalue
    assert math.isclose(compare_test(m, b, paired=False).p_value, ref, rel_tol=1e-9)
    ref1 = stats.ttest_1samp(m, 0.2, alternative="greater").pvalue
    assert math.isclose(compare_test(m, 0.2).p_value, ref1, rel_tol=1e-9)
    ref2 = stats.ttest_1samp(b, 0.2, alternative="less").pvalue  # a fixed method value against a baseline's seeds
    assert math.isclose(compare_test(0.2, b).p_value, ref2, rel_tol=1e-9)


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_compare_outcome_follows_the_level(alpha):
    rng = np.random.default_rng(2)
    for _ in range(200):
        m, b = rng.normal(rng.uniform(-1, 1), 1, 5), rng.normal(0, 1, 5)
        p = stats.ttest_rel(m, b, alternative="greater").pvalue
        expect = "supports" if p < alpha else ("contradicts" if 1 - p < alpha else "inconclusive")
        assert compare(m, b, alpha=alpha) == expect


def test_compare_degenerate_cases():
    v = [0.9, 0.91, 0.92]
    assert compare(v, v) == "inconclusive"  # identical values
    assert compare(v, [x + 1e-15 for x in v]) == "inconclusive"  # round-off only
    assert compare([0.99], [0.1]) == "inconclusive"  # a single seed: no test
    assert compare_test([0.99], [0.1]).p_value is None
    assert compare([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == "supports"  # every difference +1: t = +inf
    assert compare([0.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == "contradicts"
    # Welch with a zero-variance arm is still scipy's test
    ref = stats.ttest_ind([0.5, 0.5], [0.1, 0.2, 0.3], equal_var=False, alternative="greater").pvalue
    assert math.isclose(compare_test([0.5, 0.5], [0.1, 0.2, 0.3], paired=False).p_value, ref, rel_tol=1e-9)
    with pytest.raises(ValueError, match="paired"):
        compare([1, 2, 3], [1, 2])
    for bad in ([0.9, None, 0.8], [0.9, float("nan")], [float("inf"), 1.0], [], "0.9", [True, False]):
        with pytest.raises(ValueError):
            compare(bad, [0.1, 0.2])
    with pytest.raises(ValueError, match="alpha"):
        compare([1, 2], [0, 1], alpha=0.7)


def test_compare_accepts_tensors_and_arrays():
    torch = pytest.importorskip("torch")
    m, b = torch.tensor([0.95, 0.96, 0.97]), np.array([0.90, 0.92, 0.91])
    assert compare(m, b) == compare(m.tolist(), b.tolist())


# --- simulated error rates and power --------------------------------------------------------------------------------
def _simulate(n, effect, reps=3000, seed=0, paired=True, heavy=False):
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(OUTCOMES, 0)
    for _ in range(reps):
        shared = rng.standard_normal(n)
        noise = (lambda: rng.standard_t(3, n) / math.sqrt(3)) if heavy else (lambda: rng.standard_normal(n))
        counts[compare(shared + effect + noise(), shared + noise(), paired=paired)] += 1
    return {k: v / reps for k, v in counts.items()}


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("heavy", [False, True])
def test_false_support_rate_at_most_alpha(n, heavy):
    reps = 3000
    r = _simulate(n, 0.0, reps, seed=n, heavy=heavy)
    slack = 3 * math.sqrt(0.05 * 0.95 / reps)  # three binomial standard errors
    assert r["supports"] <= 0.05 + slack
    assert r["contradicts"] <= 0.05 + slack


def test_power_grows_with_effect_and_seeds():
    p3 = [_simulate(3, e, 1500, seed=10)["supports"] for e in (0.5, 1.5, 3.0)]
    p5 = [_simulate(5, e, 1500, seed=11)["supports"] for e in (0.5, 1.5, 3.0)]
    assert p3[0] < p3[1] < p3[2] and p5[0] < p5[1] < p5[2]
    assert all(b > a for a, b in zip(p3, p5))  # more seeds, more power
    assert p5[2] > 0.9  # a 3-sigma effect is found almost always with 5 seeds


# --- equivalent ------------------------------------------------------------------------------------------------------
def test_equivalence_is_tost():
    rng = np.random.default_rng(3)
    for _ in range(100):
        m, b, margin = rng.normal(rng.uniform(-1, 1), 0.5, 6), rng.normal(0, 0.5, 6), 0.6
        d = m - b
        se, df = d.std(ddof=1) / math.sqrt(len(d)), len(d) - 1
        p_tost = max(stats.t.sf((d.mean() + margin) / se, df), stats.t.sf((margin - d.mean()) / se, df))
        r = equivalence_test(m, b, margin)
        assert math.isclose(r.p_value, p_tost, rel_tol=1e-9)
        p_out = stats.t.sf((abs(d.mean()) - margin) / se, df)
        assert r.outcome == ("supports" if p_tost < 0.05 else "contradicts" if p_out < 0.05 else "inconclusive")


def test_equivalence_error_rate_at_the_margin():
    rng = np.random.default_rng(4)
    reps = 3000
    hits = sum(equivalent(rng.standard_normal(5) + 0.5, 0.0, margin=0.5) == "supports" for _ in range(reps))
    assert hits / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)


def test_equivalence_degenerate_and_bad():
    assert equivalent([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], margin=0.1) == "supports"
    assert equivalent([1.5, 1.5, 1.5], [1.0, 1.0, 1.0], margin=0.1) == "contradicts"
    assert equivalent([1.0], [1.0], margin=0.1) == "inconclusive"
    for margin in (0, -1, float("nan"), None):
        with pytest.raises(ValueError, match="margin"):
            equivalent([1, 2], [1, 2], margin=margin)


# --- decide ------------------------------------------------------------------------------------------------------------
def _rule(outcomes, primary, gates):
    "The rule table, written independently of decide()."
    if not all(gates.values()):
        return "not_testable"
    vals = list(outcomes.values())
    if all(v == "supports" for v in vals):
        return "reproduced"
    if outcomes[primary] == "supports" and "contradicts" not in vals:
        return "partly"
    return "not_reproduced"


def test_decide_whole_rule_table():
    seen = set()
    for k in (1, 2, 3):
        for outs in itertools.product(OUTCOMES, repeat=k):
            outcomes = {f"c{i}": o for i, o in enumerate(outs)}
            for g in itertools.product([True, False], repeat=2):
                gates = {"g0": g[0], "g1": g[1]}
                for primary in outcomes:
                    s = decide(outcomes, primary, gates)
                    assert s == _rule(outcomes, primary, gates)
                    seen.add(s)
            assert decide(outcomes, "c0") == _rule(outcomes, "c0", {})  # no gates
    assert seen == set(STATUSES)


def test_decide_bad_input():
    with pytest.raises(ValueError, match="unknown outcome"):
        decide({"a": "supported"}, "a")
    with pytest.raises(ValueError, match="primary"):
        decide({"a": "supports"}, "b")
    with pytest.raises(ValueError, match="no comparison"):
        decide({}, "a")
    with pytest.raises(ValueError, match="True or False"):
        decide({"a": "supports"}, "a", {"g": "yes"})
    assert decide({"a": "supports"}, "a", {"g": np.bool_(False)}) == "not_testable"


# --- gates -------------------------------------------------------------------------------------------------------------
def test_beats_gate():
    assert beats([0.9, 0.92, 0.91], [0.1, 0.12, 0.11])[0]
    assert not beats([0.9, 0.92, 0.91], 0.982)[0]  # e.g. a trained model below raw pixels
    assert not beats([0.9], 0.1)[0]  # one seed cannot pass a test
    ok, detail = beats([0.2, 0.21, 0.19], 0.5, higher_is_better=False, name="error", reference_name="chance")
    assert ok and "error" in detail and "chance" in detail


def test_plateau_gate():
    assert plateau([0.5, 0.8, 0.9, 0.902, 0.903, 0.903], tol=0.005)[0]
    assert not plateau([0.5, 0.6, 0.7, 0.8, 0.9, 1.0], tol=0.005)[0]  # still rising
    assert plateau([0.5, 0.9, 0.95, 0.93, 0.92, 0.9], tol=0.0)[0]  # overfitting after a peak: the peak is reached
    assert not plateau([1.0, 0.6, 0.5, 0.45, 0.4, 0.35], tol=0.01, higher_is_better=False)[0]  # a loss still falling
    assert plateau([[0.5, 0.9, 0.9, 0.9], [0.4, 0.8, 0.8, 0.8]], tol=0.001, window=2)[0]  # per-seed curves, averaged
    assert not plateau([0.5, 0.9], tol=0.1, window=3)[0]  # too short to tell
    with pytest.raises(ValueError, match="equal length"):
        plateau([[0.1, 0.2, 0.3], [0.1, 0.2]], tol=0.1, window=1)
    with pytest.raises(ValueError, match="window"):
        plateau([0.1, 0.2, 0.3], tol=0.1, window=0)


def test_observed_gate_for_censored_measurements():
    assert observed([10, 20, 30])[0]
    ok, detail = observed([10, None, float("inf")], name="steps to target")
    assert not ok and "2 of 3 censored" in detail


# --- Claim and recompute ---------------------------------------------------------------------------------------------
def _claim():
    c = Claim("A beats B")
    c.better("acc", metric="accuracy", method="A", baseline="B", data="toy", primary=True)
    c.better("err", metric="error", method="A", baseline="B", data="toy", higher_is_better=False)
    c.equivalent("ece", metric="ECE", method="A", baseline="B", data="toy", margin=0.05)
    c.gate("B beats chance", "B beats chance")
    return c


def test_claim_lifecycle_and_record():
    c = _claim()
    assert "| acc **(primary)** |" in c._repr_markdown_()
    with pytest.raises(ValueError, match="never observed"):
        c.decide()
    c.observe("acc", [0.9, 0.92, 0.91, 0.93, 0.9], [0.8, 0.81, 0.79, 0.82, 0.8])
    with pytest.raises(ValueError, match="declared before"):
        c.better("late", metric="m", method="a", baseline="b", data="d")
    with pytest.raises(ValueError, match="never declared"):
        c.observe("nope", [1, 2], [1, 2])
    c.observe("err", [0.1, 0.08, 0.09, 0.07, 0.1], [0.2, 0.19, 0.21, 0.18, 0.2])
    c.observe("ece", [0.02, 0.03, 0.025, 0.02, 0.03], [0.025, 0.02, 0.03, 0.025, 0.02])
    with pytest.raises(ValueError, match="never checked"):
        c.decide()
    c.check("B beats chance", *beats([0.8, 0.81, 0.79, 0.82, 0.8], 0.1))
    assert c.decide() == "reproduced"
    rec = c.to_record()
    assert set(rec) >= {"claim", "status", "evidence", "primary", "comparisons", "gates"}
    assert set(rec["comparisons"]["acc"]) >= {"kind", "metric", "method", "baseline", "higher_is_better", "method_values",
                                              "baseline_values", "outcome", "p_value"}
    assert rec["comparisons"]["ece"]["margin"] == 0.05
    assert recompute(rec) == ({n: v["outcome"] for n, v in rec["comparisons"].items()}, "reproduced")
    # a tampered record no longer recomputes to its status
    rec["comparisons"]["acc"]["method_values"] = [0.7, 0.71, 0.69, 0.72, 0.7]
    assert recompute(rec)[1] != "reproduced"


def test_claim_declaration_errors():
    c = Claim("x").better("a", metric="m", method="p", baseline="q", data="d", primary=True)
    with pytest.raises(ValueError, match="twice"):
        c.better("a", metric="m", method="p", baseline="q", data="d")
    with pytest.raises(ValueError, match="primary"):
        c.better("b", metric="m", method="p", baseline="q", data="d", primary=True)
    with pytest.raises(ValueError, match="margin"):
        c.equivalent("e", metric="m", method="p", baseline="q", data="d", margin=0)
    with pytest.raises(ValueError, match="no primary"):
        Claim("y").better("a", metric="m", method="p", baseline="q", data="d").observe("a", [1, 2], [0, 1]).decide()
    with pytest.raises(ValueError, match="never declared"):
        c.check("g", True)


def test_failed_gate_makes_the_claim_not_testable():
    c = Claim("x").better("a", metric="m", method="p", baseline="q", data="d", primary=True).gate("g", "cond")
    c.observe("a", [2, 3, 4, 5], [0, 1, 2, 2.5]).check("g", *plateau([0.1, 0.2, 0.3, 0.4, 0.5], tol=0.01))
    assert c.decide() == "not_testable"
    assert "gates failed: g" in c.evidence()


def test_all_of_joins_gates():
    from lossbook.verdict import all_of, beats
    ok, detail = all_of([beats([0.9, 0.91, 0.92], [0.1, 0.1, 0.1], name="A"), beats([0.5, 0.5, 0.5], 0.9, name="B")])
    assert not ok and "FAILED B" in detail and "FAILED A" not in detail
    assert all_of([(True, "x"), (True, "y")]) == (True, "x; y")
    assert all_of(iter([(True, "x")])) == (True, "x")
    with pytest.raises(ValueError, match="no checks"):
        all_of([])


def test_peaked_gate():
    from lossbook.verdict import peaked
    assert peaked([3, 4, 5], 5)[0]  # 2 of 3 seeds peaked before the last epoch
    assert not peaked([5, 5, 4], 5)[0]  # a minority
    assert not peaked([5], 5)[0] and not peaked([2, 5], 5)[0]  # half is not a majority
    assert peaked(np.array([1, 2]), 5) == (True, "run: best validation epoch before the last (5) in 2 of 2 seed(s), epochs [1, 2]")
    with pytest.raises(ValueError, match="^best_epochs"):
        peaked([], 5)
