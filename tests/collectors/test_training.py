"""Training runs: records at start and end, run tags on points (contextvars),
system metrics, and nvidia-smi's output read from a real (fake) executable."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading

import pytest

from tablewatch.collectors.training import GpuSample, SystemSampler, parse_nvidia_smi
from tablewatch.errors import TablewatchError, ValidationError

MIB = 1024 * 1024


def run_tags(run):
    return {"run": run.run_id, "run_name": run.name}


def test_run_is_recorded_running_then_success_with_last_values(store, collector):
    with collector.run("resnet", params={"lr": 0.1, "layers": 50, "path": os.path}, tags={"team": "vision"}) as run:
        collector.flush()
        [started] = store.read_training_runs("resnet")
        assert started.status == "running" and started.ended_at is None
        assert started.params["lr"] == 0.1 and started.params["layers"] == 50
        assert started.params["path"].startswith("<module")  # kept as its text
        for step in range(100):
            collector.log("train.loss", 1.0 / (step + 1), step=step)
        run.log("val.acc", 0.5, step=50)
        run.log("val.acc", 0.75, step=99)
    collector.flush()
    [done] = store.read_training_runs("resnet")
    assert done.run_id == run.run_id and done.status == "success" and done.error is None
    assert done.tags == {"team": "vision"} and done.host
    assert done.metrics == {"train.loss": 0.01, "val.acc": 0.75}
    assert done.ended_at >= done.started_at
    assert len(store.read_points("train.loss", run_tags(run))) == 100


def test_summary_replaces_the_last_values(store, collector):
    with collector.run("summarised") as run:
        collector.log("train.loss", 0.3)
        run.summary({"best.acc": 0.9})
        run.summary({"best.f1": 0.8})
    collector.flush()
    [done] = store.read_training_runs("summarised")
    assert done.metrics == {"best.acc": 0.9, "best.f1": 0.8}


def test_failed_run_records_the_error_and_reraises(store, collector):
    with pytest.raises(ZeroDivisionError):
        with collector.run("broken") as run:
            collector.log("train.loss", 1.0, step=0)
            1 / 0
    collector.flush()
    [done] = store.read_training_runs("broken")
    assert done.status == "failure" and done.error == "ZeroDivisionError: division by zero"
    assert done.metrics == {"train.loss": 1.0}
    assert run.record.status == "failure"


def test_interrupted_run_is_recorded_killed(store, collector):
    with pytest.raises(KeyboardInterrupt):
        with collector.run("interrupted"):
            raise KeyboardInterrupt
    collector.flush()
    assert store.read_training_runs("interrupted")[0].status == "killed"


def test_points_inside_a_run_carry_its_tags_and_only_there(store, collector):
    collector.log("m", 1.0)
    seen_in_thread = threading.Event()
    with collector.run("tagged") as run:
        collector.log("m", 2.0)
        collector.log("m", 3.0, tags={"split": "val"})
        collector.log_many({"m": 4.0})

        def other_thread():
            collector.log("m", 5.0)  # another thread: not in the run's context
            run.log("m", 6.0)  # explicitly to the run: tagged
            seen_in_thread.set()

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
    collector.log("m", 7.0)
    collector.flush()
    assert seen_in_thread.is_set()
    assert sorted(store.read_points("m")["value"]) == [1.0, 5.0, 7.0]
    assert sorted(store.read_points("m", run_tags(run))["value"]) == [2.0, 4.0, 6.0]
    assert store.read_points("m", {**run_tags(run), "split": "val"})["value"].tolist() == [3.0]
    assert [s.tags for s in store.find_series("m", run_name="tagged", split=True)] == [
        {"run": run.run_id, "run_name": "tagged", "split": "val"}
    ]
    with pytest.raises(TablewatchError, match="has ended"):
        run.log("m", 8.0)


def test_concurrent_runs_in_asyncio_tasks_keep_their_own_tags(store, collector):
    async def job(name: str, n: int) -> str:
        with collector.run(name) as run:
            for i in range(n):
                collector.log("loss", float(i), step=i)
                await asyncio.sleep(0)  # interleave with the other job
        return run.run_id

    async def main():
        return await asyncio.gather(job("a", 30), job("b", 20))

    id_a, id_b = asyncio.run(main())
    collector.flush()
    assert len(store.read_points("loss", {"run": id_a, "run_name": "a"})) == 30
    assert len(store.read_points("loss", {"run": id_b, "run_name": "b"})) == 20
    assert all(series.tags for series in store.find_series("loss"))  # no untagged loss series


def test_a_task_outliving_its_run_logs_untagged(store, collector):
    async def main():
        release = asyncio.Event()

        async def straggler():
            await release.wait()
            collector.log("late", 1.0)  # its context still names the run, which has ended

        with collector.run("short") as run:
            task = asyncio.create_task(straggler())
            await asyncio.sleep(0)
        release.set()
        await task
        return run

    run = asyncio.run(main())
    collector.flush()
    assert store.read_points("late")["value"].tolist() == [1.0]
    assert store.read_points("late", run_tags(run)).empty


def test_run_arguments_are_checked(collector):
    with pytest.raises(ValidationError) as raised:
        collector.run("")
    assert raised.value.field == "run.name"
    with pytest.raises(ValidationError) as raised:
        collector.run("x", system_metrics_interval=0)
    assert raised.value.field == "system_metrics_interval"
    with collector.run("x") as run:
        with pytest.raises(ValidationError) as raised:
            run.summary({"acc": "high"})
        assert raised.value.field == "metrics['acc']"


NVIDIA_SMI_OUTPUT = """0, 37, 1024, 16384
1, [N/A], 2048, [Not Supported]
garbage line
"""


def test_parse_nvidia_smi():
    assert parse_nvidia_smi(NVIDIA_SMI_OUTPUT) == [
        GpuSample(0, 37.0, 1024.0 * MIB, 16384.0 * MIB),
        GpuSample(1, None, 2048.0 * MIB, None),
    ]
    assert parse_nvidia_smi("") == []


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """An executable ``nvidia-smi`` on PATH that checks its arguments and prints
    what the real one prints for --format=csv,noheader,nounits."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'test "$1" = "--query-gpu=index,utilization.gpu,memory.used,memory.total" || exit 3\n'
        'test "$2" = "--format=csv,noheader,nounits" || exit 4\n'
        f"printf '{NVIDIA_SMI_OUTPUT.replace(chr(10), chr(92) + 'n')}'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def test_system_metrics_with_a_gpu(store, collector, fake_nvidia_smi):
    with collector.run("gpu-job", system_metrics_interval=0.02) as run:
        sum(i * i for i in range(200_000))
        threading.Event().wait(0.1)
    collector.flush()
    tags = run_tags(run)
    assert len(store.read_points("system.cpu_percent", tags)) >= 2
    rss = store.read_points("system.memory_rss_bytes", tags)["value"]
    assert (rss > 10 * MIB).all()
    gpu0 = {**tags, "gpu": "0"}
    assert set(store.read_points("system.gpu.utilization_percent", gpu0)["value"]) == {37.0}
    assert set(store.read_points("system.gpu.memory_used_bytes", gpu0)["value"]) == {1024.0 * MIB}
    assert set(store.read_points("system.gpu.memory_total_bytes", gpu0)["value"]) == {16384.0 * MIB}
    gpu1 = {**tags, "gpu": "1"}
    assert store.read_points("system.gpu.utilization_percent", gpu1).empty  # [N/A] is not a zero
    assert set(store.read_points("system.gpu.memory_used_bytes", gpu1)["value"]) == {2048.0 * MIB}
    [done] = store.read_training_runs("gpu-job")
    assert not any(m.startswith("system.") for m in done.metrics)


def test_a_failing_nvidia_smi_is_logged_once_and_sampling_goes_on(store, collector, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="tablewatch")
    broken = tmp_path / "nvidia-smi"
    broken.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    broken.chmod(0o755)
    with collector.run("no-gpu") as run:
        sampler = SystemSampler(run, 0.01, nvidia_smi=str(broken))
        sampler.start()
        threading.Event().wait(0.1)
        sampler.stop()
    collector.flush()
    assert len(store.read_points("system.cpu_percent", run_tags(run))) >= 2
    failures = [r for r in caplog.records if "GPU sampling stopped" in r.getMessage()]
    assert len(failures) == 1
