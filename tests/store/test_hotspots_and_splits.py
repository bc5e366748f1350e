"""`store hotspots` explains its skew per time window, and `store info` shows
the splits requested at creation beside those the backend reports."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tablewatch import open_store
from tablewatch.cli import main

HOUR = 3600
WINDOW = 16 * HOUR
START = (int(time.time()) // WINDOW - 3) * WINDOW  # a whole window, 2-3 windows ago


def test_one_hour_of_one_series_is_one_salt_bucket_by_design(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/h.db"
    with open_store(url) as store:
        store.write_points("one.hour", {}, START + np.arange(3600.0), np.ones(3600))
        report = store.hotspots()
    assert report["skew"] == 16.0 and report["window_s"] == WINDOW
    assert report["windows"] == [{"start": START, "end": START + WINDOW, "series": 1, "points": 3600, "skew": 16.0}]
    assert main(["store", "hotspots", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "overall skew: 16.00" in out
    assert "1.00 is even, 16.00 is everything in one bucket" in out
    assert "one time bucket of one series lands in one salt bucket" in out


def test_a_full_window_of_one_series_is_even_and_a_burst_shows_in_its_window(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/w.db"
    with open_store(url) as store:
        store.write_points("steady", {}, START + np.arange(0, WINDOW, 60.0), np.ones(WINDOW // 60))
        store.write_points("burst", {}, START + WINDOW + np.arange(600.0), np.ones(600))  # next window: 10 min
        report = store.hotspots()
    first, second = report["windows"]
    assert (first["points"], first["skew"]) == (WINDOW // 60, 1.0)  # the salt moved on every hour: even
    assert (second["points"], second["skew"]) == (600, 16.0)
    assert 1.0 < report["skew"] < 16.0
    assert main(["store", "hotspots", "--json", "--store", url]) == 0
    assert [w["skew"] for w in json.loads(capsys.readouterr().out)["windows"]] == [1.0, 16.0]


def test_bigtable_info_shows_requested_and_reported_splits(shared_emulator, capsys):
    url = shared_emulator.url("s" + str(time.time_ns())[-9:] + "_")
    open_store(url, salt_buckets=8).close()
    with open_store(url, create=False) as store:
        tables = {t["name"]: t for t in store.info()["tables"]}
    assert tables["tw_points"]["splits_requested"] == 8 and tables["tw_meta"]["splits_requested"] == 1
    assert tables["tw_points"]["splits"] == 1  # what the emulator's SampleRowKeys reports
    assert main(["store", "info", "--store", url]) == 0
    out = capsys.readouterr().out
    points_line = next(line for line in out.splitlines() if line.startswith("tw_points"))
    assert "1 of 8" in points_line
    assert "emulator keeps each table in one piece" in out
