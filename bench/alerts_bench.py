"""Alert rules: one evaluation cycle, drift from stored summaries, and drift
decisions side by side with Evidently's.

Rows:

- one evaluation cycle of 500 rules (every kind) over 30 days of hourly data
  in the embedded store: 220 series, 21,600 task runs, 300 training runs and
  23,040 hourly sketches of 4 models x 8 features; the time of the whole cycle
  (target < 5 s) and per rule kind. The cycle reads through ``CycleReads`` (one
  store read per series, task, model window... per cycle), as a runner does;
- drift of a 1M-value window against a 1M-value reference from the stored
  summaries (24 hourly sketches each): reading both and testing, numbers and
  categories (target < 1 s), beside Evidently's ``DataDriftPreset`` and scipy's
  ``ks_2samp`` on the raw values;
- the drift decisions of ``detect(method="auto")`` on sketches and of
  Evidently's ``DataDriftPreset`` on the raw samples, per scenario (no drift,
  mean shift, variance shift, category shift, negligible change; small and huge
  samples), and how many agree.

Evidently runs in its own virtualenv (``.venv-evidently``, made by ``make
bench``; ``$TABLEWATCH_EVIDENTLY_PYTHON`` names another Python): Evidently 0.7
does not import with pandas 3, which tablewatch's venv has.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from bench.common import Result

SECTION = "alerts"
CYCLE_TARGET_S = 5.0
CYCLES = 3
DRIFT_TARGET_S = 1.0
H = 3600
DAY = 86400
HOURS = 30 * 24
SERVICES, ROUTES = 10, 5
DATASETS = 20
PIPELINES, TASKS = 10, 3
MODELS, NUMERIC_FEATURES, CATEGORICAL_FEATURES = 4, 6, 2
TRAINED = 10
ROOT = Path(__file__).resolve().parents[1]


# -- the store: 30 days of hourly data ----------------------------------------------------


def fill(store, now: float, rng: np.random.Generator) -> dict[str, float]:
    """Write the cycle's data; seconds per kind of record."""
    from tablewatch.alerts.detectors import sketch_of
    from tablewatch.store import TaskRun, TrainingRun
    from tablewatch.store.sketches import SketchRecord

    took = {}
    hours = np.arange(HOURS, 0, -1)
    ts = now - hours * H
    start = time.perf_counter()
    batches = []
    for s in range(SERVICES):
        for r in range(ROUTES):
            slow = 1.0 + (s == 0 and r == 0) * 2.0 * (hours <= 24)  # one route got slower today
            for status in ("2xx", "5xx"):
                batches.append({"metric": "serve.latency_s", "tags": {"service": f"s{s}", "route": f"/r{r}", "status": status},
                                "ts": ts, "values": rng.gamma(2, 0.05, HOURS) * slow})
    for d in range(DATASETS):
        batches.append({"metric": "data.rows", "tags": {"dataset": f"d{d}"}, "ts": ts,
                        "values": rng.poisson(1000, HOURS).astype(float)})
    store.write_points_many(batches)
    took["points"] = time.perf_counter() - start

    start = time.perf_counter()
    runs = []
    for p in range(PIPELINES):
        for t in range(TASKS):
            for h in hours.tolist():
                begin = datetime.fromtimestamp(now - h * H, timezone.utc)
                ok = rng.random() > 0.05
                seconds = float(rng.gamma(5, 4)) * (2.0 if (p == 0 and h <= 24) else 1.0)
                runs.append(TaskRun(f"p{p}", f"t{t}", f"r{h}", "success" if ok else "failure", started_at=begin,
                                    ended_at=begin + timedelta(seconds=seconds),
                                    error_type=None if ok else "ValueError", error_message=None if ok else "bad row",
                                    error_location=None if ok else f"pipelines/p{p}.py:{40 + t}"))
    store.write_task_runs(runs)
    took["task runs"] = time.perf_counter() - start

    start = time.perf_counter()
    for m in range(TRAINED):
        for d in range(30, 0, -1):
            begin = datetime.fromtimestamp(now - d * DAY, timezone.utc)
            store.write_training_run(TrainingRun(f"model{m}", f"model{m}-{d}", "success", begin, begin + timedelta(hours=2),
                                                 metrics={"accuracy": float(0.9 + rng.normal(0, 0.005))}))
    took["training runs"] = time.perf_counter() - start

    start = time.perf_counter()
    # a pool of hourly sketches per feature type (sketching is not what is measured here)
    numeric = [sketch_of(rng.normal(40, 10, 300)) for _ in range(24)]
    shifted = [sketch_of(rng.normal(46, 10, 300)) for _ in range(24)]
    categorical = [sketch_of(rng.choice(["fr", "de", "us", "it"], 300, p=[.4, .3, .2, .1])) for _ in range(24)]
    records = []
    for m in range(MODELS):
        for f in range(NUMERIC_FEATURES + CATEGORICAL_FEATURES):
            for h in hours.tolist():
                pool = categorical if f >= NUMERIC_FEATURES else (shifted if (f == 0 and h <= 24) else numeric)
                records.append(SketchRecord(f"model{m}", f"f{f}", int(now - h * H) * 1_000_000, H, "00" * 8, 0, pool[h % 24]))
    store.write_sketches(records)
    took["sketches"] = time.perf_counter() - start
    return took


