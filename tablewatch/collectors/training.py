"""Training runs and the system metrics sampled during them.

::

    with collector.run("resnet50", params={"lr": 0.1}, system_metrics_interval=10) as run:
        for step, batch in enumerate(loader):
            collector.log("train.loss", loss, step=step)   # tagged with the run
        run.summary({"val.acc": 0.93})

A run is written as a :class:`~tablewatch.store.TrainingRun` when it starts
(status ``running``) and again when it ends (``success``; ``failure`` with the
error when the block raises; ``killed`` on KeyboardInterrupt / SystemExit). Its
final ``metrics`` are ``run.summary(...)`` if given, else the last value logged
of each metric in the run (the most recent point across the metric's series;
system metrics excluded).

Every point logged with ``run.log(...)``, and with ``collector.log(...)`` while
the run is active in the same thread or asyncio task (the collector keeps the
run's buffers in a ``contextvars`` variable; other threads, and code after the
``with`` block, log without the run's tags), carries two tags: ``run=<run_id>`` and ``run_name=<name>``. So
``store.read_points("train.loss", {"run": run.run_id, "run_name": "resnet50"})``
reads one run's curve and ``store.find_series("train.loss", run_name="resnet50")``
lists every run of the experiment. Tags given to ``log()`` win over the run's.

With ``system_metrics_interval`` (seconds), a daemon thread samples the process
every interval, and once more when the run ends: ``system.cpu_percent`` (of one core, may exceed 100),
``system.memory_rss_bytes`` (psutil), and for each GPU that ``nvidia-smi``
reports (tag ``gpu=<index>``): ``system.gpu.utilization_percent``,
``system.gpu.memory_used_bytes``, ``system.gpu.memory_total_bytes``.
"""

from __future__ import annotations

import contextvars
import logging
import math
import shutil
import subprocess
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from tablewatch.collectors.spool import TrainingRunEntry
from tablewatch.errors import TablewatchError, ValidationError, ValidationTypeError
from tablewatch.store.names import validate_metric, validate_tags
from tablewatch.store.runs import TrainingRun, validate_training_run

if TYPE_CHECKING:
    from tablewatch.collectors.sdk import Collector

log = logging.getLogger("tablewatch")

RUN_TAG = "run"
RUN_NAME_TAG = "run_name"
NVIDIA_SMI_QUERY = ("index", "utilization.gpu", "memory.used", "memory.total")
NVIDIA_SMI_TIMEOUT_S = 5.0
_MIB = 1024 * 1024


class Run:
    """One training run; get it from :meth:`Collector.run` and use it as a
    context manager. ``run_id`` defaults to a random UUID (hex)."""

    def __init__(
        self,
        collector: Collector,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        system_metrics_interval: float | None = None,
        run_id: str | None = None,
    ) -> None:
        if system_metrics_interval is not None and (
            isinstance(system_metrics_interval, bool)
            or not isinstance(system_metrics_interval, (int, float))
            or not system_metrics_interval > 0
        ):
            raise ValidationError("system_metrics_interval", system_metrics_interval, "must be seconds > 0 or None")
        self.collector = collector
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex
        now = datetime.now(timezone.utc)
        # Checks name, run_id, params and tags now, before the run starts.
        self._record = validate_training_run(TrainingRun(
            name=name, run_id=self.run_id, status="running", started_at=now, params=dict(params or {}),
            tags=dict(tags or {}), host=collector.host,
        ))
        self.name = name
        self.point_tags = validate_tags({RUN_TAG: self.run_id, RUN_NAME_TAG: name})
        self.system_metrics_interval = system_metrics_interval
        self.ended = False
        self._series: dict[Any, Any] = {}
        self._buffers: list[Any] = []
        self._summary: dict[str, float] | None = None
        self._token: contextvars.Token | None = None
        self._sampler: SystemSampler | None = None

    @property
    def started_at(self) -> datetime:
        return self._record.started_at

    @property
    def record(self) -> TrainingRun:
        """The run as last written (or to be written)."""
        return self._record

    # -- logging --------------------------------------------------------------------------

    def log(self, metric: str, value: float, *, step: int | None = None, ts: Any = None,
            tags: Mapping[str, str] | None = None) -> None:
        """Like :meth:`Collector.log`, tagged with this run from any thread."""
        self.collector._log_into(self._series, self, metric, value, step, ts, tags)

    def log_many(self, values: Mapping[str, float], *, step: int | None = None, ts: Any = None,
                 tags: Mapping[str, str] | None = None) -> None:
        self.collector._log_many(self._series, self, values, step, ts, tags)

    def summary(self, metrics: Mapping[str, float]) -> None:
        """Final metrics of the run (merged over earlier calls); they replace the
        last-logged values in the run's record."""
        if not isinstance(metrics, Mapping):
            raise ValidationError("metrics", metrics, "must be a mapping of metric names to numbers")
        checked = {}
        for key, value in metrics.items():
            validate_metric(key, f"metrics[{key!r}]")
            if isinstance(value, (bool, str, bytes)) or value is None:
                raise ValidationTypeError(f"metrics[{key!r}]", value, "must be a number")
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError) as e:
                raise ValidationTypeError(f"metrics[{key!r}]", value, "must be a number") from e
            if math.isinf(number):
                raise ValidationError(f"metrics[{key!r}]", value, "must be finite (NaN marks a missing value)")
            checked[key] = number
        self._summary = {**(self._summary or {}), **checked}

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Run:
        if self._token is not None or self.ended:
            raise TablewatchError(f"training run {self.name!r} ({self.run_id}) was already started")
        self._record = _replace(self._record, started_at=datetime.now(timezone.utc))
        self.collector._enqueue(TrainingRunEntry(self._record))
        self._token = self.collector._enter_run(self)
        if self.system_metrics_interval is not None:
            self._sampler = SystemSampler(self, self.system_metrics_interval)
            self._sampler.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        self.ended = True
        if self._token is not None:
            self.collector._leave_run(self, self._token)
            self._token = None
        last = self.collector._end_run(self)
        if exc is None:
            status, error = "success", None
        elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
            status, error = "killed", f"{type(exc).__name__}: {exc}".rstrip(": ")
        else:
            status, error = "failure", f"{type(exc).__name__}: {exc}"
        metrics = self._summary if self._summary is not None else {
            k: v for k, v in last.items() if math.isfinite(v)  # a record keeps finite metrics
        }
        self._record = _replace(self._record, status=status, ended_at=datetime.now(timezone.utc),
                                metrics=metrics, error=error)
        try:
            self.collector._enqueue(TrainingRunEntry(self._record))
        except TablewatchError as e:  # the collector was closed under the run: say so, don't mask exc
            log.error("tablewatch: could not record the end of training run %s: %s", self.run_id, e)

    def __repr__(self) -> str:
        return f"Run({self.name!r}, run_id={self.run_id!r}, status={self._record.status!r})"


