"""Drift detectors: pure functions over stored distribution summaries.

Each test compares a reference and a current :class:`DistributionSketch`
(no raw data: numbers are log-bucketed histograms accurate to 1 %, categories
are counts) and returns a :class:`DriftResult`. The tests and their defaults
are Evidently's (``evidently.legacy.calculations.stattests``):

=============  ==============  ==========================  =========  ====================
method         column types    score                       threshold  drift when
=============  ==============  ==========================  =========  ====================
ks             numeric         two-sample K-S p-value      0.05       p <= threshold
chisquare      categorical     chi-square p-value          0.05       p < threshold
psi            both            population stability index  0.1        score >= threshold
wasserstein    numeric         W1 / std(reference)         0.1        score >= threshold
jensenshannon  both            Jensen-Shannon distance     0.1        score >= threshold
=============  ==============  ==========================  =========  ====================

``auto`` chooses as Evidently's ``get_stattest`` does: with at most 1,000
reference values, K-S for numbers (chi-square when they take at most 5
values) and chi-square for categories; beyond, normed Wasserstein for numbers
(Jensen-Shannon when they take at most 5 values) and Jensen-Shannon for
categories. (Evidently uses a two-proportion z-test for two categories; the
chi-square test of the 2 x 2 table is the same test: chi2 = z**2, same p-value.)

Where these differ from Evidently, on purpose:

- chi-square is the two-sample test of the 2 x K contingency table (scipy's
  ``chi2_contingency``), not a goodness-of-fit of the current counts to the
  reference frequencies taken as exact: with a small reference the latter
  calls drift on noise, and a category the reference never saw gives p = 0;
- the **effect-size gate**: a p-value test on a huge sample calls a negligible
  change significant. A feature drifts only when its test says so *and* its
  effect size reaches ``min_effect`` (default 0.1, a "small" effect in Cohen's
  conventions): the normed Wasserstein distance for numbers, Cohen's w
  (``sqrt(sum((p_cur - p_ref)**2 / p_ref))``) for categories.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from tablewatch.errors import ValidationError
from tablewatch.extras import require
from tablewatch.store.sketches import DistributionSketch

#: With more reference values than this, ``auto`` uses distances, not p-values (Evidently's rule).
SMALL_SAMPLE = 1000
#: Numbers taking at most this many distinct values are compared as categories.
FEW_VALUES = 5
DEFAULT_MIN_EFFECT = 0.1
DEFAULT_DRIFT_SHARE = 0.5
#: Evidently's floor for empty bins in PSI (a share of 0 would make log(0)).
EMPTY_BIN_SHARE = 1e-4



def _scipy(module: str) -> ModuleType:
    """``scipy.<module>``; without the `alerts` extra, an error that names it."""
    require("scipy", "alerts", "drift detection")
    return require(f"scipy.{module}", "alerts", "drift detection")


@dataclass(frozen=True)
class DriftTest:
    """A statistical test: its ``name``, the ``column_types`` it takes, its
    ``default_threshold``, and whether the score is a p-value (drift when
    below the threshold) or a distance (drift when at or above it)."""

    name: str
    title: str
    column_types: tuple[str, ...]
    default_threshold: float
    p_value: bool
    score: Callable[[DistributionSketch, DistributionSketch, str], float]

    def drifted(self, score: float, threshold: float) -> bool:
        if self.p_value:
            return score <= threshold if self.name == "ks" else score < threshold
        return score >= threshold


@dataclass(frozen=True)
class DriftResult:
    """The outcome of one test on one feature. ``score`` is the p-value of
    p-value tests (``p_value`` repeats it) and the distance of the others;
    ``statistic_drifted`` is the test's own verdict, ``drifted`` also requires
    ``effect >= min_effect``."""

    method: str
    column_type: str
    score: float
    threshold: float
    p_value: float | None
    statistic_drifted: bool
    effect: float
    min_effect: float
    drifted: bool
    reference_count: int
    current_count: int

    def to_dict(self) -> dict[str, object]:
        """JSON-able (NaN and inf become None)."""
        return {
            "method": self.method, "column_type": self.column_type, "score": _json_number(self.score),
            "threshold": self.threshold, "p_value": _json_number(self.p_value), "drifted": self.drifted,
            "statistic_drifted": self.statistic_drifted, "effect": _json_number(self.effect),
            "min_effect": self.min_effect, "reference_count": self.reference_count, "current_count": self.current_count,
        }


@dataclass(frozen=True)
class DatasetDrift:
    """Evidently's dataset drift: the share of drifted features against ``drift_share``."""

    drifted_features: int
    features: int
    share: float
    drift_share: float
    drifted: bool


