"""Alert rules: the schema of a rules file and its validation.

A rules file is YAML::

    dashboard_url: http://127.0.0.1:8501
    slack: {channel: "#ml-alerts", mentions: {critical: ["@oncall"]}}
    actions:
      retrain: {kind: command, command: ["python", "train.py"], timeout: 3600}
    rules:
      - name: etl-slow
        kind: regression
        source: task_runs
        pipeline: nightly-etl
        measure: duration_s
        aggregate: p95
        window: 1d
        baseline: {kind: previous, windows: 7}
        threshold: 0.5                     # +50 %

Every rule has ``name`` and ``kind`` and the common fields of :class:`RuleBase`;
each kind has its own fields (one pydantic model per kind, discriminated on
``kind``). Unknown fields are refused. Durations are a number of seconds or a
string such as ``90s``, ``5m``, ``1h``, ``7d``, ``2w`` or ``1h30m``.

:func:`load_rules` and :func:`parse_rules` raise :class:`~tablewatch.errors.RuleError`
naming the file, the line, the rule and the field of every problem::

    rules.yaml:14: rules[2] ('etl-slow').window: must be a duration like 30m, 1h, 7d (got 'abc')
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from tablewatch.errors import RuleError
from tablewatch.extras import require

# Through require: without the `alerts` extra, the error names it.
yaml = require("yaml", "alerts", "reading alert rules")
require("pydantic", "alerts", "reading alert rules")
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, field_validator, model_validator  # noqa: E402
from pydantic import ValidationError as PydanticValidationError  # noqa: E402

KINDS = ("threshold", "regression", "drift", "absence", "new_data", "task_event")
SEVERITIES = ("info", "warning", "critical")
AGGREGATES = ("mean", "min", "max", "count", "sum", "rate", "share", "p50", "p90", "p95", "p99")
DRIFT_METHODS = ("psi", "ks", "wasserstein", "jensenshannon", "chisquare", "auto")
TASK_MEASURES = ("duration_s", "queue_wait_s", "retry_rate", "failure_rate", "runs")
TASK_EVENTS = ("success", "failure", "retry")
#: Synonyms accepted in ``task_event.on``.
EVENT_SYNONYMS = {"finished": "success", "failed": "failure", "succeeded": "success", "retried": "retry"}
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8501"
PREDICTION = "__prediction__"

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_PROBLEM = "must be a duration like 30m, 1h, 7d"


# -- field types ----------------------------------------------------------------------------


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a string like ``90s``, ``5m``,
    ``1h``, ``7d``, ``2w``, ``1h30m`` (raises ValueError otherwise)."""
    if isinstance(value, bool):
        raise ValueError(f"{_DURATION_PROBLEM} (got {value!r})")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"{_DURATION_PROBLEM} (got {value!r})") from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"{_DURATION_PROBLEM} (got {value!r})")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"must be a duration >= 0 (got {value!r})")
    return seconds


def _positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be a duration > 0 (got {value!r})")
    return seconds


