"""Drift detectors on sketches against scipy on the raw samples and reference
values on known distributions: no drift, mean shift, variance shift, category
shift; small and huge samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from tablewatch.alerts import detectors
from tablewatch.alerts.detectors import choose_test, dataset_drift, detect, sketch_of
from tablewatch.errors import ValidationError


@pytest.fixture
def rng():
    return np.random.default_rng(2026)


def evidently_shares(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's binning on raw samples (get_binned_data, numeric > 20 values)."""
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    return np.histogram(ref, edges)[0] / len(ref), np.histogram(cur, edges)[0] / len(cur)


def evidently_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    r, c = evidently_shares(ref, cur)
    for shares in (r, c):
        smallest = shares[shares > 0].min()
        shares[shares == 0] = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return float(np.sum((r - c) * np.log(r / c)))


SCENARIOS = {
    "no drift": (lambda rng, n: rng.normal(40, 10, n), lambda rng, n: rng.normal(40, 10, n)),
    "mean shift": (lambda rng, n: rng.normal(40, 10, n), lambda rng, n: rng.normal(45, 10, n)),
    "variance shift": (lambda rng, n: rng.normal(40, 10, n), lambda rng, n: rng.normal(40, 16, n)),
    "lognormal": (lambda rng, n: rng.lognormal(0, 1, n), lambda rng, n: rng.lognormal(0.3, 1, n)),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_numeric_scores_match_scipy_on_the_raw_samples(rng, scenario):
    draw_ref, draw_cur = SCENARIOS[scenario]
    ref, cur = draw_ref(rng, 20_000), draw_cur(rng, 20_000)
    r, c = sketch_of(ref), sketch_of(cur)
    # normed Wasserstein: the sketch places values within 1 %
    expected = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert detectors.wasserstein_normed(r, c) == pytest.approx(expected, abs=0.01 * ref.mean() / ref.std() + 1e-3)
    # K-S statistic: exact at every bin edge, so within the mass of one bin of the raw D
    assert detectors.ks_statistic(r, c) == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=0.01)
    # PSI and Jensen-Shannon on Evidently's bins
    assert detectors.psi(r, c) == pytest.approx(evidently_psi(ref, cur), rel=0.05, abs=0.005)
    assert detectors.jensen_shannon(r, c) == pytest.approx(distance.jensenshannon(*evidently_shares(ref, cur)), rel=0.05, abs=0.005)
    # the population standard deviation
    assert detectors.numeric_std(r) == pytest.approx(np.std(ref), rel=0.01)


@pytest.mark.parametrize("scenario, drifts", [("no drift", False), ("mean shift", True), ("variance shift", True)])
@pytest.mark.parametrize("method", ["ks", "wasserstein", "psi", "jensenshannon", "auto"])
def test_decisions_on_known_distributions(rng, scenario, drifts, method):
    draw_ref, draw_cur = SCENARIOS[scenario]
    result = detect(sketch_of(draw_ref(rng, 5000)), sketch_of(draw_cur(rng, 5000)), method, min_effect=0)
    if method == "jensenshannon" and scenario == "mean shift":
        drifts = result.score >= 0.1  # half a standard deviation is at JS's threshold: either verdict is right
    assert result.drifted is drifts, result


def test_ks_p_value_agrees_with_scipy(rng):
    for n, shift in ((300, 0.0), (300, 3.0), (3000, 1.0), (50_000, 0.2)):
        ref, cur = rng.normal(40, 10, n), rng.normal(40 + shift, 10, n)
        p = detectors.ks_p_value(sketch_of(ref), sketch_of(cur))
        expected = stats.ks_2samp(ref, cur, method="asymp").pvalue
        assert (p <= 0.05) == (expected <= 0.05)
        # D from sketches is a lower bound (exact at bin edges): p a little larger, as log p ~ -2 n D**2
        assert math.log10(max(p, 1e-300)) == pytest.approx(math.log10(max(expected, 1e-300)), abs=max(0.5, 0.25 * abs(math.log10(expected))))