def rules_yaml() -> str:
    """500 rules of every kind over the data of :func:`fill`."""
    rules = []
    aggregates = ["p99", "p95", "mean", "max", "count"]
    windows = ["15m", "1h", "6h"]
    for i in range(150):
        s = i % SERVICES
        if i % 5 == 4:
            rules.append(f"{{name: err-{i}, kind: threshold, metric: serve.latency_s, tags: {{service: s{s}}}, aggregate: share,"
                         f" share_tags: {{status: 5xx}}, window: {windows[i % 3]}, op: '>', value: 0.6}}")
        else:
            rules.append(f"{{name: lat-{i}, kind: threshold, metric: serve.latency_s, tags: {{service: s{s}, status: 2xx}},"
                         f" aggregate: {aggregates[i % 4]}, window: {windows[i % 3]}, op: '>', value: 0.5}}")
    for i in range(40):
        baseline = "{kind: previous, windows: 7}" if i % 2 else "{kind: days_ago, days: [1, 7]}"
        rules.append(f"{{name: slow-{i}, kind: regression, metric: serve.latency_s, tags: {{service: s{i % SERVICES}, status: 2xx}},"
                     f" aggregate: p95, window: {['1h', '1d'][i % 2]}, baseline: {baseline}, threshold: 0.5}}")
    measures = ["duration_s", "retry_rate", "failure_rate"]
    for i in range(60):
        measure = measures[i % 3]
        baseline = "{kind: runs, runs: 100}" if i % 4 == 3 else "{kind: previous, windows: 7}"
        change = "relative, threshold: 0.5" if measure == "duration_s" else "absolute, threshold: 0.2"
        rules.append(f"{{name: etl-{i}, kind: regression, source: task_runs, pipeline: p{i % PIPELINES}, measure: {measure},"
                     f" aggregate: p95, window: 1d, baseline: {baseline}, change: {change}, robust: {str(i % 2 == 0).lower()}}}")
    for i in range(25):
        rules.append(f"{{name: acc-{i}, kind: regression, source: training_runs, training_run: model{i % TRAINED},"
                     f" metric: accuracy, baseline: {{kind: runs, runs: 5}}, direction: decrease, threshold: 0.02, min_samples: 3}}")
    methods = ["auto", "psi", "jensenshannon", "auto", "wasserstein"]
    for i in range(50):
        m = i % MODELS
        method = methods[i % 5]
        features = ("all" if method in ("auto", "psi", "jensenshannon")
                    else "[" + ", ".join(f"f{f}" for f in range(NUMERIC_FEATURES)) + "]")
        reference = "{kind: training_run}" if i % 3 == 2 else "{kind: window, window: 7d}"
        share = ", drift_share: 0.3" if i % 2 else ""
        rules.append(f"{{name: drift-{i}, kind: drift, model: model{m}, features: {features}, method: {method},"
                     f" reference: {reference}, window: 1d{share}}}")
    for i in range(75):
        if i % 3 == 0:
            rules.append(f"{{name: quiet-{i}, kind: absence, metric: data.rows, tags: {{dataset: d{i % DATASETS}}}, absent_for: 2h}}")
        elif i % 3 == 1:
            rules.append(f"{{name: quiet-{i}, kind: absence, pipeline: p{i % PIPELINES}, absent_for: 26h}}")
        else:
            rules.append(f"{{name: quiet-{i}, kind: absence, training_run: model{i % TRAINED}, absent_for: 2d}}")
    for i in range(50):
        rules.append(f"{{name: new-{i}, kind: new_data, tags: {{dataset: d{i % DATASETS}}}, training_run: model{i % TRAINED},"
                     f" at_least: {10_000 * (1 + i % 5)}}}")
    for i in range(50):
        if i % 2:
            rules.append(f"{{name: event-{i}, kind: task_event, pipeline: p{i % PIPELINES}, on: [failure], lookback: 1h}}")
        else:
            rules.append(f"{{name: event-{i}, kind: task_event, training_run: model{i % TRAINED}, on: [finished, failed], lookback: 1d}}")
    return "rules:\n" + "".join(f"  - {rule}\n" for rule in rules)