# -- distributions as arrays ------------------------------------------------------------


def column_type(reference: DistributionSketch, current: DistributionSketch) -> str:
    """``"numeric"`` or ``"categorical"``: what holds most of both windows' values
    (``"empty"`` when neither has any)."""
    numeric = reference.numeric.count + current.numeric.count
    categorical = reference.categorical.count + current.categorical.count
    if not numeric and not categorical:
        return "empty"
    return "numeric" if numeric >= categorical else "categorical"


def distinct_values(reference: DistributionSketch, current: DistributionSketch, kind: str) -> int:
    """How many distinct values both windows take (numbers: distinct bins)."""
    if kind == "categorical":
        return len(set(reference.categorical.counts) | set(current.categorical.counts))
    values = np.union1d(reference.numeric.bins()[0], current.numeric.bins()[0])
    return len(values)


def category_counts(reference: DistributionSketch, current: DistributionSketch, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each value in both windows, aligned (numbers: per bin)."""
    if kind == "categorical":
        keys = sorted(set(reference.categorical.counts) | set(current.categorical.counts))
        return (np.array([reference.categorical.counts.get(k, 0) for k in keys], dtype=np.float64),
                np.array([current.categorical.counts.get(k, 0) for k in keys], dtype=np.float64))
    ref_values, ref_counts = reference.numeric.bins()
    cur_values, cur_counts = current.numeric.bins()
    support = np.union1d(ref_values, cur_values)
    ref = np.zeros(len(support))
    cur = np.zeros(len(support))
    ref[np.searchsorted(support, ref_values)] = ref_counts
    cur[np.searchsorted(support, cur_values)] = cur_counts
    return ref, cur


def binned_shares(reference: DistributionSketch, current: DistributionSketch, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Each window's share per bin, binned as Evidently does: numbers taking
    more than 20 values into Sturges' equal-width bins over both windows'
    range, else per value."""
    if kind == "numeric" and len(reference.numeric.bins()[0]) > 20:
        ref_n, cur_n = reference.numeric.count, current.numeric.count
        low = min(reference.numeric.min, current.numeric.min)
        high = max(reference.numeric.max, current.numeric.max)
        bins = int(math.ceil(math.log2(ref_n + cur_n) + 1))  # numpy's "sturges"
        if high <= low:
            high = low + 1.0
        edges = np.linspace(low, high, bins + 1)
        return reference.numeric.histogram(edges) / ref_n, current.numeric.histogram(edges) / cur_n
    ref, cur = category_counts(reference, current, kind)
    return ref / ref.sum(), cur / cur.sum()


def _fill_empty(shares: np.ndarray) -> np.ndarray:
    """Evidently's floor for empty bins."""
    shares = shares.copy()
    smallest = shares[shares > 0].min()
    shares[shares == 0] = smallest / 1e6 if smallest <= EMPTY_BIN_SHARE else EMPTY_BIN_SHARE
    return shares


def _cdfs(reference: DistributionSketch, current: DistributionSketch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(support, reference CDF, current CDF) over the union of both windows' bins."""
    ref_values, ref_counts = reference.numeric.bins()
    cur_values, cur_counts = current.numeric.bins()
    support = np.union1d(ref_values, cur_values)
    ref_cdf = np.r_[0, np.cumsum(ref_counts)][np.searchsorted(ref_values, support, side="right")] / reference.numeric.count
    cur_cdf = np.r_[0, np.cumsum(cur_counts)][np.searchsorted(cur_values, support, side="right")] / current.numeric.count
    return support, ref_cdf, cur_cdf


def numeric_std(sketch: DistributionSketch) -> float:
    """Population standard deviation (numpy's ``std``) from the bins and the exact mean."""
    values, counts = sketch.numeric.bins()
    if not len(values):
        return math.nan
    mean = sketch.numeric.mean
    return float(math.sqrt(max(0.0, float(np.dot(counts, (values - mean) ** 2)) / sketch.numeric.count)))


# -- the tests -----------------------------------------------------------------------------


def ks_p_value(reference: DistributionSketch, current: DistributionSketch, kind: str = "numeric") -> float:
    """Two-sample Kolmogorov-Smirnov p-value (two-sided), as scipy's
    ``ks_2samp(method="asymp")``: ``kstwo.sf(D, round(n*m/(n+m)))``, and the
    limiting Kolmogorov distribution beyond 10,000 (where they agree to
    about 1 %; ``kstwo`` takes up to a second there). Both windows share
    the sketch's bins, so D is the exact gap between the empirical CDFs at
    every bin edge: a lower bound of the raw samples' D, values being placed
    within 1 %."""
    kolmogorov = _scipy("special").kolmogorov
    kstwo = _scipy("stats").kstwo

    d = ks_statistic(reference, current)
    n, m = reference.numeric.count, current.numeric.count
    en = n * m / (n + m)
    p = kstwo.sf(d, max(1, round(en))) if en <= 10_000 else kolmogorov(math.sqrt(en) * d)
    return float(np.clip(p, 0.0, 1.0))


def ks_statistic(reference: DistributionSketch, current: DistributionSketch) -> float:
    _, ref_cdf, cur_cdf = _cdfs(reference, current)
    return float(np.max(np.abs(ref_cdf - cur_cdf))) if len(ref_cdf) else 0.0


def wasserstein_normed(reference: DistributionSketch, current: DistributionSketch, kind: str = "numeric") -> float:
    """First Wasserstein distance divided by the reference's standard deviation
    (at least 0.001, as Evidently): the integral of ``|F_ref - F_cur|``."""
    support, ref_cdf, cur_cdf = _cdfs(reference, current)
    if len(support) < 2:
        return 0.0
    distance = float(np.sum(np.abs(ref_cdf - cur_cdf)[:-1] * np.diff(support)))
    return distance / max(numeric_std(reference), 0.001)


def psi(reference: DistributionSketch, current: DistributionSketch, kind: str = "numeric") -> float:
    """Population stability index ``sum((r - c) * ln(r / c))`` over Evidently's bins."""
    ref, cur = binned_shares(reference, current, kind)
    ref, cur = _fill_empty(ref), _fill_empty(cur)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def jensen_shannon(reference: DistributionSketch, current: DistributionSketch, kind: str = "numeric") -> float:
    """Jensen-Shannon distance (natural log, as scipy's ``jensenshannon``) over Evidently's bins."""
    distance = _scipy("spatial.distance")

    ref, cur = binned_shares(reference, current, kind)
    return float(distance.jensenshannon(ref, cur))


def chi_square_p_value(reference: DistributionSketch, current: DistributionSketch, kind: str = "categorical") -> float:
    """p-value of the chi-square test of the 2 x K table of both windows' counts
    per category (numbers: per distinct value). Categories empty in both
    windows are dropped; one category in all gives p = 1."""
    chi2_contingency = _scipy("stats").chi2_contingency

    ref, cur = category_counts(reference, current, kind)
    keep = (ref + cur) > 0
    table = np.vstack([ref[keep], cur[keep]])
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table, correction=False)[1])