def test_categorical_tests_against_scipy_and_reference_values(rng):
    ref = rng.choice(["fr", "de", "us"], 3000, p=[0.5, 0.3, 0.2])
    cur = rng.choice(["fr", "de", "us", "it"], 3000, p=[0.4, 0.3, 0.2, 0.1])  # a category shift and a new one
    r, c = sketch_of(ref), sketch_of(cur)
    table = np.array([[np.sum(ref == k) for k in ("de", "fr", "it", "us")], [np.sum(cur == k) for k in ("de", "fr", "it", "us")]])
    assert detectors.chi_square_p_value(r, c) == pytest.approx(stats.chi2_contingency(table, correction=False)[1])
    result = detect(r, c)
    assert result.method == "jensenshannon" and result.column_type == "categorical" and result.drifted
    # Cohen's w on known shares: 50/50 -> 60/40 is w = 0.2
    half = sketch_of(np.array(["a"] * 500 + ["b"] * 500))
    shifted = sketch_of(np.array(["a"] * 600 + ["b"] * 400))
    assert detectors.effect_size(half, shifted, "categorical") == pytest.approx(0.2)
    # PSI reference value: sum((r - c) ln(r / c)) over the shares
    assert detectors.psi(half, shifted, "categorical") == pytest.approx(0.1 * math.log(1.2) + 0.1 * math.log(1.25))
    same = detect(sketch_of(rng.choice(["x", "y"], 800)), sketch_of(rng.choice(["x", "y"], 800)))
    assert same.method == "chisquare" and not same.drifted and same.p_value > 0.05


def test_auto_chooses_as_evidently(rng):
    small, large = 1000, 1001
    assert choose_test(sketch_of(rng.normal(size=small)), sketch_of(rng.normal(size=50)))[0].name == "ks"
    assert choose_test(sketch_of(rng.normal(size=large)), sketch_of(rng.normal(size=50)))[0].name == "wasserstein"
    assert choose_test(sketch_of(rng.choice(["a", "b", "c"], small)), sketch_of(np.array(["a"])))[0].name == "chisquare"
    assert choose_test(sketch_of(rng.choice(["a", "b", "c"], large)), sketch_of(np.array(["a"])))[0].name == "jensenshannon"
    few_small = choose_test(sketch_of(rng.integers(0, 4, small).astype(float)), sketch_of(np.array([1.0])))
    assert few_small[0].name == "chisquare" and few_small[1] == "numeric"
    assert choose_test(sketch_of(rng.integers(0, 4, large).astype(float)), sketch_of(np.array([1.0])))[0].name == "jensenshannon"


def test_the_effect_gate_keeps_huge_samples_from_calling_negligible_changes_drift(rng):
    ref, cur = rng.normal(40, 10, 200_000), rng.normal(40.3, 10, 200_000)  # 0.03 standard deviations
    result = detect(sketch_of(ref), sketch_of(cur), "ks")
    assert stats.ks_2samp(ref, cur).pvalue < 1e-6  # scipy: "significant"
    assert result.statistic_drifted and result.effect < 0.05 and not result.drifted
    assert detect(sketch_of(ref), sketch_of(cur), "ks", min_effect=0).drifted


def test_small_samples(rng):
    # 30 values against 30: K-S at 0.05 calls about 5 % of same-distribution pairs drift, and every 2-sd shift
    false_alarms = sum(detect(sketch_of(rng.normal(40, 10, 30)), sketch_of(rng.normal(40, 10, 30))).drifted
                       for _ in range(100))
    assert false_alarms <= 12
    shifted = [detect(sketch_of(rng.normal(40, 10, 30)), sketch_of(rng.normal(60, 10, 30))) for _ in range(20)]
    assert all(r.method == "ks" and r.drifted and r.p_value < 1e-3 for r in shifted)


def test_thresholds_and_errors(rng):
    r, c = sketch_of(rng.normal(0, 1, 2000)), sketch_of(rng.normal(0.15, 1, 2000))
    assert detect(r, c, "wasserstein").threshold == 0.1
    assert not detect(r, c, "wasserstein", threshold=0.5).drifted
    assert detect(r, c, "psi").to_dict()["method"] == "psi"
    with pytest.raises(ValidationError, match="method: must be auto or one of"):
        detect(r, c, "magic")
    with pytest.raises(ValidationError, match="does not apply to categorical"):
        detect(sketch_of(np.array(["a", "b"])), sketch_of(np.array(["a"])), "ks")
    with pytest.raises(ValidationError, match="both windows are empty"):
        detect(sketch_of(np.array([])), sketch_of(np.array([])))


def test_dataset_drift_share():
    results = [detect(sketch_of(np.arange(100.0)), sketch_of(np.arange(100.0) + shift), "wasserstein", min_effect=0)
               for shift in (0, 0, 50, 60)]
    found = dataset_drift(results, 0.5)
    assert (found.drifted_features, found.features, found.share, found.drifted) == (2, 4, 0.5, True)
    assert not dataset_drift(results, 0.75).drifted
    assert not dataset_drift([], 0.5).drifted
