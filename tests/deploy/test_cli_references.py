"""Every ``tablewatch`` command line, option and health-check path that
docker-compose.yml and deploy/kubernetes name exists in the CLI, and the
health checks mean what they say: the commands parse with ``build_parser()``
and answer ``--help``; the server and the dashboard, started with the stack's
own command lines on loopback, answer the probed paths; ``tablewatch alerts
status`` fails before the runner's first cycle and passes after it; and
store-init's script waits for a real store and creates its tables."""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tablewatch.cli import build_parser
from tests.deploy import stack
from tests.store.bigtable_emulator import Emulator, free_port

INVOCATIONS = stack.compose_invocations() + stack.kubernetes_invocations()
PROBES = stack.compose_probes() + stack.kubernetes_probes()
CONTAINER_RULES = "/etc/tablewatch/rules.yaml"
RULES = stack.REPO / "examples" / "rules.yaml"  # what compose mounts there by default
BIN = Path(sys.executable).parent
TABLEWATCH = str(BIN / "tablewatch")


def _parse(argv: Sequence[str]):
    """``build_parser().parse_args(argv)``, failing the test with argparse's message."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return build_parser().parse_args(list(argv))
    except SystemExit:
        pytest.fail(f"tablewatch {' '.join(argv)}: {stderr.getvalue().strip()}")


def _command_path(argv: Sequence[str]) -> tuple[str, ...]:
    """The subcommand names that lead ``argv`` (``alerts run``, ``server``)."""
    import argparse

    parser, path = build_parser(), []
    for token in argv:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or token not in actions[0].choices:
            break
        parser = actions[0].choices[token]
        path.append(token)
    return tuple(path)


def _environment(**values: str) -> dict[str, str]:
    env = stack.compose_environment(values)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _local(argv: Sequence[str], port: int) -> list[str]:
    """A container's command line on this machine: loopback, a free port, the
    rules file compose mounts by default."""
    swap = {"0.0.0.0": "127.0.0.1", CONTAINER_RULES: str(RULES)}
    argv = [swap.get(a, a) for a in argv]
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    return [TABLEWATCH, *argv]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def _wait_until_answers(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if _get(url) == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout_s} s")


@contextlib.contextmanager
def _serving(argv: Sequence[str], env: dict[str, str], health_path: str, timeout_s: float) -> Iterator[int]:
    port = free_port()
    log = Path(tempfile.mkdtemp()) / "output.log"
    with log.open("w") as output:
        process = subprocess.Popen(_local(argv, port), env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        _wait_until_answers(f"http://127.0.0.1:{port}{health_path}", process, log, timeout_s)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(5)


def _healthcheck_argv(service: str, port: int) -> list[str]:
    """The compose health check of ``service`` as this machine runs it (its
    URLs on ``port``)."""
    test = stack.compose_file()["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    argv = [re.sub(r"^http://127\.0\.0\.1:\d+/", f"http://127.0.0.1:{port}/", a) for a in test[1:]]
    return [{"tablewatch": TABLEWATCH, "python": sys.executable}.get(argv[0], argv[0]), *argv[1:]]


def _probes_of(*services: str) -> list[stack.Probe]:
    found = [p for p in PROBES if p.service in services]
    assert found, f"no HTTP probe for {services}"
    return found


# -- the command lines ------------------------------------------------------------------------


def test_the_files_name_the_commands_of_the_whole_stack():
    paths = {_command_path(i.argv) or i.argv[:1] for i in INVOCATIONS}
    assert {("server",), ("alerts", "run"), ("alerts", "status"), ("dashboard",), ("demo",), ("push",)} <= paths
    assert {p.path for p in PROBES} == {"/healthz", "/readyz", "/_stcore/health"}


@pytest.mark.parametrize("invocation", INVOCATIONS, ids=[f"{i.where}:{' '.join(i.argv[:2])}" for i in INVOCATIONS])
def test_every_command_line_parses(invocation):
    _parse(invocation.argv)


def test_every_subcommand_answers_help():
    for path in sorted({_command_path(i.argv) or i.argv[:1] for i in INVOCATIONS}):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exit:
            build_parser().parse_args([*path, "--help"])
        assert exit.value.code == 0 and stdout.getvalue().startswith("usage: tablewatch " + " ".join(path)), path


def test_http_probes_reach_the_port_the_command_listens_on():
    for probe in PROBES:
        args = _parse(stack.command_of(probe.service, INVOCATIONS).argv)
        assert args.port == probe.port, f"{probe.where} probes port {probe.port}, the command listens on {args.port}"
        assert args.host == "0.0.0.0", f"{probe.service} listens on {args.host}: unreachable from outside its container"


# -- the health checks, for real ------------------------------------------------------------------


def test_the_server_is_live_and_ready_then_not_ready_once_its_store_is_gone(tmp_path):
    from tablewatch.gateway.hbase_thrift import HBaseThriftGateway

    gateway = HBaseThriftGateway(f"sqlite:///{tmp_path}/hbase.db", port=0).start()
    url = stack.env_example_variants()[0][1].replace("hbase:9090", f"127.0.0.1:{gateway.port}")
    env = _environment(TABLEWATCH_STORE=url)
    try:
        with _serving(stack.command_of("server", INVOCATIONS).argv, env, "/healthz", timeout_s=30) as port:
            for probe in _probes_of("server", "tablewatch-server"):
                assert _get(f"http://127.0.0.1:{port}{probe.path}") == 200, probe
            check = _healthcheck_argv("server", port)
            ready = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
            assert ready.returncode == 0, ready.stderr

            gateway.stop()  # the store goes away: still live, no longer ready
            assert _get(f"http://127.0.0.1:{port}/healthz") == 200
            assert _get(f"http://127.0.0.1:{port}/readyz") == 503
            not_ready = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
            assert not_ready.returncode != 0 and "503" in not_ready.stderr
    finally:
        gateway.stop()


def test_the_dashboard_answers_streamlits_health_path(tmp_path):
    env = _environment(TABLEWATCH_STORE=f"sqlite:///{tmp_path}/dashboard.db")
    command = stack.command_of("dashboard", INVOCATIONS).argv
    _parse(command)  # fails here, naming the command, while `tablewatch dashboard` does not exist
    with _serving(command, env, "/_stcore/health", timeout_s=60) as port:
        for probe in _probes_of("dashboard", "tablewatch-dashboard"):
            assert _get(f"http://127.0.0.1:{port}{probe.path}") == 200, probe
        check = subprocess.run(_healthcheck_argv("dashboard", port), env=env, capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0, check.stderr


def test_the_runner_health_checks_fail_before_its_first_cycle_and_pass_after(tmp_path):
    env = _environment(TABLEWATCH_STORE=f"sqlite:///{tmp_path}/alerts.db")
    checks = [("docker-compose.yml", _healthcheck_argv("alerts", 0))]
    probes = {i.argv: i.where for i in INVOCATIONS if "Probe" in i.where and _command_path(i.argv) == ("alerts", "status")}
    assert len(probes) >= 2
    checks += [(where, [TABLEWATCH, *argv]) for argv, where in probes.items() if [TABLEWATCH, *argv] != checks[0][1]]

    before = subprocess.run(checks[0][1], env=env, capture_output=True, text=True, timeout=60)
    assert before.returncode == 1 and "no cycle yet" in before.stderr, before

    once = subprocess.run(_local([*stack.command_of("alerts", INVOCATIONS).argv, "--once"], 0), env=env,
                          capture_output=True, text=True, timeout=60)
    assert once.returncode == 0, once.stderr
    running = [(where, subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
               for where, argv in checks]
    for where, process in running:
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, f"{where}: {output}"


def _store_init_script() -> str:
    command = stack.compose_file()["services"]["store-init"]["command"]
    assert command[:2] == ["sh", "-c"]
    return command[2].replace("$$", "$")


def test_store_init_waits_for_hbase_then_creates_the_tables(tmp_path):
    from tablewatch.gateway.hbase_thrift import HBaseThriftGateway

    url = stack.env_example_variants()[0][1]
    assert url.startswith("hbase://hbase:9090")
    port = free_port()
    env = _environment(TABLEWATCH_STORE=url.replace("hbase:9090", f"127.0.0.1:{port}"))
    script = subprocess.Popen(["sh", "-c", _store_init_script()], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        output = ""
        while "waiting for" not in output and time.monotonic() < deadline:  # HBase is not up yet
            output += script.stdout.readline()
        assert "waiting for hbase://127.0.0.1" in output
        with HBaseThriftGateway(f"sqlite:///{tmp_path}/hbase.db", port=port):
            rest, _ = script.communicate(timeout=60)
    finally:
        if script.poll() is None:
            script.kill()
    assert script.returncode == 0, output + rest
    assert "tw_points" in rest and "(attempt 2 of" not in output + rest


def test_store_inits_commands_create_the_tables_on_the_bigtable_emulator(monkeypatch, capsys):
    from tablewatch.cli import main

    url = next(u for p, u in stack.env_example_variants() if "emulator_host=bigtable:8086" in u)
    commands = [i.argv for i in stack.compose_invocations() if i.service == "store-init"]
    assert [c[:1] for c in commands] == [("push",), ("store",)]
    with Emulator() as emulator:
        monkeypatch.setenv("TABLEWATCH_STORE", url.replace("bigtable:8086", emulator.host))
        for argv in commands:  # in this process: the script itself is run against HBase above
            assert main(list(argv)) == 0, argv
    assert "tw_points" in capsys.readouterr().out