TESTS: dict[str, DriftTest] = {
    "ks": DriftTest("ks", "K-S p-value", ("numeric",), 0.05, True, ks_p_value),
    "chisquare": DriftTest("chisquare", "chi-square p-value", ("categorical", "numeric"), 0.05, True, chi_square_p_value),
    "psi": DriftTest("psi", "PSI", ("numeric", "categorical"), 0.1, False, psi),
    "wasserstein": DriftTest("wasserstein", "Wasserstein distance (normed)", ("numeric",), 0.1, False, wasserstein_normed),
    "jensenshannon": DriftTest("jensenshannon", "Jensen-Shannon distance", ("numeric", "categorical"), 0.1, False, jensen_shannon),
}


def choose_test(reference: DistributionSketch, current: DistributionSketch) -> tuple[DriftTest, str]:
    """The test ``auto`` picks, and the column type it compares (numbers
    taking few values are compared as categories by chi-square)."""
    kind = column_type(reference, current)
    reference_count = reference.numeric.count if kind == "numeric" else reference.categorical.count
    few = kind == "numeric" and distinct_values(reference, current, kind) <= FEW_VALUES
    if reference_count <= SMALL_SAMPLE:
        if kind == "numeric" and not few:
            return TESTS["ks"], kind
        return TESTS["chisquare"], kind
    if kind == "numeric" and not few:
        return TESTS["wasserstein"], kind
    return TESTS["jensenshannon"], kind


