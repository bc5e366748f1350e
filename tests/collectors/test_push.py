"""``tablewatch push`` (to a store and to a server) and ``tablewatch server``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx
import pytest

from tablewatch.cli import main
from tablewatch.collectors.server import create_app, serve_in_thread
from tablewatch.store import open_store

T0 = float(int(time.time()) // 86400 * 86400 - 2 * 86400)  # a midnight two days ago: within the points' retention


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path}/push.db"


def test_push_to_a_store(store_url, capsys):
    assert main(["push", "etl.rows", "1250", "--tag", "pipeline=nightly", "--tag", "task=load",
                 "--ts", str(T0), "--step", "3", "--store", store_url]) == 0
    assert main(["push", "etl.rows", "-7.5", "--tag", "pipeline=nightly", "--tag", "task=load",
                 "--ts", _iso(T0 + 10), "--store", store_url]) == 0
    with open_store(store_url) as store:
        frame = store.read_points("etl.rows", {"pipeline": "nightly", "task": "load"})
    assert frame["value"].tolist() == [1250.0, -7.5]
    assert frame["step"].iloc[0] == 3 and frame["step"].isna().iloc[1]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("args, field", [
    (["m", "abc"], "value"),
    (["m", "inf"], "value"),
    (["m", "1", "--tag", "novalue"], "tag"),
    (["m", "1", "--tag", "a=1", "--tag", "a=2"], "tag"),
    (["m", "1", "--tag", "bad key=1"], "tag name"),
    (["m", "1", "--step", "1.5"], "step"),
    (["m", "1", "--step", "-1"], "step"),
    (["m", "1", "--ts", "yesterday"], "ts"),
    (["m", "1", "--ts", str(T0 * 1000)], "ts"),
    (["bad metric", "1"], "metric"),
])
def test_bad_input_exits_2_naming_the_field(store_url, capsys, args, field):
    assert main(["push", *args, "--store", store_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tablewatch push: error: {field}:"), err


def test_push_to_a_server(store_url, capsys, monkeypatch):
    with open_store(store_url) as store:
        with serve_in_thread(create_app(store, token="tok")) as url:
            assert main(["push", "shell.m", "42", "--tag", "job=backup", "--ts", str(T0),
                         "--server", url, "--token", "tok"]) == 0
            assert main(["push", "shell.m", "1", "--server", url, "--token", "wrong"]) == 3  # unauthorized has its own exit code
            assert "401" in capsys.readouterr().err
            monkeypatch.setenv("TABLEWATCH_INGEST_TOKEN", "tok")
            assert main(["push", "shell.m", "43", "--tag", "job=backup", "--ts", str(T0 + 1),
                         "--server", url]) == 0
        assert store.read_points("shell.m", {"job": "backup"})["value"].tolist() == [42.0, 43.0]


def test_push_to_a_server_that_is_not_there_exits_1(capsys):
    port = _free_port()
    assert main(["push", "m", "1", "--server", f"http://127.0.0.1:{port}"]) == 1
    assert "cannot be reached" in capsys.readouterr().err


def test_store_and_server_are_exclusive(store_url):
    with pytest.raises(SystemExit) as exit_info:
        main(["push", "m", "1", "--store", store_url, "--server", "http://127.0.0.1:1"])
    assert exit_info.value.code == 2


def test_the_server_command_serves_the_ingest_api(tmp_path):
    """`tablewatch server` as a user runs it, and `tablewatch push` to it, as processes."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    store_url = f"sqlite:///{tmp_path}/served.db"
    env = {**os.environ, "TABLEWATCH_INGEST_TOKEN": "tok"}
    server = subprocess.Popen(
        [sys.executable, "-m", "tablewatch.cli", "server", "--store", store_url, "--port", str(port),
         "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        pushed = subprocess.run(
            [sys.executable, "-m", "tablewatch.cli", "push", "cron.ok", "1", "--ts", str(T0), "--server", url],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert pushed.returncode == 0, pushed.stderr
        refused = subprocess.run(
            [sys.executable, "-m", "tablewatch.cli", "push", "cron.ok", "x", "--server", url],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert refused.returncode == 2 and "value:" in refused.stderr
    finally:
        server.terminate()
        server.wait(30)
    with open_store(store_url) as store:
        assert store.read_points("cron.ok")["value"].tolist() == [1.0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
