"""The command line's fit and finish (pipes, --version, a light start, push
and server options) and light installs (a missing extra is named), each run
in a real subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tablewatch import __version__
from tablewatch.cli import main
from tablewatch.collectors.server import create_app, serve_in_thread
from tablewatch.store import open_store

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "pandas", "starlette", "orjson")
TOKEN = "s3cret"


def run_python(code: str, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env={**os.environ, **(env or {})})


def tablewatch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_python("import sys; from tablewatch.cli import main; sys.exit(main(sys.argv[1:]))", *args, env=env)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("push") / "store.db"
    with open_store(f"sqlite:///{path}", retention_s={"points": None}) as store:
        with serve_in_thread(create_app(store, TOKEN)) as url:
            yield url, store


# -- a light start --------------------------------------------------------------------------

LIGHT = """
import sys
from tablewatch.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print("HEAVY", ",".join(heavy), file=sys.stderr)
sys.exit(code)
""" % (HEAVY,)


def test_help_and_push_to_a_server_load_neither_numpy_nor_pandas(server):
    url, store = server
    helped = run_python(LIGHT, "--help")
    assert helped.returncode == 0 and "push" in helped.stdout
    assert "HEAVY \n" in helped.stderr, helped.stderr
    pushed = run_python(LIGHT, "push", "light.m", "1.5", "--ts", "1780000000", "--server", url, "--token", TOKEN)
    assert pushed.returncode == 0, pushed.stderr
    assert "HEAVY \n" in pushed.stderr, pushed.stderr
    assert store.read_arrays("light.m")[1].tolist() == [1.5]


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"tablewatch {__version__}"


def test_no_broken_pipe_traceback_when_the_reader_goes_away(tmp_path):
    store = f"sqlite:///{tmp_path}/tw.db"
    open_store(store).close()
    reader_gone = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tablewatch.cli import main; sys.exit(main(sys.argv[1:]))",
         "store", "info", "--json", "--store", store],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    reader_gone.stdout.close()  # like `| head -1` having exited before the first write
    _, stderr = reader_gone.communicate(timeout=60)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()
    assert reader_gone.returncode == 141


# -- push ------------------------------------------------------------------------------------


def test_push_understands_a_server_without_scheme_or_with_the_points_path(server):
    url, store = server
    host_port = url.removeprefix("http://")
    for i, given in enumerate([host_port, url + "/api/v1/points", url + "/"]):
        assert main(["push", "forms.m", str(i), "--ts", str(1780000000 + i), "--server", given, "--token", TOKEN]) == 0
    assert store.read_arrays("forms.m")[1].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("given", ["ftp://127.0.0.1:8080", "http://127.0.0.1:99999", "http://127.0.0.1:8080/api/v1"])
def test_push_refuses_a_bad_server_as_bad_input(given, capsys):
    assert main(["push", "m", "1", "--server", given]) == 2
    assert "server" in capsys.readouterr().err


def test_push_reports_a_401_as_unauthorized_with_its_own_exit_code(server, capsys, monkeypatch):
    url, _ = server
    monkeypatch.delenv("TABLEWATCH_INGEST_TOKEN", raising=False)
    assert main(["push", "m", "1", "--server", url, "--token", "wrong"]) == 3
    assert "unauthorized" in capsys.readouterr().err


def test_push_refuses_a_token_with_a_store(tmp_path, capsys):
    assert main(["push", "m", "1", "--store", f"sqlite:///{tmp_path}/tw.db", "--token", "t"]) == 2
    err = capsys.readouterr().err
    assert "token" in err and "--server" in err
    assert not (tmp_path / "tw.db").exists()


# -- server ------------------------------------------------------------------------------------


def test_server_help_shows_its_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["server", "--help"])
    out = capsys.readouterr().out
    for default in ("default: 127.0.0.1", "default: 8080", "default: 16777216", "default: 100000", "default: info",
                    "--access-log"):
        assert default in out, default


def test_server_refuses_a_missing_rules_file_before_creating_a_store(tmp_path, capsys, monkeypatch):
    store = tmp_path / "new.db"
    assert main(["server", "--store", f"sqlite:///{store}", "--rules", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.startswith("tablewatch: error: --rules: is not a file")
    monkeypatch.setenv("TABLEWATCH_RULES", str(tmp_path / "nope.yaml"))
    assert main(["server", "--store", f"sqlite:///{store}"]) == 2
    assert capsys.readouterr().err.startswith("tablewatch: error: $TABLEWATCH_RULES: is not a file")
    assert not store.exists()


def test_server_logs_its_store_warns_without_a_token_and_writes_an_access_log(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = f"sqlite:///{tmp_path}/served.db"
    access = tmp_path / "access.log"
    env = {k: v for k, v in os.environ.items() if k != "TABLEWATCH_INGEST_TOKEN"}
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tablewatch.cli import main; sys.exit(main(sys.argv[1:]))",
         "server", "--store", store, "--port", str(port), "--access-log", str(access)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                break
            except httpx.TransportError:
                assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
                time.sleep(0.1)
        response = httpx.post(f"http://127.0.0.1:{port}/api/v1/points", json=[{"metric": "m", "ts": 1780000000,
                                                                                "value": 1}])
        assert response.status_code == 200
    finally:
        child.terminate()
        _, stderr = child.communicate(timeout=30)
    assert f"serving store {store}" in stderr and "NO TOKEN SET" in stderr, stderr
    logged = access.read_text()
    assert "GET /healthz" in logged and "POST /api/v1/points" in logged and " 200" in logged


# -- light installs ------------------------------------------------------------------------------

BLOCKED = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if not installed: importing it raises ImportError
"""


