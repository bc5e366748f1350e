import pytest

from tablewatch.dashboard.selection import RANGES, Selection, format_time, parse_params
from tablewatch.errors import ValidationError


def test_parameters_of_the_interface_round_trip():
    params = {"pipeline": "nightly-etl", "task": "extract", "start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z"}
    sel = parse_params(params)
    assert (sel.pipeline, sel.task) == ("nightly-etl", "extract")
    assert sel.window(now=0) == (1795132800.0, 1795219200.0)
    assert sel.to_params() == params
    assert parse_params(sel.to_params()) == sel


def test_epoch_seconds_and_runs_repeated_or_comma_separated():
    sel = parse_params({"start": "1795132800", "end": "1795219200.5", "run": ["a,b", "c", "a"]})
    assert sel.start == 1795132800.0 and sel.end == 1795219200.5
    assert sel.runs == ("a", "b", "c")
    assert sel.to_params()["run"] == "a,b,c"


def test_range_ends_now_and_is_ignored_when_start_or_end_is_given():
    assert parse_params({"range": "7d"}).window(now=1_000_000.0) == (1_000_000.0 - RANGES["7d"], 1_000_000.0)
    sel = parse_params({"range": "7d", "end": "1000"})
    assert sel.window(now=5_000_000.0) == (1000.0 - RANGES["7d"], 1000.0)
    assert Selection().to_params() == {}
    assert Selection(range="30d").to_params() == {"range": "30d"}


@pytest.mark.parametrize("params, field", [
    ({"range": "2d"}, "range"),
    ({"start": "yesterday"}, "start"),
    ({"start": "2026-11-21T00:00:00Z", "end": "2026-11-20T00:00:00Z"}, "end"),
    ({"end": "1795219200000"}, "end"),  # milliseconds are refused
    ({"model": "x" * 300}, "model"),
])
def test_bad_parameters_name_the_parameter(params, field):
    with pytest.raises(ValidationError) as caught:
        parse_params(params)
    assert caught.value.field == field


def test_format_time_is_iso_utc():
    assert format_time(1795132800) == "2026-11-20T00:00:00Z"
