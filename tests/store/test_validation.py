"""Bad input gets an error of tablewatch's own tree that names the field and
the bad value, and nothing from a valid earlier batch is lost."""

import time
from datetime import datetime, timezone

import numpy as np
import pytest

from tablewatch import TablewatchError, open_store
from tablewatch.errors import ValidationError, ValidationTypeError

T0 = float(int(time.time()) // 86400 * 86400 - 7 * 86400)  # a day boundary a week ago: inside the default 30-day points retention


@pytest.fixture
def store(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/v.db") as store:
        store.write_points("good", {"k": "v"}, [T0, T0 + 1], [1.0, 2.0])
        yield store
        # the valid batch written first is intact after every bad one
        assert store.read_points("good", {"k": "v"})["value"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "metric, tags, ts, values, kwargs, error, field",
    [
        ("", {}, [T0], [1.0], {}, ValidationError, "metric"),
        ("x" * 201, {}, [T0], [1.0], {}, ValidationError, "metric"),
        ("bad metric!", {}, [T0], [1.0], {}, ValidationError, "metric"),
        (42, {}, [T0], [1.0], {}, ValidationTypeError, "metric"),
        ("m", {"k" * 65: "v"}, [T0], [1.0], {}, ValidationError, "tag name"),
        ("m", {"k": "v" * 257}, [T0], [1.0], {}, ValidationError, "tags['k']"),
        ("m", {f"k{i}": "v" for i in range(17)}, [T0], [1.0], {}, ValidationError, "tags"),
        ("m", {"k": 3}, [T0], [1.0], {}, ValidationTypeError, "tags['k']"),
        ("m", {3: "v"}, [T0], [1.0], {}, ValidationTypeError, "tag name"),
        ("m", {3: "v", "k": "w"}, [T0], [1.0], {}, ValidationTypeError, "tag name"),
        ("m", {"k": ["unhashable"]}, [T0], [1.0], {}, ValidationTypeError, "tags['k']"),
        ("m", {"k": "a\nb"}, [T0], [1.0], {}, ValidationError, "tags['k']"),
        ("m", ["k", "v"], [T0], [1.0], {}, ValidationTypeError, "tags"),
        ("m", {}, [T0, T0 + 1], ["1.0", 2.0], {}, ValidationTypeError, "values[0]"),
        ("m", {}, [T0], [None], {}, ValidationTypeError, "values[0]"),
        ("m", {}, [T0], "1.0", {}, ValidationTypeError, "values"),
        ("m", {}, [T0, T0 + 1], [1.0], {}, ValidationError, "values"),
        ("m", {}, [T0, T0 + 1], [1.0, 2.0], {"steps": [1]}, ValidationError, "steps"),
        ("m", {}, [T0], [1.0], {"steps": [-1]}, ValidationError, "steps[0]"),
        ("m", {}, [T0], [1.0], {"steps": [1.5]}, ValidationTypeError, "steps[0]"),
        ("m", {}, [-5.0], [1.0], {}, ValidationError, "ts[0]"),
        ("m", {}, [datetime(1969, 12, 31, tzinfo=timezone.utc)], [1.0], {}, ValidationError, "ts[0]"),
        ("m", {}, [T0 * 1000], [1.0], {}, ValidationError, "ts[0]"),  # milliseconds passed as seconds
        ("m", {}, [T0, float("nan")], [1.0, 2.0], {}, ValidationError, "ts[1]"),
        ("m", {}, ["yesterday"], [1.0], {}, ValidationError, "ts[0]"),
        ("m", {}, [True], [1.0], {}, ValidationTypeError, "ts"),
        ("m", {}, [T0], [float("inf")], {}, ValidationError, "values[0]"),
        ("m", {}, [T0], np.array([[1.0]]), {}, ValidationError, "values"),
    ],
)
def test_bad_points_name_the_field(store, metric, tags, ts, values, kwargs, error, field):
    with pytest.raises(error) as raised:
        store.write_points(metric, tags, ts, values, **kwargs)
    assert isinstance(raised.value, TablewatchError)
    assert isinstance(raised.value, (ValueError, TypeError))
    assert raised.value.field == field
    assert str(raised.value).startswith(field + ":")


def test_a_bad_batch_writes_nothing(store):
    with pytest.raises(ValidationError):
        store.write_points("m", {}, [T0, T0 + 1, T0 + 2], [1.0, 2.0, float("inf")])
    assert store.read_points("m", {}).empty


@pytest.mark.parametrize(
    "run, field",
    [
        ({"pipeline": "", "task": "t", "run_id": "r", "status": "success", "started_at": T0}, "runs[0].pipeline"),
        ({"pipeline": "p", "task": "t", "run_id": "r", "status": "done", "started_at": T0}, "runs[0].status"),
        ({"pipeline": "p", "task": "t", "run_id": "r", "status": "success", "attempt": 0, "started_at": T0},
         "runs[0].attempt"),
        ({"pipeline": "p", "task": "t", "run_id": "r", "status": "success"}, "runs[0]"),
        ({"pipeline": "p", "task": "t", "status": "success", "started_at": T0}, "runs[0].run_id"),
        ({"pipeline": "p", "task": "t", "run_id": "r", "status": "success", "started_at": T0, "ended_at": T0 - 1},
         "runs[0].ended_at"),
        ({"pipeline": "p", "task": "t", "run_id": "r", "status": "success", "started_at": T0 * 1e3},
         "runs[0].started_at"),
        ({"pipeline": "p", "task": "t", "run_id": "r", "status": "success", "started_at": T0, "colour": "red"},
         "runs[0]"),
    ],
)
def test_bad_task_runs_name_the_field(store, run, field):
    good = {"pipeline": "p", "task": "t", "run_id": "ok", "status": "success", "started_at": T0}
    with pytest.raises(ValidationError) as raised:
        store.write_task_runs([good, run] if field.startswith("runs[0]") is False else [run])
    assert raised.value.field == field
    assert store.read_task_runs("p") == []  # every run is checked before any is written


def test_read_arguments_are_checked(store):
    with pytest.raises(ValidationError, match="max_points"):
        store.read_points("good", {"k": "v"}, max_points=1)
    with pytest.raises(ValidationError, match="limit"):
        store.read_task_runs(limit=0)
    with pytest.raises(ValidationError, match="every"):
        store.aggregate("good", {"k": "v"}, every=0)
    with pytest.raises(ValidationError, match="start"):
        store.read_points("good", {"k": "v"}, start="not a time")
