"""Retention tells the truth: a new store keeps what the README says, never
expires a training run's curves, and retention can be changed on an existing
store on every backend (HBase: the exact shell commands, since Thrift v1
cannot alter a table)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tablewatch import open_store
from tablewatch.cli import main
from tablewatch.errors import StoreError, ValidationError
from tablewatch.store.timeseries import DEFAULT_RETENTION_S, points_family

DAY = 86400
NOW = time.time()


def test_points_family_by_run_tag():
    assert points_family("train.loss", {"run": "r1", "model": "m"}) == "r"
    assert points_family("serve.latency_ms", {"route": "/predict"}) == "p"


def test_a_new_store_keeps_what_the_readme_says_and_never_expires_a_run(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/r.db"
    with open_store(url) as store:
        assert store.retention() == {"points": 30 * DAY, "run_points": None, "tasks": 90 * DAY, "runs": None,
                                     "sketches": 400 * DAY} == dict(DEFAULT_RETENTION_S)
        old = NOW - 45 * DAY + np.arange(100.0)
        store.write_points("serve.latency_ms", {"route": "/a"}, old, np.ones(100))
        store.write_points("train.loss", {"run": "r1"}, old, np.ones(100))
        store.write_points("serve.latency_ms", {"route": "/a"}, [NOW - 60], [2.0])
        assert store.read_arrays("serve.latency_ms", {"route": "/a"})[1].tolist() == [2.0]  # 45 days old: expired
        assert len(store.read_arrays("train.loss", {"run": "r1"})[0]) == 100  # a run's curve: kept
        assert store.compact() >= 1  # the expired chunk is removed for good
        assert store.read_arrays("serve.latency_ms", {"route": "/a"})[1].tolist() == [2.0]
        assert len(store.read_arrays("train.loss", {"run": "r1"})[0]) == 100
    assert main(["store", "info", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "points           30d" in out and "run_points   forever" in out and "tasks            90d" in out
    assert "p (versions=1, max age=30d), r (versions=1, max age=forever)" in out


def test_retention_is_changed_on_an_existing_store(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/r.db"
    with open_store(url) as store:
        store.write_points("lat", {}, [NOW - 3 * DAY, NOW - 60], [1.0, 2.0])
        store.write_task_runs([{"pipeline": "p", "task": "t", "run_id": "x", "status": "success",
                                "started_at": NOW - 5 * DAY, "ended_at": NOW - 5 * DAY + 1}])
    assert main(["store", "retention", "--store", url, "--set", "points=1d", "--set", "tasks=2d"]) == 0
    out = capsys.readouterr().out
    assert "points            1d" in out and "tasks             2d" in out
    with open_store(url, create=False) as store:  # another process sees it when it opens the store
        assert store.retention()["points"] == DAY and store.retention()["tasks"] == 2 * DAY
        assert store.read_arrays("lat")[1].tolist() == [2.0]
        assert store.read_task_runs("p", "t") == []
        assert store.compact() >= 2
        store.set_retention({"points": None})
        assert store.retention()["points"] is None
    assert main(["store", "retention", "--store", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["points"] is None
    assert main(["store", "retention", "--store", url, "--set", "pointz=1d"]) == 2
    assert "must be KIND=AGE" in capsys.readouterr().err
    with open_store(url) as store, pytest.raises(ValidationError, match=r"retention_s\['points'\]"):
        store.set_retention({"points": -5})


def test_bigtable_retention_becomes_gc_rules_read_back_from_the_admin_api(shared_emulator):
    url = shared_emulator.url("t" + str(time.time_ns())[-9:] + "_")
    with open_store(url) as store:
        store.set_retention({"points": 7 * DAY, "run_points": 365 * DAY})
    with open_store(url, create=False) as store:  # a new client: policies come from Bigtable
        families = store.backend.table_info("tw_points").families
        assert families["p"].max_age_s == 7 * DAY and families["r"].max_age_s == 365 * DAY
        assert store.backend.table_info("tw_series").families["days"].max_age_s == 365 * DAY
        assert store.retention()["points"] == 7 * DAY


def test_hbase_retention_is_refused_with_the_alter_commands(tmp_path):
    from tablewatch.gateway.hbase_thrift import HBaseThriftGateway

    with HBaseThriftGateway(f"sqlite:///{tmp_path}/gw.db", port=0) as gateway:
        url = f"hbase://127.0.0.1:{gateway.port}?table_prefix=tw&timeout_s=10"
        with open_store(url) as store:
            with pytest.raises(StoreError) as raised:
                store.set_retention({"points": 7 * DAY})
            assert store.retention()["points"] == 30 * DAY  # nothing changed
            points, series = (store.backend.full_table_name(t) for t in ("tw_points", "tw_series"))
    assert points.startswith("tw") and points.endswith("tw_points") and points != "tw_points"
    message = str(raised.value)
    assert "cannot change" in message
    assert f"alter '{points}', {{NAME => 'p', VERSIONS => 1, TTL => 604800}}" in message
    assert f"alter '{series}', {{NAME => 'days', VERSIONS => 1, TTL => 2147483647}}" in message


def test_a_store_made_before_run_points_had_their_own_family_keeps_working(tmp_path):
    from tablewatch.store.backends import open_backend
    from tablewatch.store.table import GCPolicy

    url = f"sqlite:///{tmp_path}/old.db"
    backend = open_backend(url)  # tw_points as tablewatch created it before: one family
    backend.create_table("tw_points", {"p": GCPolicy(max_versions=1, max_age_s=30 * DAY)})
    backend.close()
    with open_store(url) as store:
        store.write_points("train.loss", {"run": "r1"}, [NOW - 60], [1.0])  # goes to p: there is no r
        held = store.series_ref("train.loss", {"run": "r1"})  # a writer's handle, kept across the change
        assert store.retention()["run_points"] == 30 * DAY  # follows points, and says so in store info
        assert store.info()["run_points_family"] is False
        store.set_retention({"run_points": None})  # adds the family
        assert store.info()["run_points_family"] is True
        store.write_points("train.loss", {"run": "r1"}, [NOW - 30], [2.0])  # now in r
        store.write_series_points([held], [1], [NOW - 20], [3.0])  # in r too: the handle holds no family
        assert store.read_arrays("train.loss", {"run": "r1"})[1].tolist() == [1.0, 2.0, 3.0]  # reads cover both
        assert set(store.backend.table_info("tw_points").families) == {"p", "r"}
        assert sum(len(row.cells.get("r", {})) for row in store.backend.table("tw_points").scan(columns=["r"])) == 2