MISSING_EXTRAS = BLOCKED + """
import contextlib, io
import tablewatch
from tablewatch.cli import main as cli_main


def main(args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli_main(args)
    if code == 2 and "tablewatch: error: " in err.getvalue():
        from tablewatch.errors import MissingDependency
        raise MissingDependency(err.getvalue().strip())
    return code


cases = [
    ("bigtable", lambda: tablewatch.open_store("bigtable://p/i?emulator_host=127.0.0.1:1")),
    ("hbase", lambda: tablewatch.open_store("hbase://127.0.0.1:1")),
    ("server", lambda: __import__("tablewatch.collectors.server")),
    ("celery", lambda: __import__("tablewatch.collectors.celery")),
    ("server", lambda: main(["server"])),
    ("hbase", lambda: main(["gateway", "hbase-thrift"])),
]
for extra, call in cases:
    try:
        print(extra, "no error:", call())
    except ImportError as e:  # MissingDependency is an ImportError too
        print(extra, type(e).__name__, e)
"""


def test_a_missing_extra_is_named():
    blocked = "google.cloud.bigtable,google.cloud.bigtable.data,happybase,starlette,uvicorn,celery,thriftpy2"
    done = run_python(MISSING_EXTRAS, blocked)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 6
    for line in lines:
        extra = line.split()[0]
        assert " MissingDependency " in line and f"pip install 'tablewatch[{extra}]'" in line, line


CORE_ONLY = BLOCKED + """
import tablewatch
with tablewatch.Collector(sys.argv[2], flush_interval=3600) as collector:
    for i in range(1000):
        collector.log("core.m", float(i), step=i)
with tablewatch.open_store(sys.argv[2]) as store:
    print(len(store.read_points("core.m")))
"""


def test_the_core_install_logs_and_reads_without_any_extra(tmp_path):
    optional = "google,happybase,thriftpy2,starlette,uvicorn,orjson,streamlit,plotly,slack_sdk,pydantic,scipy,celery,yaml,pyarrow"
    done = run_python(CORE_ONLY, optional, f"sqlite:///{tmp_path}/core.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1000"


MISSING_ALERTS_OR_DASHBOARD = BLOCKED + """
import contextlib, importlib, io
from tablewatch.cli import main

for line in sys.stdin.read().splitlines():
    if not line:
        continue
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(line.split())
    except BaseException as e:  # a traceback: the test fails on it
        code = f"raised {type(e).__name__}: {e}"
    print(line.split()[0], code, err.getvalue().strip().replace(chr(10), " | "))
for module in ("tablewatch.dashboard.charts", "tablewatch.dashboard.widgets", "tablewatch.alerts.interactive"):
    try:
        importlib.import_module(module)
        print(module, "no error")
    except ImportError as e:
        print(module, type(e).__name__, e)
"""


def test_alerts_notify_and_dashboard_name_their_missing_extra(tmp_path):
    store = f"sqlite:///{tmp_path}/tw.db"
    commands = [
        "alerts check examples/rules.yaml",
        f"alerts run --rules examples/rules.yaml --once --store {store}",
        f"notify hello --store {store}",
        f"dashboard --store {store}",
    ]
    blocked = "slack_sdk,pydantic,scipy,croniter,yaml,starlette,streamlit,plotly"
    done = subprocess.run([sys.executable, "-c", MISSING_ALERTS_OR_DASHBOARD, blocked], input="\n".join(commands),
                          capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook"})  # notify reaches Slack
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 7, done.stdout
    for line, extra in zip(lines, ["alerts", "alerts", "alerts", "dashboard"]):
        assert line.split()[1] == "2", line
        assert "Traceback" not in line and f"is not installed: pip install 'tablewatch[{extra}]'" in line, line
    # the modules themselves, with only the dashboard's and the server's libraries missing
    done = subprocess.run([sys.executable, "-c", MISSING_ALERTS_OR_DASHBOARD, "streamlit,plotly,starlette"],
                          input="", capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    for line, extra in zip(lines, ["dashboard", "dashboard", "server"], strict=True):
        assert " MissingDependency " in line and f"pip install 'tablewatch[{extra}]'" in line, line


SCIPY_MISSING = BLOCKED + """
import numpy as np
from tablewatch.alerts import detectors
from tablewatch.store.sketches import DistributionSketch

sketches = [DistributionSketch.create() for _ in range(2)]
for shift, sketch in zip((0, 50), sketches):
    sketch.numeric.add_many(np.arange(100.0) + shift)
try:
    detectors.ks_p_value(*sketches)
except ImportError as e:
    print(type(e).__name__, e)
"""


def test_drift_detection_names_the_alerts_extra_without_scipy():
    done = run_python(SCIPY_MISSING, "scipy")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("MissingDependency drift detection needs 'scipy'"), done.stdout
    assert "pip install 'tablewatch[alerts]'" in done.stdout
