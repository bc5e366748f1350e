"""Task timing and retries: ``collector.task()`` and ``collector.track()``."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time

import pytest

from tablewatch.errors import ValidationError, ValidationTypeError

HERE = __file__


def by_attempt(runs):
    return sorted(runs, key=lambda r: (r.run_id, r.attempt))


def values(store, metric, **tags):
    return store.read_points(metric, tags)["value"].tolist()


class Flaky:
    """Fails ``failures`` times, then returns "ok"."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.raise_line = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            self.raise_line = inspect.currentframe().f_lineno + 1
            raise self.error(f"failure {self.calls}")
        return "ok"


def test_fails_twice_then_succeeds_three_attempts_two_retries(store, collector):
    flaky = Flaky(2)
    tracked = collector.track(flaky, pipeline="nightly-etl", task="extract", retries=3, backoff=0.001)
    assert tracked() == "ok"
    collector.flush()
    runs = by_attempt(store.read_task_runs("nightly-etl", "extract"))
    assert [(r.attempt, r.status) for r in runs] == [(1, "retry"), (2, "retry"), (3, "success")]
    assert len({r.run_id for r in runs}) == 1  # one call: its attempts share a run_id
    for r in runs[:2]:
        assert r.error_type == "ConnectionError" and r.error_message.startswith("failure ")
        assert r.error_location == f"{HERE}:{flaky.raise_line}"  # where it was raised, not the wrapper
    assert runs[2].error_type is None and runs[2].error_location is None
    assert all(r.duration_s is not None and r.duration_s >= 0 and r.host for r in runs)
    assert values(store, "task.retries", pipeline="nightly-etl", task="extract") == [2.0]
    assert len(values(store, "task.duration_s", pipeline="nightly-etl", task="extract")) == 3


def test_retries_exhausted_reraises_and_records_failure(store, collector):
    flaky = Flaky(10, TimeoutError)

    @collector.track(pipeline="p", retries=2, backoff=0)
    def fetch():
        return flaky()

    with pytest.raises(TimeoutError, match="failure 3"):
        fetch()
    collector.flush()
    runs = by_attempt(store.read_task_runs("p", fetch.__qualname__))
    assert [(r.attempt, r.status) for r in runs] == [(1, "retry"), (2, "retry"), (3, "failure")]
    assert values(store, "task.retries", pipeline="p", task=fetch.__qualname__) == [2.0]


def test_exceptions_outside_retry_on_are_not_retried(store, collector):
    flaky = Flaky(1, KeyError)
    tracked = collector.track(flaky, pipeline="p", task="t", retries=5, retry_on=(ConnectionError,), backoff=0)
    with pytest.raises(KeyError):
        tracked()
    assert flaky.calls == 1
    collector.flush()
    [run] = store.read_task_runs("p", "t")
    assert run.status == "failure" and run.attempt == 1 and run.error_type == "KeyError"


def test_backoff_is_exponential_and_capped(collector):
    flaky = Flaky(3)
    tracked = collector.track(flaky, pipeline="p", task="t", retries=3, backoff=0.04, max_backoff=0.06)
    started = time.monotonic()
    tracked()
    elapsed = time.monotonic() - started
    assert 0.04 + 0.06 + 0.06 <= elapsed < 2.0  # 0.04, then 0.08 and 0.16 capped at 0.06
    waits = []
    tracked = collector.track(Flaky(2), pipeline="p", task="t2", retries=2,
                              backoff=lambda n: waits.append(n) or 0.0)
    tracked()
    assert waits == [1, 2]


def test_async_function_retried_with_asyncio_sleep(store, collector):
    calls = []

    @collector.track(pipeline="serving", task="warmup", retries=2, backoff=0.01)
    async def warmup(x):
        calls.append(x)
        await asyncio.sleep(0)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return x * 2

    assert asyncio.iscoroutinefunction(warmup)

    async def main():
        ticks = 0

        async def ticker():  # proves the backoff does not block the event loop
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        tick_task = asyncio.create_task(ticker())
        result = await warmup(21)
        tick_task.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result == 42 and ticks >= 3
    collector.flush()
    runs = by_attempt(store.read_task_runs("serving", "warmup"))
    assert [(r.attempt, r.status) for r in runs] == [(1, "retry"), (2, "retry"), (3, "success")]
    assert values(store, "task.retries", pipeline="serving", task="warmup") == [2.0]


def test_cancelled_async_attempt_is_revoked(store, collector):
    @collector.track(pipeline="serving", task="slow")
    async def slow():
        await asyncio.sleep(10)

    async def main():
        task = asyncio.create_task(slow())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    collector.flush()
    [run] = store.read_task_runs("serving", "slow")
    assert run.status == "revoked"