def _utc(value: Any) -> Any:
    """Naive datetimes and dates (YAML timestamps without an offset) are UTC."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_positive_duration)]
UTCDatetime = Annotated[datetime, BeforeValidator(_utc)]
Name = Annotated[str, Field(min_length=1, max_length=256)]


def _metric_name(value: str) -> str:
    from tablewatch.errors import ValidationError
    from tablewatch.store.names import validate_metric

    try:
        return validate_metric(value)
    except ValidationError as e:
        raise ValueError(f"{e.problem} (got {value!r})") from None


MetricName = Annotated[str, AfterValidator(_metric_name)]
#: A tag filter: an exact value, any of a list of values, or ``true`` (the tag is present).
TagFilter = Union[Literal[True], str, list[str]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _tag_filters(value: Any) -> Any:
    """Numbers in tag filters are compared as text (``shard: 3`` means "3")."""
    if isinstance(value, dict):
        return {k: (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in value.items()}
    return value


TagFilters = Annotated[dict[str, TagFilter], BeforeValidator(_tag_filters)]


# -- rules: common fields -------------------------------------------------------------------


class RuleBase(_Model):
    """Fields every rule has. ``for`` (``for_`` in Python): how long the
    condition must hold before the alert fires (pending until then);
    ``keep_firing_for``: how long it keeps firing after the condition stops
    (no flapping); ``repeat_interval``: how often a still-firing alert is
    re-notified; ``every`` / ``cron``: the rule's own schedule (not both; by
    default the runner's)."""

    name: Name
    kind: str
    labels: dict[str, str] = {}
    severity: Literal["info", "warning", "critical"] = "warning"
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    repeat_interval: Duration = 4 * 3600.0
    action: str | None = None
    every: PositiveDuration | None = None
    cron: str | None = None
    summary: str | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        croniter = require("croniter", "alerts", "a rule's cron schedule").croniter
        if len(value.split()) not in (5, 6) or not croniter.is_valid(value):
            raise ValueError(f"must be a cron expression like '0 0 * * 2' (minute hour day month weekday) (got {value!r})")
        return value

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Checks across fields: (field path, problem) pairs."""
        found = []
        if self.every is not None and self.cron is not None:
            found.append((("cron",), "give either every or cron, not both"))
        return found


class _PointsSelector(_Model):
    """Which points: the series of ``metric`` whose tags match ``tags`` (a value,
    a list of values, or ``true`` for "has the tag"), reduced by ``aggregate``.
    ``rate`` is the sum per second of the window; ``share`` is the fraction of
    the points (of the series matching ``tags``) whose series also match
    ``share_tags`` — an error rate, e.g. ``share_tags: {status: 5xx}``."""

    metric: MetricName
    tags: TagFilters = {}
    aggregate: Literal["mean", "min", "max", "count", "sum", "rate", "share", "p50", "p90", "p95", "p99"] = "mean"
    share_tags: TagFilters | None = None

    def _selector_problems(self) -> list[tuple[tuple[str, ...], str]]:
        if self.aggregate == "share" and not self.share_tags:
            return [(("share_tags",), "is required with aggregate: share (the tags of the counted part, e.g. {status: 5xx})")]
        if self.share_tags and self.aggregate != "share":
            return [(("share_tags",), "is only used with aggregate: share")]
        return []


# -- the kinds ------------------------------------------------------------------------------


class ThresholdRule(RuleBase, _PointsSelector):
    """``aggregate`` of the points of ``metric`` over the last ``window``,
    compared with ``value`` by ``op``. ``per_series``: one alert per matching
    series (its labels are the series' tags), else one for all of them."""

    kind: Literal["threshold"]
    window: PositiveDuration = 3600.0
    op: Literal[">", ">=", "<", "<="]
    value: float
    per_series: bool = True
    min_samples: int = Field(1, ge=1)

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        return super().problems() + self._selector_problems()


class PreviousWindows(_Model):
    """Baseline: the ``windows`` windows just before the current one."""

    kind: Literal["previous"]
    windows: int = Field(1, ge=1, le=1000)


class DaysAgo(_Model):
    """Baseline: the same window ``days`` days earlier (``days: [1, 7]``: both, pooled)."""

    kind: Literal["days_ago"]
    days: int | list[Annotated[int, Field(ge=1, le=3650)]] = Field(7)

    @field_validator("days")
    @classmethod
    def _days(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, int) and not 1 <= value <= 3650:
            raise ValueError(f"must be a number of days from 1 to 3650 (got {value!r})")
        if isinstance(value, list) and not value:
            raise ValueError("must name at least one day")
        return value

    @property
    def day_list(self) -> list[int]:
        return [self.days] if isinstance(self.days, int) else list(self.days)


class LastRuns(_Model):
    """Baseline: the last ``runs`` runs before the current one (training runs
    of the same name, or task runs of the same pipeline task)."""

    kind: Literal["runs"]
    runs: int = Field(5, ge=1, le=1000)


def _baseline_shorthand(value: Any) -> Any:
    if isinstance(value, str) and value in ("previous", "days_ago", "runs"):
        return {"kind": value}
    return value


Baseline = Annotated[
    Union[PreviousWindows, DaysAgo, LastRuns], Field(discriminator="kind"), BeforeValidator(_baseline_shorthand)
]


class RegressionRule(RuleBase):
    """The value over the current ``window`` against a ``baseline``.

    ``source`` says what is measured:

    - ``points``: ``aggregate`` of ``metric`` (+ ``tags``, ``share_tags``) — serving
      latency ``serve.latency_s`` p95, error rate as ``share`` of ``status: 5xx``;
    - ``task_runs``: ``measure`` of the runs of ``pipeline`` (and ``task``):
      ``duration_s`` (by ``aggregate``, e.g. p95), ``retry_rate`` (share of
      attempts after the first), ``failure_rate`` (share of runs that failed);
    - ``training_runs``: the final ``metric`` (e.g. ``accuracy``) of the newest
      finished run of ``training_run`` against the previous runs (``baseline:
      runs``).

    ``change: relative`` compares ``(current - baseline) / |baseline|`` with
    ``threshold`` (0.5 = 50 %), ``absolute`` compares ``current - baseline``;
    ``direction`` says which way is bad. ``robust``: the baseline is the median of
    the baseline's windows (or runs) and the change must also exceed ``mad_k``
    scaled median absolute deviations, for noisy data. ``min_samples``: fewer
    points, runs or windows than this in the current window or the baseline give
    no alert."""

    kind: Literal["regression"]
    source: Literal["points", "task_runs", "training_runs"] = "points"
    metric: MetricName | None = None
    tags: TagFilters = {}
    aggregate: Literal["mean", "min", "max", "count", "sum", "rate", "share", "p50", "p90", "p95", "p99"] = "mean"
    share_tags: TagFilters | None = None
    pipeline: TagFilter | None = None
    task: TagFilter | None = None
    measure: Literal["duration_s", "queue_wait_s", "retry_rate", "failure_rate", "runs"] = "duration_s"
    training_run: Name | None = None
    window: PositiveDuration = 86400.0
    baseline: Baseline = PreviousWindows(kind="previous")
    change: Literal["relative", "absolute"] = "relative"
    direction: Literal["increase", "decrease", "both"] = "increase"
    threshold: float = Field(..., gt=0)
    min_samples: int = Field(5, ge=1)
    robust: bool = False
    mad_k: float = Field(3.0, gt=0)
    per_series: bool = True

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        found = super().problems()
        if self.source == "points":
            if self.metric is None:
                found.append((("metric",), "is required with source: points"))
            if self.aggregate == "share" and not self.share_tags:
                found.append((("share_tags",), "is required with aggregate: share"))
            if self.baseline.kind == "runs":
                found.append((("baseline",), "runs is a baseline of task_runs or training_runs, not of points"))
        elif self.source == "task_runs":
            if self.pipeline is None:
                found.append((("pipeline",), "is required with source: task_runs"))
        else:
            if self.training_run is None:
                found.append((("training_run",), "is required with source: training_runs (the runs' name)"))
            if self.metric is None:
                found.append((("metric",), "is required with source: training_runs (a final metric, e.g. accuracy)"))
            if self.baseline.kind != "runs":
                found.append((("baseline",), "must be {kind: runs, runs: N} with source: training_runs"))
        return found


class PinnedRange(_Model):
    """Reference: a fixed time range ``[start, end)``."""

    kind: Literal["range"]
    start: UTCDatetime
    end: UTCDatetime

    @model_validator(mode="after")
    def _order(self) -> PinnedRange:
        if self.end <= self.start:
            raise ValueError(f"end must be after start ({self.start.isoformat()})")
        return self


class WindowBefore(_Model):
    """Reference: a window of ``window`` ending ``offset`` before now (by default
    where the current window starts)."""

    kind: Literal["window"]
    window: PositiveDuration = 7 * 86400.0
    offset: Duration | None = None


class TrainingRunReference(_Model):
    """Reference: the sketches recorded while a training run ran — the newest
    finished run named ``training_run`` (default: the model's name), or the run
    ``run_id``."""

    kind: Literal["training_run"]
    training_run: Name | None = None
    run_id: Name | None = None


Reference = Annotated[Union[PinnedRange, WindowBefore, TrainingRunReference], Field(discriminator="kind")]
DriftMethod = Literal["psi", "ks", "wasserstein", "jensenshannon", "chisquare", "auto"]


class DriftRule(RuleBase):
    """The distribution of a model's features (and prediction, ``__prediction__``)
    over the current ``window`` against a ``reference``, from the stored
    sketches. ``features``: a list, or ``all`` (every sketched feature,
    prediction included). ``method``: a test, or ``auto`` (chosen per feature
    by type and sample size, as Evidently does). ``threshold``: for the chosen
    method (default: Evidently's); ``thresholds``: per method. ``min_effect``: a
    feature drifts only if its effect size (normed Wasserstein distance for
    numbers, Cohen's w for categories) is at least this — so that a huge sample
    does not make a negligible change drift (0 turns the gate off).
    ``min_samples``: fewer values in either window give no alert.
    ``drift_share``: one alert for the model when at least this share of its
    features drift (Evidently's dataset drift); without it, one alert per
    drifting feature."""

    kind: Literal["drift"]
    model: Name
    features: Literal["all"] | list[Name] = "all"
    reference: Reference = WindowBefore(kind="window")
    window: PositiveDuration = 86400.0
    method: DriftMethod = "auto"
    threshold: float | None = Field(None, gt=0)
    thresholds: dict[DriftMethod, Annotated[float, Field(gt=0)]] = {}
    min_effect: float = Field(0.1, ge=0)
    min_samples: int = Field(100, ge=1)
    drift_share: float | None = Field(None, gt=0, le=1)

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        found = super().problems()
        if isinstance(self.features, list) and not self.features:
            found.append((("features",), "must name at least one feature, or be 'all'"))
        if self.threshold is not None and self.method == "auto":
            found.append((("threshold",), "needs a method (with method: auto, give thresholds per method)"))
        return found


class AbsenceRule(RuleBase):
    """Fires when something stopped reporting for longer than ``absent_for``:
    the series of ``metric`` (+ ``tags``; one alert per series), the task runs
    of ``pipeline`` (+ ``task``; one alert per task), or the training runs named
    ``training_run``. Only what reported within ``lookback`` is watched (so a
    decommissioned series stops alerting)."""

    kind: Literal["absence"]
    metric: MetricName | None = None
    tags: TagFilters = {}
    pipeline: TagFilter | None = None
    task: TagFilter | None = None
    training_run: Name | None = None
    absent_for: PositiveDuration
    lookback: PositiveDuration = 7 * 86400.0

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        found = super().problems()
        targets = [t for t in ("metric", "pipeline", "training_run") if getattr(self, t) is not None]
        if len(targets) != 1:
            found.append(((), "needs exactly one of metric, pipeline, training_run"
                          + (f" (got {', '.join(targets)})" if targets else "")))
        if self.task is not None and self.pipeline is None:
            found.append((("task",), "needs pipeline"))
        if self.lookback <= self.absent_for:
            found.append((("lookback",), "must be longer than absent_for"))
        return found


class NewDataRule(RuleBase):
    """At least ``at_least`` new samples — the sum of the counter ``metric``
    (e.g. ``data.rows`` pushed by the ingest pipeline, + ``tags``) since the
    newest run of ``training_run`` ended (or started, while it runs): the
    engine asks whether to retrain (Train! / Nope!). ``model`` names the model
    in the labels (default: the training run's name). One event per training
    run."""

    kind: Literal["new_data"]
    metric: MetricName = "data.rows"
    tags: TagFilters = {}
    training_run: Name
    model: Name | None = None
    at_least: float = Field(..., gt=0)
    lookback: PositiveDuration = 90 * 86400.0


class TaskEventRule(RuleBase):
    """A task run or a training run that finished (``success``) or failed
    (``failure``; ``retry``: an attempt that will be retried): one event per
    run, with its duration and final metrics, or its exception type, message and
    file:line. Filters: ``pipeline`` and ``task`` (task runs), or
    ``training_run`` (training runs). ``lookback``: how far back events are
    looked for (the engine notifies each event once)."""

    kind: Literal["task_event"]
    pipeline: TagFilter | None = None
    task: TagFilter | None = None
    training_run: TagFilter | None = None
    on: list[str] = ["failure"]
    lookback: PositiveDuration = 3600.0

    @field_validator("on", mode="before")
    @classmethod
    def _on(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ValueError(f"must be a list of events ({', '.join(TASK_EVENTS)}) (got {value!r})")
        out = []
        for item in value:
            event = EVENT_SYNONYMS.get(item, item) if isinstance(item, str) else item
            if event not in TASK_EVENTS:
                known = ", ".join([*TASK_EVENTS, *EVENT_SYNONYMS])
                raise ValueError(f"must be events among {known} (got {item!r})")
            if event not in out:
                out.append(event)
        return out

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        found = super().problems()
        if (self.pipeline is None) == (self.training_run is None):
            found.append(((), "needs exactly one of pipeline (task runs) or training_run (training runs)"))
        if self.task is not None and self.pipeline is None:
            found.append((("task",), "needs pipeline"))
        if self.training_run is not None and "retry" in self.on:
            found.append((("on",), "retry is an event of task runs, not of training runs"))
        return found


Rule = Annotated[
    Union[ThresholdRule, RegressionRule, DriftRule, AbsenceRule, NewDataRule, TaskEventRule],
    Field(discriminator="kind"),
]
RULE_MODELS: dict[str, type[RuleBase]] = {
    "threshold": ThresholdRule, "regression": RegressionRule, "drift": DriftRule,
    "absence": AbsenceRule, "new_data": NewDataRule, "task_event": TaskEventRule,
}


# -- actions, Slack, silences ------------------------------------------------------------------


class CommandAction(_Model):
    """Run a command (a list of arguments, or a string run by the shell)."""

    kind: Literal["command"]
    command: list[str] | str
    timeout: PositiveDuration = 600.0

    @field_validator("command")
    @classmethod
    def _not_empty(cls, value: list[str] | str) -> list[str] | str:
        if not value or (isinstance(value, str) and not value.strip()):
            raise ValueError("must not be empty")
        return value


class WebhookAction(_Model):
    """Send an HTTP request to ``url``."""

    kind: Literal["webhook"]
    url: str
    method: Literal["POST", "PUT", "GET"] = "POST"
    headers: dict[str, str] = {}
    timeout: PositiveDuration = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"must be an http:// or https:// URL (got {value!r})")
        return value


class CeleryAction(_Model):
    """Send the Celery task named ``task`` through ``broker``."""

    kind: Literal["celery"]
    task: Name
    broker: Name
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    queue: str | None = None


ActionSpec = Annotated[Union[CommandAction, WebhookAction, CeleryAction], Field(discriminator="kind")]


class SlackSettings(_Model):
    """``channel`` (default: ``$SLACK_CHANNEL``) and who to mention per severity."""

    channel: str | None = None
    mentions: dict[Literal["info", "warning", "critical"], list[str]] = {}


class SilenceSpec(_Model):
    """Alerts whose labels match every matcher (``rule`` matches the rule's
    name) are not notified until ``ends_at``."""

    matchers: dict[str, str] = Field(..., min_length=1)
    ends_at: UTCDatetime
    comment: str = ""


class RuleFile(_Model):
    """A whole rules file."""

    rules: list[Rule]
    actions: dict[str, ActionSpec] = {}
    slack: SlackSettings | None = None
    dashboard_url: str = DEFAULT_DASHBOARD_URL
    silences: list[SilenceSpec] = []

    def rule(self, name: str) -> RuleBase:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


# -- loading ---------------------------------------------------------------------------------


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader (libyaml's when PyYAML has it) with YAML 1.2 booleans:
    only true/false. YAML 1.1 also reads ``on``, ``off``, ``yes``, ``no`` as
    booleans, which would turn the key ``on:`` into True."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_rules(path: str | Path) -> RuleFile:
    """Read and validate a rules file; RuleError names file:line, rule and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RuleError([f"{path}: cannot read the rules file ({e})"]) from e
    return parse_rules(text, source=str(path))


def parse_rules(text: str, source: str = "<string>") -> RuleFile:
    """Validate the YAML text of a rules file (``source`` names it in errors)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f"{mark.line + 1}:" if mark is not None else ""
        raise RuleError([f"{source}:{line} invalid YAML: {e.problem or e}"]) from e
    except yaml.YAMLError as e:
        raise RuleError([f"{source}: invalid YAML: {e}"]) from e
    finally:
        loader.dispose()
    if node is None:
        raise RuleError([f"{source}:1: rules: is required (the file is empty)"])
    lines: dict[tuple[Any, ...], int] = {}
    duplicates: list[str] = []
    _index_lines(node, (), lines, duplicates, source)
    if duplicates:
        raise RuleError(duplicates)
    if not isinstance(data, dict):
        raise RuleError([f"{source}:1: the file must be a mapping with rules: (got {type(data).__name__})"])
    located = _Locator(source, lines, data)
    problems: list[tuple[int, str]] = []
    rule_file = None
    try:
        rule_file = RuleFile.model_validate(data)
    except PydanticValidationError as e:
        problems += [located.message(err) for err in e.errors()]
    problems += _cross_checks(data, located)
    if problems or rule_file is None:
        problems.sort(key=lambda p: p[0])  # by line; stable
        raise RuleError([text for _, text in problems])
    return rule_file


_RULE_ADAPTER: TypeAdapter[Any] = TypeAdapter(Rule)


def _cross_checks(data: dict[str, Any], located: _Locator) -> list[tuple[int, str]]:
    """What one field cannot say alone: unique names, known actions, and each
    rule's checks across its fields (for every rule that is valid on its own)."""
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list):
        return []
    actions = data.get("actions") if isinstance(data.get("actions"), dict) else {}
    problems = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_rules):
        if not isinstance(raw, dict):
            continue
        name = raw.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(located.at(("rules", i, "name"), f"duplicate rule name (rules[{seen[name]}] has it too)", name))
            seen.setdefault(name, i)
        action = raw.get("action")
        if isinstance(action, str) and action not in actions:
            known = ", ".join(sorted(map(str, actions))) or "none defined"
            problems.append(located.at(("rules", i, "action"), f"must name an action of actions: ({known})", action))
        try:
            rule = _RULE_ADAPTER.validate_python(raw)
        except PydanticValidationError:
            continue  # reported with the file's errors
        for field, problem in rule.problems():
            problems.append(located.at(("rules", i, *field), problem))
    return problems