def _replace(run: TrainingRun, **changes: Any) -> TrainingRun:
    from dataclasses import replace

    return replace(run, **changes)


# -- system metrics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSample:
    index: int
    utilization_percent: float | None
    memory_used_bytes: float | None
    memory_total_bytes: float | None


def nvidia_smi_command(binary: str = "nvidia-smi") -> list[str]:
    return [binary, f"--query-gpu={','.join(NVIDIA_SMI_QUERY)}", "--format=csv,noheader,nounits"]


def parse_nvidia_smi(text: str) -> list[GpuSample]:
    """Parse ``nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total
    --format=csv,noheader,nounits`` output: one line per GPU, memory in MiB.
    Fields nvidia-smi cannot read (``[N/A]``, ``[Not Supported]``) become None;
    lines that are not GPU rows are skipped."""
    samples = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(NVIDIA_SMI_QUERY):
            continue
        try:
            index = int(fields[0])
        except ValueError:
            continue
        util, used, total = (_number(f) for f in fields[1:])
        samples.append(GpuSample(
            index, util,
            None if used is None else used * _MIB,
            None if total is None else total * _MIB,
        ))
    return samples


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_gpus(binary: str) -> list[GpuSample]:
    """Run nvidia-smi once; raises OSError / subprocess errors."""
    done = subprocess.run(nvidia_smi_command(binary), capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S,
                          check=True)
    return parse_nvidia_smi(done.stdout)


class SystemSampler:
    """Samples CPU, memory and GPUs into a run every ``interval`` seconds from a
    daemon thread, and once more on ``stop()``."""

    def __init__(self, run: Run, interval: float, nvidia_smi: str | None = None) -> None:
        self.run = run
        self.interval = float(interval)
        self.nvidia_smi = nvidia_smi if nvidia_smi is not None else shutil.which("nvidia-smi")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"tablewatch-system-{run.run_id[:8]}", daemon=True)
        self._process: Any = None

    def start(self) -> None:
        try:
            import psutil

            self._process = psutil.Process()
            self._process.cpu_percent(None)  # the first call only starts the measurement
        except Exception as e:  # psutil missing or refused: GPU sampling may still work
            log.warning("tablewatch: cannot sample CPU and memory (%s)", e)
            self._process = None
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and take a last sample (so a run shorter than the
        interval still has one)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=NVIDIA_SMI_TIMEOUT_S + 1)
        try:
            self.sample()
        except Exception:
            log.debug("tablewatch: last system sample failed", exc_info=True)

    def sample(self) -> None:
        if self._process is not None:
            try:
                self.run.log("system.cpu_percent", self._process.cpu_percent(None))
                self.run.log("system.memory_rss_bytes", float(self._process.memory_info().rss))
            except Exception as e:
                log.warning("tablewatch: CPU/memory sampling stopped (%s)", e)
                self._process = None
        if self.nvidia_smi:
            try:
                gpus = read_gpus(self.nvidia_smi)
            except (OSError, subprocess.SubprocessError) as e:
                log.warning("tablewatch: GPU sampling stopped: %s failed (%s)", self.nvidia_smi, e)
                self.nvidia_smi = None
                return
            for gpu in gpus:
                tags = {"gpu": str(gpu.index)}
                for metric, value in (("system.gpu.utilization_percent", gpu.utilization_percent),
                                      ("system.gpu.memory_used_bytes", gpu.memory_used_bytes),
                                      ("system.gpu.memory_total_bytes", gpu.memory_total_bytes)):
                    if value is not None:
                        self.run.log(metric, value, tags=tags)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except TablewatchError:
                return  # the run ended or the collector closed
            except Exception:
                log.exception("tablewatch: system metrics sampling failed")
                return