def test_task_context_manager_success_failure_and_retry(store, collector):
    with collector.task("etl", "load", run_id="nightly-1", queued_at=time.time() - 5) as attempt:
        time.sleep(0.01)
    assert attempt.result.status == "success" and attempt.result.duration_s >= 0.01
    assert attempt.result.queue_wait_s >= 4.9
    with pytest.raises(ValueError):
        with collector.task("etl", "load", run_id="nightly-2") as attempt:
            line = inspect.currentframe().f_lineno + 1
            raise ValueError("bad row")
    with pytest.raises(OSError):
        with collector.task("etl", "load", run_id="nightly-3") as attempt:
            attempt.mark_retry()
            raise OSError("try again")
    with collector.task("etl", "load", run_id="nightly-3", attempt=2):
        pass
    collector.flush()
    runs = {(r.run_id, r.attempt): r for r in store.read_task_runs("etl", "load")}
    assert runs[("nightly-1", 1)].status == "success"
    failed = runs[("nightly-2", 1)]
    assert failed.status == "failure" and failed.error_message == "bad row"
    assert failed.error_location == f"{HERE}:{line}"
    assert runs[("nightly-3", 1)].status == "retry" and runs[("nightly-3", 2)].status == "success"
    # task.retries: one point per finished call (not for the retry attempt): 0, 0, 1
    assert sorted(values(store, "task.retries", pipeline="etl", task="load")) == [0.0, 0.0, 1.0]


def test_task_as_decorator_is_reentrant(store, collector):
    @collector.task("math", "fact")
    def fact(n):
        time.sleep(0.005)
        return 1 if n <= 1 else n * fact(n - 1)

    assert fact(4) == 24
    collector.flush()
    runs = sorted(store.read_task_runs("math", "fact"), key=lambda r: r.duration_s)
    assert len(runs) == 4 and len({r.run_id for r in runs}) == 4  # a fresh attempt per call
    assert all(r.status == "success" for r in runs)
    # nested: each outer call lasts longer than the call it made
    assert all(a.duration_s < b.duration_s for a, b in zip(runs, runs[1:]))
    assert all(b.started_at <= a.started_at for a, b in zip(runs, runs[1:]))


def test_one_timer_shared_by_threads_and_asyncio_tasks(store, collector):
    timer = collector.task("shared", "sleep")

    @timer
    def nap(seconds):
        time.sleep(seconds)

    threads = [threading.Thread(target=nap, args=(0.01 * (k % 4 + 1),)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def async_nap(seconds):
        async with timer:
            await asyncio.sleep(seconds)

    async def main():
        await asyncio.gather(*(async_nap(s) for s in (0.05, 0.01, 0.03)))

    asyncio.run(main())
    collector.flush()
    runs = store.read_task_runs("shared", "sleep")
    assert len(runs) == 19 and all(r.status == "success" for r in runs)
    durations = sorted(r.duration_s for r in runs)
    assert durations[0] >= 0.01 and durations[-1] < 1.0
    # each async attempt measured its own sleep, though they overlapped on one timer
    async_runs = sorted(runs, key=lambda r: r.started_at)[-3:]
    for run, slept in zip(sorted(async_runs, key=lambda r: r.duration_s), (0.01, 0.03, 0.05)):
        assert slept <= run.duration_s < slept + 0.5


def test_task_metrics_never_take_the_runs_tags(store, collector):
    with collector.run("training"):
        with collector.task("train", "epoch"):
            pass
    collector.flush()
    assert [s.tags for s in store.find_series("task.duration_s")] == [{"pipeline": "train", "task": "epoch"}]


@pytest.mark.parametrize(
    "make, error, field",
    [
        (lambda c: c.task("", "t"), ValidationError, "pipeline"),
        (lambda c: c.task("p", 3), ValidationTypeError, "task"),
        (lambda c: c.task("p", "t", attempt=0), ValidationError, "attempt"),
        (lambda c: c.task("p", "t", queued_at="soon"), ValidationError, "queued_at"),
        (lambda c: c.track(pipeline="p", retries=-1), ValidationError, "retries"),
        (lambda c: c.track(pipeline="p", retry_on="ConnectionError"), ValidationTypeError, "retry_on"),
        (lambda c: c.track(pipeline="p", backoff=-1), ValidationError, "backoff"),
        (lambda c: c.track(pipeline="p", tags={"k": 1}), ValidationTypeError, "tags['k']"),
    ],
)
def test_arguments_are_checked_up_front(collector, make, error, field):
    with pytest.raises(error) as raised:
        make(collector)
    assert raised.value.field == field