def _index_lines(node: yaml.Node, path: tuple[Any, ...], lines: dict, duplicates: list[str], source: str) -> None:
    """Record the 1-based line of every key and item, by path."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key in seen:
                duplicates.append(f"{source}:{key_node.start_mark.line + 1}: {_render_path(path)}"
                                  f"{'.' if path else ''}{key}: appears twice")
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*path, key), lines, duplicates, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _index_lines(item, (*path, i), lines, duplicates, source)


def _render_path(path: tuple[Any, ...], data: Any = None) -> str:
    out = ""
    current = data
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            if isinstance(current, list) and 0 <= part < len(current):
                current = current[part]
                if len(path) >= 2 and path[0] == "rules" and out == f"rules[{part}]" and isinstance(current, dict):
                    name = current.get("name")
                    if isinstance(name, str):
                        out += f" ({name!r})"
            else:
                current = None
        else:
            out += f".{part}" if out else str(part)
            current = current.get(part) if isinstance(current, dict) else None
    return out


class _Locator:
    """Turns pydantic errors into ``file:line: path: problem`` lines."""

    def __init__(self, source: str, lines: dict[tuple[Any, ...], int], data: Any) -> None:
        self.source = source
        self.lines = lines
        self.data = data

    def _clean(self, loc: tuple[Any, ...]) -> tuple[Any, ...]:
        """Drop the discriminator tags pydantic puts in locations
        (``rules.2.threshold.window`` is ``rules[2].window``) and the
        ``function-after[...]`` steps of validators."""
        out: list[Any] = []
        current = self.data
        skip_next_tag = False
        for part in loc:
            if isinstance(part, str) and ("[" in part and part.endswith("]")) and part not in (current or {}):
                continue
            if skip_next_tag and isinstance(current, dict) and part == current.get("kind"):
                skip_next_tag = False
                continue
            skip_next_tag = False
            out.append(part)
            if isinstance(current, dict):
                current = current.get(part)
            elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
                current = current[part]
            else:
                current = None
            if isinstance(current, dict) and "kind" in current:
                skip_next_tag = True
        return tuple(out)

    def _line(self, path: tuple[Any, ...]) -> int:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1

    def _value(self, path: tuple[Any, ...]) -> Any:
        current = self.data
        for part in path:
            if isinstance(current, dict) and part in current:
                current = current[part]
            elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
                current = current[part]
            else:
                return _MISSING
        return current

    def at(self, path: tuple[Any, ...], problem: str, value: Any = None) -> tuple[int, str]:
        shown = ""
        if value is not None and "(got " not in problem:
            text = repr(value)
            shown = f" (got {text[:77] + '...' if len(text) > 80 else text})"
        where = _render_path(path, self.data)
        line = self._line(path)
        return line, f"{self.source}:{line}: {where or '(top level)'}: {problem}{shown}"

    def message(self, error: Any) -> tuple[int, str]:
        path = self._clean(tuple(error["loc"]))
        kind = error["type"]
        problem = error["msg"]
        value = self._value(path)
        if problem.startswith("Value error, "):
            problem = problem[len("Value error, "):]
        elif problem.startswith("Assertion failed, "):
            problem = problem[len("Assertion failed, "):]
        if kind == "missing":
            return self.at(path, "is required")
        if kind == "extra_forbidden":
            return self.at(path, f"unknown field{self._known(path[:-1])}")
        if kind in ("union_tag_not_found", "union_tag_invalid"):
            expected = error.get("ctx", {}).get("expected_tags", "")
            found = self._value((*path, "kind"))
            if found is _MISSING:
                return self.at((*path, "kind"), f"is required (one of {expected})")
            return self.at((*path, "kind"), f"must be one of {expected}", found)
        if kind == "literal_error":
            expected = error.get("ctx", {}).get("expected", "")
            return self.at(path, f"must be one of {expected}", None if value is _MISSING else value)
        if "(got " in problem or value is _MISSING or isinstance(value, (dict, list)):
            return self.at(path, _lower(problem))
        return self.at(path, _lower(problem), value)

    def _known(self, path: tuple[Any, ...]) -> str:
        """`` (known: ...)`` for the model at ``path`` when it is a rule."""
        if len(path) == 2 and path[0] == "rules":
            rule = self._value(path)
            model = RULE_MODELS.get(rule.get("kind")) if isinstance(rule, dict) else None
            if model is not None:
                names = sorted(f.alias or name for name, f in model.model_fields.items())
                return f" (known: {', '.join(names)})"
        return ""


class _Missing:
    pass


_MISSING = _Missing()


def _lower(problem: str) -> str:
    return problem[:1].lower() + problem[1:] if problem[:2] != problem[:2].upper() else problem


def describe(rule: RuleBase) -> str:
    """One line about a rule (``tablewatch alerts check`` prints it)."""
    schedule = f"cron '{rule.cron}'" if rule.cron else (f"every {format_duration(rule.every)}" if rule.every else "runner schedule")
    text = f"{rule.name}: {rule.kind}, {rule.severity}"
    if isinstance(rule, ThresholdRule):
        text += f", {rule.aggregate}({rule.metric}) over {format_duration(rule.window)} {rule.op} {rule.value:g}"
    elif isinstance(rule, RegressionRule):
        what = {"points": f"{rule.aggregate}({rule.metric})",
                "task_runs": f"{rule.aggregate + ' ' if rule.measure in ('duration_s', 'queue_wait_s') else ''}"
                             f"{rule.measure} of {_filter_text(rule.pipeline)}{'/' + _filter_text(rule.task) if rule.task else ''}",
                "training_runs": f"final {rule.metric} of {rule.training_run}"}[rule.source]
        unit = f"{rule.threshold:.0%}" if rule.change == "relative" else f"{rule.threshold:g}"
        text += f", {what} {rule.direction} by {unit} vs {_baseline_text(rule)}"
    elif isinstance(rule, DriftRule):
        features = "all features" if rule.features == "all" else ", ".join(rule.features)
        text += f", {rule.model} ({features}) by {rule.method} over {format_duration(rule.window)} vs {rule.reference.kind}"
        if rule.drift_share is not None:
            text += f", model drifts at {rule.drift_share:.0%} of features"
    elif isinstance(rule, AbsenceRule):
        target = rule.metric or (f"pipeline {_filter_text(rule.pipeline)}" if rule.pipeline else f"training run {rule.training_run}")
        text += f", {target} silent for {format_duration(rule.absent_for)}"
    elif isinstance(rule, NewDataRule):
        text += f", {rule.at_least:g} new {rule.metric} since training run {rule.training_run} → ask to retrain"
    elif isinstance(rule, TaskEventRule):
        target = (f"pipeline {_filter_text(rule.pipeline)}" if rule.pipeline else f"training run {_filter_text(rule.training_run)}")
        text += f", {target}{'/' + _filter_text(rule.task) if rule.task else ''} on {', '.join(rule.on)}"
    if rule.action:
        text += f", action {rule.action}"
    return f"{text}; {schedule}"


def _filter_text(wanted: Any) -> str:
    if wanted is True:
        return "*"
    return "|".join(wanted) if isinstance(wanted, list) else str(wanted)


def _baseline_text(rule: RegressionRule) -> str:
    base = rule.baseline
    if isinstance(base, PreviousWindows):
        return f"the previous {base.windows} window{'s' if base.windows > 1 else ''}"
    if isinstance(base, DaysAgo):
        return f"the same window {', '.join(map(str, base.day_list))} day(s) earlier"
    return f"the last {base.runs} runs"


def format_duration(seconds: float | None) -> str:
    """``2h40m``, ``7d``, ``90s``: the shortest text :func:`parse_duration` reads back."""
    if seconds is None:
        return "-"
    if seconds <= 0 or seconds != int(seconds):
        return f"{seconds:g}s"
    rest = int(seconds)
    if rest % 604800 == 0:
        return f"{rest // 604800}w"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


__all__ = [
    "AbsenceRule",
    "ActionSpec",
    "CeleryAction",
    "CommandAction",
    "DaysAgo",
    "DriftRule",
    "LastRuns",
    "NewDataRule",
    "PinnedRange",
    "PreviousWindows",
    "RegressionRule",
    "Rule",
    "RuleBase",
    "RuleFile",
    "SilenceSpec",
    "SlackSettings",
    "TaskEventRule",
    "ThresholdRule",
    "TrainingRunReference",
    "WebhookAction",
    "WindowBefore",
    "describe",
    "format_duration",
    "load_rules",
    "parse_duration",
    "parse_rules",
]