def effect_size(reference: DistributionSketch, current: DistributionSketch, kind: str) -> float:
    """Normed Wasserstein distance for numbers taking more than ``FEW_VALUES``
    values, Cohen's w for categories (and numbers taking few values)."""
    if kind == "numeric" and distinct_values(reference, current, kind) > FEW_VALUES:
        return wasserstein_normed(reference, current)
    ref, cur = category_counts(reference, current, kind)
    p_ref, p_cur = ref / ref.sum(), cur / cur.sum()
    # A category the reference never had counts as if it had half a value.
    p_ref = np.where(p_ref > 0, p_ref, 0.5 / ref.sum())
    return float(math.sqrt(float(np.sum((p_cur - p_ref) ** 2 / p_ref))))


def detect(
    reference: DistributionSketch,
    current: DistributionSketch,
    method: str = "auto",
    threshold: float | None = None,
    min_effect: float = DEFAULT_MIN_EFFECT,
) -> DriftResult:
    """Compare two windows of one feature. ``method``: a key of :data:`TESTS`
    or ``"auto"``; ``threshold``: the test's (default: Evidently's);
    ``min_effect``: the effect-size gate (0: off). Both windows need values."""
    if method != "auto" and method not in TESTS:
        raise ValidationError("method", method, f"must be auto or one of {', '.join(TESTS)}")
    if threshold is not None and not (isinstance(threshold, (int, float)) and threshold > 0):
        raise ValidationError("threshold", threshold, "must be a number > 0")
    kind = column_type(reference, current)
    if kind == "empty":
        raise ValidationError("reference", reference.count, "both windows are empty")
    if method == "auto":
        test, kind = choose_test(reference, current)
    else:
        test = TESTS[method]
        if kind not in test.column_types:
            raise ValidationError("method", method, f"does not apply to {kind} values (it takes {', '.join(test.column_types)})")
    counts = [(s.numeric.count if kind == "numeric" else s.categorical.count) for s in (reference, current)]
    if not all(counts):
        raise ValidationError("reference" if not counts[0] else "current", 0, f"has no {kind} values")
    bound = float(threshold if threshold is not None else test.default_threshold)
    score = test.score(reference, current, kind)
    statistic_drifted = test.drifted(score, bound)
    effect = effect_size(reference, current, kind)
    return DriftResult(
        method=test.name, column_type=kind, score=score, threshold=bound, p_value=score if test.p_value else None,
        statistic_drifted=statistic_drifted, effect=effect, min_effect=float(min_effect),
        drifted=bool(statistic_drifted and effect >= min_effect), reference_count=counts[0], current_count=counts[1],
    )


def dataset_drift(results: Iterable[DriftResult], drift_share: float = DEFAULT_DRIFT_SHARE) -> DatasetDrift:
    """Evidently's dataset drift: drifted when at least ``drift_share`` of the features drift."""
    found = list(results)
    drifted = sum(r.drifted for r in found)
    share = drifted / len(found) if found else 0.0
    return DatasetDrift(drifted, len(found), share, drift_share, bool(found) and share >= drift_share)


def sketch_of(values: Sequence[object] | np.ndarray) -> DistributionSketch:
    """A sketch of raw values (numbers, or strings/booleans), for tests and benchmarks."""
    sketch = DistributionSketch.create()
    array = np.asarray(values)
    if array.dtype.kind in "iuf":
        sketch.numeric.add_many(array)
        sketch.missing += int(np.count_nonzero(~np.isfinite(array.astype(np.float64))))
    else:
        names, counts = np.unique(array.astype(str), return_counts=True)
        for name, n in zip(names.tolist(), counts.tolist()):
            sketch.categorical.add(name, n)
        sketch.categorical.fold()
    return sketch


def _json_number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


__all__ = [
    "DatasetDrift",
    "DriftResult",
    "DriftTest",
    "TESTS",
    "choose_test",
    "dataset_drift",
    "detect",
    "effect_size",
    "sketch_of",
]