def cycle(tmp: str) -> list[Result]:
    from tablewatch.alerts.evaluate import evaluate
    from tablewatch.alerts.reads import CycleReads
    from tablewatch.alerts.rules import parse_rules
    from tablewatch.store import open_store

    rng = np.random.default_rng(9)
    now = float((int(time.time()) // H) * H)
    out = []
    with open_store(f"sqlite:///{tmp}/alerts.db") as store:
        took = fill(store, now, rng)
        start = time.perf_counter()
        rule_file = parse_rules(rules_yaml(), "bench.yaml")
        parse_s = time.perf_counter() - start
    for module in ("scipy.stats", "scipy.special", "scipy.spatial.distance"):
        importlib.import_module(module)  # a runner imports these once, not per cycle

    best = None
    for _ in range(CYCLES):
        # reopened: each cycle starts from a store that has cached nothing
        with open_store(f"sqlite:///{tmp}/alerts.db") as store:
            per_kind: dict[str, float] = defaultdict(float)
            rules_per_kind: dict[str, int] = defaultdict(int)
            observations = active = 0
            reads = CycleReads(store)
            begin = time.perf_counter()
            for rule in rule_file.rules:
                start = time.perf_counter()
                found = evaluate(rule, reads, now)
                per_kind[rule.kind] += time.perf_counter() - start
                rules_per_kind[rule.kind] += 1
                observations += len(found)
                active += sum(o.active for o in found)
            total = time.perf_counter() - begin
        if best is None or total < best[0]:
            best = (total, per_kind, rules_per_kind, observations, active, reads.store_reads)
    total, per_kind, rules_per_kind, observations, active, store_reads = best
    with open_store(f"sqlite:///{tmp}/alerts.db") as store:
        sample = rule_file.rules[::5]
        start = time.perf_counter()
        for rule in sample:
            evaluate(rule, store, now)
        uncached = (time.perf_counter() - start) * len(rule_file.rules) / len(sample)
    setup = ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
    out.append(Result(SECTION, f"one cycle: {len(rule_file.rules)} rules over 30 days of hourly data "
                               f"({observations} observations, {active} active; {store_reads} store reads; best of {CYCLES})",
                      total, "s", f"< {CYCLE_TARGET_S:g} s", total < CYCLE_TARGET_S))
    for kind in ("threshold", "regression", "drift", "absence", "new_data", "task_event"):
        out.append(Result(SECTION, f"  of which {kind} ({rules_per_kind[kind]} rules)", per_kind[kind], "s"))
    out.append(Result(SECTION, "  the same cycle without CycleReads, every rule reading the store itself "
                               "(every 5th rule, extrapolated)", uncached, "s"))
    out.append(Result(SECTION, "parse and validate the 500-rule file", parse_s * 1000, "ms"))
    print(f"alerts: store filled in {setup}", file=sys.stderr)
    return out


# -- drift of 1M values against 1M values -------------------------------------------------------


def evidently_python() -> str | None:
    python = os.environ.get("TABLEWATCH_EVIDENTLY_PYTHON") or str(ROOT / ".venv-evidently" / "bin" / "python")
    return python if Path(python).exists() else None


def run_evidently(samples: dict[str, np.ndarray], tmp: str, methods: tuple[str, str] | None = None) -> dict | None:
    python = evidently_python()
    if python is None:
        return None
    path = Path(tmp) / "samples.npz"
    np.savez(path, **samples)
    done = subprocess.run([python, str(ROOT / "bench" / "evidently_side.py"), str(path), *(methods or ())],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        print(f"alerts: Evidently failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def drift_1m(tmp: str) -> list[Result]:
    from scipy import stats

    from tablewatch.alerts.detectors import detect, sketch_of
    from tablewatch.store import open_store
    from tablewatch.store.sketches import SketchRecord

    rng = np.random.default_rng(11)
    n = 1_000_000
    now = float((int(time.time()) // H) * H)
    x_ref, x_cur = rng.lognormal(3, 0.5, n), rng.lognormal(3.05, 0.5, n)
    c_ref = rng.choice(["fr", "de", "us", "it", "es"], n, p=[.3, .25, .2, .15, .1])
    c_cur = rng.choice(["fr", "de", "us", "it", "es"], n, p=[.25, .25, .2, .15, .15])
    with open_store(f"sqlite:///{tmp}/drift.db") as store:
        records = []
        for name, values, offset in (("amount", x_ref, 2 * DAY), ("amount", x_cur, DAY),
                                     ("country", c_ref, 2 * DAY), ("country", c_cur, DAY)):
            for h, part in enumerate(np.array_split(values, 24)):
                records.append(SketchRecord("big", name, int(now - offset + h * H) * 1_000_000, H, "00" * 8, 0, sketch_of(part)))
        store.write_sketches(records)
    out = []
    with open_store(f"sqlite:///{tmp}/drift.db") as store:
        for feature in ("amount", "country"):
            start = time.perf_counter()
            reference = store.read_sketch("big", feature, now - 2 * DAY, now - DAY)
            current = store.read_sketch("big", feature, now - DAY, now)
            result = detect(reference, current)
            seconds = time.perf_counter() - start
            kind = "numbers" if feature == "amount" else "categories"
            out.append(Result(SECTION, f"drift 1M vs 1M {kind} from stored summaries (read 2 x 24 sketches + {result.method}:"
                                       f" {result.score:.3f}, effect {result.effect:.3f}, drifted={result.drifted})",
                              seconds, "s", f"< {DRIFT_TARGET_S:g} s", seconds < DRIFT_TARGET_S))
    start = time.perf_counter()
    stats.ks_2samp(x_ref, x_cur)
    out.append(Result(SECTION, "  scipy ks_2samp on the raw 1M vs 1M numbers", time.perf_counter() - start, "s"))
    evidently = run_evidently({"x_ref": x_ref, "x_cur": x_cur, "c_ref": c_ref, "c_cur": c_cur}, tmp)
    if evidently is not None:
        x, c = evidently["columns"]["x"], evidently["columns"]["c"]
        out.append(Result(SECTION, f"  Evidently DataDriftPreset on the raw 1M vs 1M, both columns ({x['stattest']} "
                                   f"{x['score']:.3f}; {c['stattest']} {c['score']:.3f})", evidently["seconds"], "s"))
    return out


# -- decisions side by side with Evidently -----------------------------------------------------------


def scenarios(rng: np.random.Generator) -> list[tuple[str, dict[str, np.ndarray], tuple[str, str] | None]]:
    """(name, raw samples, forced (numeric, categorical) tests or None for auto)."""
    cats = ["fr", "de", "us", "it"]
    p = [.4, .3, .2, .1]

    def case(n_ref: int, n_cur: int, mean: float = 40, sd: float = 10, q: list[float] = p) -> dict[str, np.ndarray]:
        return {"x_ref": rng.normal(40, 10, n_ref), "x_cur": rng.normal(mean, sd, n_cur),
                "c_ref": rng.choice(cats, n_ref, p=p), "c_cur": rng.choice(cats, n_cur, p=q)}

    shifted = [.25, .3, .2, .25]
    return [
        ("no drift, 500 vs 500", case(500, 500), None),
        ("mean shift 0.5 sd, 500", case(500, 500, mean=45), None),
        ("variance shift x1.5, 500", case(500, 500, sd=15), None),
        ("category shift, 500", case(500, 500, q=shifted), None),
        ("mean shift 0.3 sd, 50 vs 50", case(50, 50, mean=43, q=[.35, .3, .2, .15]), None),
        ("no drift, 1M vs 1M", case(1_000_000, 1_000_000), None),
        ("mean shift 0.5 sd, 1M", case(1_000_000, 1_000_000, mean=45), None),
        ("variance shift x1.5, 1M", case(1_000_000, 1_000_000, sd=15), None),
        ("category shift, 1M", case(1_000_000, 1_000_000, q=shifted), None),
        ("negligible change (0.02 sd; 1 point of share), 1M, K-S and chi-square forced",
         case(1_000_000, 1_000_000, mean=40.2, q=[.39, .3, .2, .11]), ("ks", "chisquare")),
    ]


def side_by_side(tmp: str) -> list[Result]:
    from tablewatch.alerts.detectors import detect, sketch_of

    if evidently_python() is None:
        return [Result(SECTION, "drift decisions vs Evidently: not run (no .venv-evidently; `make bench` makes it)", 0, "")]
    rng = np.random.default_rng(13)
    out = []
    agree = total = 0
    for name, samples, forced in scenarios(rng):
        evidently = run_evidently(samples, tmp, forced)
        if evidently is None:
            continue
        for column, kind in (("x", "numbers"), ("c", "categories")):
            ours = detect(sketch_of(samples[f"{column}_ref"]), sketch_of(samples[f"{column}_cur"]),
                          "auto" if forced is None else forced[0 if column == "x" else 1])
            theirs = evidently["columns"][column]
            same = ours.drifted == theirs["drifted"]
            agree += same
            total += 1
            why = "" if same else f" -- differs: {difference(ours, theirs)}"
            out.append(Result(SECTION, f"{name}, {kind}: ours {ours.method} {ours.score:.3g} effect {ours.effect:.2f} "
                                       f"{'DRIFT' if ours.drifted else 'no drift'} | Evidently {theirs['stattest']} "
                                       f"{theirs['score']:.3g} {'DRIFT' if theirs['drifted'] else 'no drift'}{why}",
                              float(same), "agree", "", None))
    out.append(Result(SECTION, "drift decisions agreeing with Evidently's DataDriftPreset", agree, f"of {total}"))
    return out


def difference(ours, theirs) -> str:
    if ours.statistic_drifted and not ours.drifted:
        return (f"the test is significant but the effect size {ours.effect:.3f} is under the gate "
                f"{ours.min_effect:g}: a negligible change on a huge sample")
    if ours.method == "ks":
        return "K-S from sketches measures D at the bins' edges (a lower bound of the raw D): a borderline p-value"
    if ours.method == "chisquare":
        return ("chi-square on the 2 x K table of both samples vs Evidently's goodness-of-fit to the reference "
                "shares taken as exact (or its z-test for two categories): a borderline p-value")
    return "a score at the threshold, values placed within 1 % by the sketch"


def run() -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results += cycle(tmp)
        results += drift_1m(tmp)
        results += side_by_side(tmp)
    return results
