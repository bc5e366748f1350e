import json
import time

import numpy as np
import pytest

from tablewatch import open_store
from tablewatch.cli import main
from tablewatch.errors import StoreURLError
from tablewatch.store.backends import open_backend


def test_store_url_forms(tmp_path, monkeypatch):
    for url in (f"sqlite:///{tmp_path}/a.db", str(tmp_path / "b.db")):
        backend = open_backend(url)
        assert backend.path.is_absolute() and backend.path.exists()
        backend.close()
    monkeypatch.chdir(tmp_path)
    backend = open_backend("sqlite://rel/c.db")
    assert (tmp_path / "rel" / "c.db").exists()
    backend.close()
    monkeypatch.setenv("TABLEWATCH_STORE", f"sqlite:///{tmp_path}/env.db")
    open_store().close()
    assert (tmp_path / "env.db").exists()
    monkeypatch.delenv("TABLEWATCH_STORE")
    open_store().close()
    assert (tmp_path / "tablewatch.db").exists()


@pytest.mark.parametrize(
    "url, message",
    [
        ("cassandra://host/ks", "unknown scheme 'cassandra'; known schemes: "),
        ("sqlite://", "no file path"),
        ("://x", "scheme before '://' is empty"),
        ("sqlite:///x.db?journal=delete", "unknown option"),
        ("sqlite:///x.db?synchronous=sometimes", "synchronous must be one of"),
    ],
)
def test_bad_urls_say_what_is_wrong(url, message):
    with pytest.raises(StoreURLError, match=message.replace("(", r"\(").replace("?", r"\?")):
        open_backend(url)


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(StoreURLError) as raised:
        open_backend("cassandra://x")
    assert "sqlite" in str(raised.value)


def test_store_info_and_hotspots(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/cli.db"
    with open_store(url, salt_buckets=8, retention_s={"points": 7 * 86400}) as store:
        hour_start = (time.time() // 3600 - 10) * 3600  # recent: inside the 7-day retention
        store.write_points("m", {}, hour_start + np.arange(8 * 3600.0), np.ones(8 * 3600))
    assert main(["store", "info", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "salt buckets   8" in out
    assert "tw_points" in out and "max age=7d" in out
    assert main(["store", "info", "--store", url, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    points = next(t for t in info["tables"] if t["name"] == "tw_points")
    assert points["rows"] == 8 and points["families"]["p"]["max_age_s"] == 7 * 86400
    assert main(["store", "hotspots", "--store", url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["points"] == [3600] * 8 and report["skew"] == 1.0
    assert main(["store", "hotspots", "--store", url]) == 0
    assert "overall skew: 1.00" in capsys.readouterr().out


def test_cli_reports_errors_without_traceback(capsys):
    assert main(["store", "info", "--store", "nope://x"]) == 2
    assert "unknown scheme 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "config, field",
    [
        ({"salt_buckets": 0}, "salt_buckets"),
        ({"bucket_seconds": 7}, "bucket_seconds"),
        ({"retention_s": {"pointz": 60}}, "retention_s"),
        ({"retention_s": {"points": -1}}, "retention_s['points']"),
        ({"retention_s": 3600}, "retention_s"),
        ({"salt_bucket": 8}, "salt_bucket"),
    ],
)
def test_bad_store_options_name_the_option_and_create_nothing(tmp_path, config, field):
    from tablewatch.errors import ValidationError

    with pytest.raises(ValidationError) as raised:
        open_store(f"sqlite:///{tmp_path}/never.db", **config)
    assert raised.value.field == field
    assert not (tmp_path / "never.db").exists()


def test_writers_do_not_import_pandas(tmp_path):
    """A training job or `tablewatch push` only writes: it should not pay pandas' import time."""
    import subprocess
    import sys

    script = (
        "import sys, tablewatch\n"
        f"with tablewatch.Collector({str(tmp_path / 'w.db')!r}) as c:\n"
        "    c.log('m', 1.0)\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["server", "--port", "99999"], "--port: must be a port number from 0 to 65535"),
        (["gateway", "hbase-thrift", "--port", "-1"], "--port: must be a port number from 0 to 65535"),
        (["server", "--max-items", "0"], "--max-items: must be a whole number >= 1"),
    ],
)
def test_bad_command_line_numbers_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
