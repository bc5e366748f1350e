"""Distribution sketches: the sketches themselves, their storage in
``tw_sketches``, the PredictionSketches accumulator, and Collector.log_prediction."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest

from tablewatch.collectors.predictions import PredictionSketches
from tablewatch.errors import ValidationError, ValidationTypeError
from tablewatch.store import open_store
from tablewatch.store.sketches import (
    MAX_BIN_SPAN,
    OTHER,
    PREDICTION,
    CategoricalSketch,
    DistributionSketch,
    NumericSketch,
    SketchRecord,
)

T0 = datetime(2026, 11, 2, tzinfo=timezone.utc).timestamp()  # a day boundary
HOUR_US = 3600 * 1_000_000
T0_US = int(T0 * 1_000_000)


@pytest.fixture
def store(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/sketches.db") as store:
        yield store


def _sketch(values, alpha=0.01) -> NumericSketch:
    sketch = NumericSketch(alpha)
    sketch.add_many(values)
    return sketch


# -- numeric --------------------------------------------------------------------------------


DISTRIBUTIONS = {
    "lognormal": lambda rng: rng.lognormal(0, 2, 20_000),
    "normal with negatives": lambda rng: rng.normal(5, 10, 20_000),
    "uniform probabilities": lambda rng: rng.uniform(0, 1, 20_000),
    "with exact zeros": lambda rng: np.r_[np.zeros(3000), rng.exponential(1e-3, 10_000), -rng.pareto(1.5, 5000)],
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_merging_two_halves_equals_sketching_the_whole(name):
    values = DISTRIBUTIONS[name](np.random.default_rng(1))
    whole = _sketch(values)
    for split in (1, 777, len(values) // 2):
        halves = _sketch(values[:split]).merge(_sketch(values[split:]))
        assert halves.positive == whole.positive and halves.negative == whole.negative
        assert (halves.count, halves.zeros, halves.min, halves.max) == (whole.count, whole.zeros, whole.min, whole.max)
        assert halves.sum == pytest.approx(whole.sum, rel=1e-12)
        assert halves == whole
    one_by_one = NumericSketch()
    for value in values[:2000]:
        one_by_one.add(value)
    assert one_by_one == _sketch(values[:2000])


def test_merging_stays_exact_when_bins_are_collapsed():
    rng = np.random.default_rng(2)
    # 1e-30 .. 1e30 spans far more than MAX_BIN_SPAN bins at alpha = 0.01.
    values = 10.0 ** rng.uniform(-30, 30, 50_000)
    whole = _sketch(values)
    assert max(whole.positive) - min(whole.positive) == MAX_BIN_SPAN - 1
    parts = [_sketch(part) for part in np.array_split(rng.permutation(values), 7)]
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    assert merged == whole
    # The high quantiles (away from the collapsed smallest bins) keep their accuracy.
    assert whole.quantile(0.99) == pytest.approx(np.quantile(values, 0.99, method="lower"), rel=0.0101)


@pytest.mark.parametrize("alpha", [0.01, 0.05])
@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_quantiles_are_within_the_stated_relative_accuracy(name, alpha):
    values = DISTRIBUTIONS[name](np.random.default_rng(3))
    sketch = _sketch(values, alpha)
    qs = np.linspace(0, 1, 201)
    exact = np.quantile(values, qs, method="lower")
    estimated = sketch.quantiles(qs)
    error = np.abs(estimated - exact)
    assert (error <= alpha * np.abs(exact) * (1 + 1e-9) + 1e-300).all(), float(np.max(error / np.abs(exact)))
    assert sketch.quantile(0) == values.min() and sketch.quantile(1) == values.max()


def test_cdf_histogram_and_bins_describe_the_distribution():
    values = np.random.default_rng(4).normal(0, 1, 50_000)
    sketch = _sketch(values)
    grid = np.linspace(-3, 3, 61)
    exact_cdf = np.searchsorted(np.sort(values), grid, side="right") / len(values)
    assert np.max(np.abs(sketch.cdf(grid) - exact_cdf)) < 0.01  # KS-grade
    assert sketch.cdf(-100.0) == 0.0 and sketch.cdf(100.0) == 1.0
    edges = np.linspace(-6, 6, 13)
    counts = sketch.histogram(edges)
    exact_counts = np.histogram(values, edges)[0]
    assert counts.sum() == exact_counts.sum()
    assert np.max(np.abs(counts - exact_counts)) / len(values) < 0.01  # PSI-grade
    points, weights = sketch.bins()
    assert (np.diff(points) > 0).all() and weights.sum() == len(values)
    assert sketch.mean == pytest.approx(values.mean())
    with pytest.raises(ValidationError, match="edges"):
        sketch.histogram([1.0])


def test_numeric_sketch_refuses_bad_input():
    with pytest.raises(ValidationError, match="alpha"):
        NumericSketch(1.5)
    with pytest.raises(ValidationError, match="finite"):
        NumericSketch().add(math.nan)
    with pytest.raises(ValidationError, match="accuracy"):
        NumericSketch(0.01).merge(NumericSketch(0.02))
    assert NumericSketch().add_many([1.0, math.nan, math.inf]) == 2
    assert math.isnan(NumericSketch().quantile(0.5))
    with pytest.raises(ValidationError, match="quantiles"):
        NumericSketch().quantiles([1.5])


# -- categorical and mixed ---------------------------------------------------------------


def test_categorical_merge_is_exact_under_the_cap():
    rng = np.random.default_rng(5)
    values = rng.choice([f"c{i}" for i in range(40)], 10_000).tolist() + [True, False, True]
    whole = CategoricalSketch()
    for v in values:
        whole.add(v)
    left, right = CategoricalSketch(), CategoricalSketch()
    for v in values[:4000]:
        left.add(v)
    for v in values[4000:]:
        right.add(v)
    assert left.merge(right) == whole
    assert whole.counts["true"] == 2 and whole.count == len(values)
    assert sum(whole.frequencies().values()) == pytest.approx(1.0)


def test_categorical_overflow_folds_the_rare_categories_into_other():
    sketch = CategoricalSketch(max_categories=10)
    heavy = {f"heavy{i}": 1000 - i for i in range(5)}
    for name, n in heavy.items():
        sketch.add(name, n)
    for i in range(5000):  # a high-cardinality tail (user ids)
        sketch.add(f"user{i}")
    sketch.fold()
    assert len(sketch.counts) == 10 and OTHER in sketch.counts
    assert sketch.count == sum(heavy.values()) + 5000  # the total stays exact
    for name, n in heavy.items():
        assert sketch.counts[name] == n  # heavy hitters kept exactly
    # Merging two overflowing sketches keeps the cap and the total; no category is over-counted.
    other = CategoricalSketch(max_categories=10)
    for i in range(3000):
        other.add(f"visitor{i}")
    other.add("heavy0", 50)
    merged = sketch.copy().merge(other)
    assert len(merged.counts) <= 10 and merged.count == sketch.count + other.count
    assert merged.counts["heavy0"] <= 1000 + 50


def test_distribution_sketch_keeps_numbers_categories_and_missing():
    sketch = DistributionSketch.create()
    for value in [1.0, 2, np.float32(3.5), "a", "b", "a", True, None, math.nan, math.inf]:
        sketch.add(value)
    assert sketch.numeric.count == 3 and sketch.categorical.counts == {"a": 2, "b": 1, "true": 1}
    assert sketch.missing == 3 and sketch.count == 10 and sketch.kind == "categorical"
    with pytest.raises(ValidationTypeError, match="value"):
        sketch.add([1, 2])
    twin = DistributionSketch.from_dict(sketch.to_dict())
    assert twin == sketch
    with pytest.raises(ValidationError, match="numeric.count"):
        DistributionSketch.from_dict({"numeric": {"count": 5, "sum": 1, "min": 0, "max": 1, "zeros": 1}})
    with pytest.raises(ValidationError, match="sketch.missing"):
        DistributionSketch.from_dict({"missing": -1})


# -- in the store ----------------------------------------------------------------------------


def _record(model, feature, values, *, start_us=T0_US, writer="a" * 16, seq=0, window_s=3600):
    sketch = DistributionSketch.create()
    sketch.numeric.add_many(values)
    return SketchRecord(model, feature, start_us, window_s, writer, seq, sketch)


def test_partial_sketches_of_several_writers_merge_on_read(store):
    values = np.random.default_rng(6).lognormal(0, 1, 9000)
    records = [_record("ranker", "age", part, writer=f"{i:016x}") for i, part in enumerate(np.array_split(values, 3))]
    assert store.write_sketches(records) == 3
    assert store.write_sketches(records) == 3  # a replay changes nothing
    merged = store.read_sketch("ranker", "age")
    assert merged.numeric == _sketch(values)
    assert store.list_sketched_features() == [("ranker", "age")]
    assert store.list_sketched_features("other-model") == []


def test_a_newer_emission_of_a_writer_supersedes_an_older_one_even_replayed_late(store):
    first = _record("m", "f", [1.0, 2.0], seq=0)
    second = _record("m", "f", [1.0, 2.0, 3.0, 4.0], seq=1)  # cumulative
    store.write_sketches([second])
    store.write_sketches([first.to_dict()])  # replayed from a spool after the newer one
    assert store.read_sketch("m", "f").numeric.count == 4


def test_windows_are_selected_by_their_start_half_open(store):
    store.write_sketches([
        _record("m", "f", [float(h)] * (h + 1), start_us=T0_US + h * HOUR_US, writer=f"{h:016x}") for h in range(30)
    ])  # 30 hours: two days of the day index
    window = store.read_sketch("m", "f", start=T0 + 2 * 3600, end=T0 + 5 * 3600)
    assert window.numeric.count == 3 + 4 + 5 and window.numeric.min == 2 and window.numeric.max == 4
    assert store.read_sketch("m", "f").numeric.count == sum(range(1, 31))
    assert store.read_sketch("m", "f", start=T0 + 100 * 3600).count == 0
    by_window = store.read_sketch_windows("m", "f", start=T0 + 24 * 3600)
    assert [w.hour for w, _ in by_window] == list(range(6)) and by_window[0][1].numeric.count == 25
    assert all(w.tzinfo is not None for w, _ in by_window)
    assert store.sketch_days("m", "f") == [T0 // 86400, T0 // 86400 + 1]
    assert store.sketch_days("m", "other") == []


def test_windows_of_several_writers_are_merged_one_per_window(store):
    store.write_sketches([
        _record("m", "f", [1.0, 2.0], start_us=T0_US, writer=f"{1:016x}"),
        _record("m", "f", [3.0], start_us=T0_US, writer=f"{2:016x}"),
        _record("m", "f", [5.0], start_us=T0_US + HOUR_US, writer=f"{1:016x}"),
    ])
    windows = store.read_sketch_windows("m", "f", start=T0, end=T0 + 2 * 3600)
    assert [(int(w.timestamp()), s.numeric.count) for w, s in windows] == [(T0, 3), (T0 + 3600, 1)]
    assert store.read_sketch_windows("m", "f", start=T0 + 3600, end=T0 + 3600) == []


def test_bad_records_name_the_field_and_nothing_is_written(store):
    good = _record("m", "f", [1.0])
    with pytest.raises(ValidationError, match=r"records\[1\]\.feature"):
        store.write_sketches([good, _record("m", "", [1.0])])
    with pytest.raises(ValidationError, match=r"records\[0\]\.seq"):
        store.write_sketches([_record("m", "f", [1.0], seq=3600 * 1000)])
    with pytest.raises(ValidationError, match=r"records\[0\]\.writer"):
        store.write_sketches([_record("m", "f", [1.0], writer="xyz")])
    with pytest.raises(ValidationError, match=r"records\[0\]\.start_us"):
        store.write_sketches([{**good.to_dict(), "start_us": -5}])
    with pytest.raises(ValidationError, match=r"records\[0\]\.window_s"):
        store.write_sketches([{**good.to_dict(), "window_s": None}])
    assert store.list_sketched_features() == []


def test_sketches_have_their_own_retention(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/r.db", retention_s={"sketches": 86400 * 400, "points": 86400}) as store:
        families = {t["name"]: t["families"] for t in store.info()["tables"]}
        assert families["tw_sketches"]["s"]["max_age_s"] == 86400 * 400
        assert families["tw_sketches"]["days"]["max_age_s"] == 86400 * 400


# -- the accumulator ---------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_accumulator_emits_cumulative_sketches_then_forgets_closed_windows(store):
    clock = Clock(T0 + 10)
    acc = PredictionSketches(window_s=3600, emit_every_s=0, clock=clock)
    rng = np.random.default_rng(7)
    ages, scores = rng.normal(40, 10, 5000), rng.uniform(0, 1, 5000)
    countries = rng.choice(["fr", "de", "us"], 5000)
    for i in range(2500):
        acc.add("ranker", {"age": ages[i], "country": str(countries[i])}, float(scores[i]))
    first = acc.drain()
    assert sorted(r.feature for r in first) == [PREDICTION, "age", "country"]
    for i in range(2500, 5000):
        acc.add("ranker", {"age": ages[i], "country": str(countries[i])}, float(scores[i]))
    acc.add("ranker", {"age": None, "country": "fr"}, None)
    second = acc.drain()
    assert {r.writer for r in second} == {r.writer for r in first} and {r.seq for r in second} == {1}
    assert acc.drain() == []  # nothing changed
    store.write_sketches(first)
    store.write_sketches(second)
    age = store.read_sketch("ranker", "age")
    assert age.numeric == _sketch(ages) and age.missing == 1
    assert store.read_sketch("ranker", "country").categorical.counts["fr"] == int((countries == "fr").sum()) + 1
    assert store.read_sketch("ranker", PREDICTION).numeric == _sketch(scores)
    clock.now = T0 + 3600 + 1  # the window closed: emitted entries are forgotten
    assert acc.drain() == [] and len(acc) == 0
    acc.add("ranker", {"age": 50}, 0.5, ts_us=T0_US + 5)  # late value: a new entry, a new cell
    late = acc.drain()
    assert {r.writer for r in late}.isdisjoint({r.writer for r in first})
    store.write_sketches(late)
    assert store.read_sketch("ranker", "age").numeric.count == 5001


def test_accumulator_emits_open_windows_at_most_every_emit_every_s():
    acc = PredictionSketches(emit_every_s=3600, clock=Clock(T0 + 10))
    acc.add("m", {"x": 1}, 1)
    assert acc.drain() == []
    forced = acc.drain(force=True)
    assert len(forced) == 2 and len(acc) == 0


def test_accumulator_checks_everything_before_counting_anything():
    acc = PredictionSketches(clock=Clock(T0))
    with pytest.raises(ValidationTypeError, match=r"features\['emb'\]"):
        acc.add("m", {"ok": 1.0, "emb": [0.1, 0.2]}, 1)
    with pytest.raises(ValidationError, match="model"):
        acc.add("", {"ok": 1.0}, 1)
    with pytest.raises(ValidationTypeError, match="features"):
        acc.add("m", [1, 2], 1)
    with pytest.raises(ValidationError, match="ts_us"):
        acc.add("m", {}, 1, ts_us=-1)
    assert len(acc) == 0
    acc.add("m", None, {"cat": 0.7, "dog": 0.3})
    assert sorted(r.feature for r in acc.drain(force=True)) == [f"{PREDICTION}.cat", f"{PREDICTION}.dog"]


def test_collector_log_prediction_reaches_the_store(store):
    from tablewatch.collectors import Collector

    values = np.random.default_rng(8).gamma(2.0, 2.0, 3000)
    with Collector(store, flush_interval=60) as collector:
        for i, value in enumerate(values):
            collector.log_prediction("churn", {"tenure": value, "plan": "pro" if i % 3 else "free"}, i % 2 == 0,
                                     ts=T0 + i)
    assert store.read_sketch("churn", "tenure").numeric == _sketch(values)
    assert store.read_sketch("churn", PREDICTION).categorical.counts == {"true": 1500, "false": 1500}
    assert ("churn", "plan") in store.list_sketched_features("churn")
