"""The ``hbase://`` backend, end to end over real Thrift (happybase, TCP on
loopback) against tablewatch's own HBase Thrift gateway over SQLite: HBase
itself cannot run on this machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import happybase
import numpy as np
import pytest

from tablewatch import open_store
from tablewatch.errors import StoreError, StoreUnavailable, StoreURLError, TableNotFound, ValidationError
from tablewatch.gateway.hbase_thrift import HBaseThriftGateway
from tablewatch.store.backends import open_backend
from tablewatch.store.hbase import HBaseBackend, parse_hbase_url
from tablewatch.store.table import GCPolicy, RowMutation, SetCell, TableInfo
from tests.store.table_contract import NOW_MS, TableContract
from tests.store.timeseries_contract import TimeSeriesContract

T0 = float(int(time.time()) // 86400 * 86400 - 7 * 86400)  # a day boundary a week ago: inside the default 30-day points retention


def _prefix() -> str:
    return "p" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    path = tmp_path_factory.mktemp("hbase") / "gateway.db"
    with HBaseThriftGateway(f"sqlite:///{path}", port=0) as gateway:
        yield gateway


def _url(gateway: HBaseThriftGateway, **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"table_prefix": _prefix(), "timeout_s": 10, **options}.items())
    return f"hbase://127.0.0.1:{gateway.port}?{query}"


@pytest.fixture
def backend(gateway):
    backend = HBaseBackend(_url(gateway))
    yield backend
    backend.close()


@pytest.fixture
def store_factory(gateway):
    stores = []

    def make(**config):
        stores.append(open_store(_url(gateway), **config))  # a fresh table prefix: a fresh, empty store
        return stores[-1]

    yield make
    for store in stores:
        store.close()


class TestHBaseTable(TableContract):
    check_and_set_keeps_timestamp = False  # Thrift v1 checkAndPut: the server's clock


class TestHBaseTimeSeries(TimeSeriesContract):
    pass


# -- the framed transport and the compact protocol -------------------------------------------


def test_framed_transport_and_compact_protocol_end_to_end(tmp_path):
    with HBaseThriftGateway(f"sqlite:///{tmp_path}/framed.db", port=0, transport="framed",
                            protocol="compact") as gateway:
        url = f"hbase://127.0.0.1:{gateway.port}?transport=framed&protocol=compact&table_prefix=fc&timeout_s=10"
        with open_store(url) as store:
            ts = T0 + np.arange(20_000) * 1.5
            store.write_points("train.loss", {"run": "r1"}, ts, np.sin(ts), steps=np.arange(20_000))
            frame = store.read_points("train.loss", {"run": "r1"}, start=T0 + 15, end=T0 + 30)
            assert frame["step"].tolist() == list(range(10, 20))
            store.write_task_runs([{"pipeline": "p", "task": "t", "run_id": "r", "status": "success",
                                    "started_at": T0}])
            assert [r.run_id for r in store.read_task_runs("p")] == ["r"]
            assert store.backend.list_tables() == sorted(store.backend.list_tables())
        # a client with the wrong transport gets a clear error, not a hang
        with pytest.raises(StoreUnavailable, match=str(gateway.port)):
            HBaseBackend(f"hbase://127.0.0.1:{gateway.port}?timeout_s=1").list_tables()


# -- mapping of GC policies, names and options ---------------------------------------------------


def test_gc_policies_map_to_hbase_family_settings(backend, gateway):
    name = "t_" + uuid.uuid4().hex[:8]
    backend.create_table(name, {"all": GCPolicy(max_versions=None), "ttl": GCPolicy(max_versions=4, max_age_s=86400)})
    info = backend.table_info(name)
    assert info.families == {"all": GCPolicy(max_versions=None), "ttl": GCPolicy(max_versions=4, max_age_s=86400.0)}
    # what an HBase client sees: Integer.MAX_VALUE versions ("unlimited") and TTLs in seconds
    connection = happybase.Connection("127.0.0.1", gateway.port, table_prefix=backend.options.table_prefix,
                                      table_prefix_separator=b".")
    families = connection.table(name).families()
    assert (families[b"all"]["max_versions"], families[b"all"]["time_to_live"]) == (2**31 - 1, 2**31 - 1)
    assert (families[b"ttl"]["max_versions"], families[b"ttl"]["time_to_live"]) == (4, 86400)
    connection.close()
    table = backend.table(name)
    table.mutate_rows([RowMutation(b"r", [SetCell("all", b"q", str(i).encode(), NOW_MS - i) for i in range(6)])])
    [row] = table.read_rows([b"r"], versions=100)
    assert [c.value for c in row.cells["all"][b"q"]] == [b"0", b"1", b"2", b"3", b"4", b"5"]
    [row] = list(table.scan(versions=2))
    assert [c.value for c in row.cells["all"][b"q"]] == [b"0", b"1"]
    assert table.compact() == 0
    assert isinstance(table.sample_row_keys(), list)
    with pytest.raises(ValidationError, match="whole seconds"):
        backend.create_table(name + "x", {"f": GCPolicy(max_age_s=1.5)})
    with pytest.raises(ValidationError, match="table name"):
        backend.create_table("bad-name", {"f": GCPolicy()})
    with pytest.raises(ValidationError, match="family"):
        backend.create_table(name + "y", {"bad:family": GCPolicy()})
    backend.delete_table(name)


def test_table_prefixes_keep_stores_apart(gateway):
    first, second = HBaseBackend(_url(gateway)), HBaseBackend(_url(gateway))
    first.create_table("shared_name", {"f": GCPolicy()})
    assert first.list_tables() == ["shared_name"] and second.list_tables() == []
    second.create_table("shared_name", {"f": GCPolicy()})
    first.table("shared_name").mutate_rows([RowMutation(b"k", [SetCell("f", b"q", b"first", NOW_MS)])])
    assert list(second.table("shared_name").scan()) == []
    for backend in (first, second):
        backend.delete_table("shared_name")
        backend.close()


def test_a_table_changed_by_another_client_is_read_again(gateway):
    url = _url(gateway)
    first, second = HBaseBackend(url), HBaseBackend(url)
    first.create_table("t", {"f": GCPolicy()})
    assert set(first.table_info("t").families) == {"f"}  # cached from now on
    second.delete_table("t")
    second.create_table("t", {"g": GCPolicy()})
    with pytest.raises(StoreError, match="NoSuchColumnFamilyException"):
        first.table("t").mutate_rows([RowMutation(b"k", [SetCell("f", b"q", b"v", NOW_MS)])])
    first.table("t").mutate_rows([RowMutation(b"k", [SetCell("g", b"q", b"v", NOW_MS)])])
    second.delete_table("t")
    with pytest.raises(TableNotFound):
        first.table("t").read_rows([b"k"])
    first.close()
    second.close()


def test_open_backend_picks_hbase_by_scheme(gateway):
    backend = open_backend(_url(gateway))
    assert isinstance(backend, HBaseBackend)
    backend.close()
    options = parse_hbase_url("hbase://example.org?table_prefix=ns:tw&transport=framed&pool_size=3&timeout_s=2.5")
    assert (options.host, options.port, options.table_prefix, options.transport, options.pool_size,
            options.timeout_s) == ("example.org", 9090, "ns:tw", "framed", 3, 2.5)


@pytest.mark.parametrize(
    "url, message",
    [
        ("hbase://", "no host"),
        ("hbase://host:notaport", "malformed host or port"),
        ("hbase://host:99999", "malformed host or port"),
        ("hbase://host/tables", "no path expected"),
        ("hbase://host?table=x", "unknown option(s) ['table']; known: pool_size, protocol, table_prefix"),
        ("hbase://host?transport=http", "transport must be one of buffered, framed"),
        ("hbase://host?protocol=json", "protocol must be one of binary, compact"),
        ("hbase://host?pool_size=0", "pool_size must be an integer >= 1"),
        ("hbase://host?pool_size=many", "pool_size must be an integer >= 1"),
        ("hbase://host?timeout_s=-1", "timeout_s must be a number of seconds > 0"),
        ("hbase://host?table_prefix=a/b", "table_prefix 'a/b' must be"),
        ("hbase://user:pw@host", "no user or password"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url, message):
    with pytest.raises(StoreURLError) as raised:
        open_backend(url)
    assert message in str(raised.value) and url in str(raised.value)


def test_batches_become_ordered_thrift_calls(monkeypatch):
    from tablewatch.store import hbase
    from tablewatch.store.table import DeleteCells, DeleteRow

    families = {"a": GCPolicy(), "b": GCPolicy()}
    rows = {
        b"r": [SetCell("a", b"x", b"1", 5), DeleteRow(), SetCell("a", b"x", b"2", 5), SetCell("b", b"y", b"3", 7)],
        b"s": [DeleteCells("b"), DeleteCells("a", b"q"), SetCell("a", b"q", b"4", 5), SetCell("a", b"q", b"5", 5)],
    }
    assert hbase._plan(rows, families) == [
        (None, {b"s": [b"b", b"a:q"]}),       # round 1: s deletes (a family alone: the whole family)
        (5, {b"r": {b"a:x": b"1"}}),          # ... r puts, one mutateRowsTs per timestamp
        (None, {b"r": [b"a", b"b"]}),          # round 2: DeleteRow = every family
        (5, {b"s": {b"a:q": b"5"}}),          # the same cell twice in a run: the last value
        (5, {b"r": {b"a:x": b"2"}}),          # round 3
        (7, {b"r": {b"b:y": b"3"}}),
    ]
    monkeypatch.setattr(hbase, "MAX_CALL_BYTES", 100)
    big = {bytes([k]): [SetCell("a", b"q", b"v" * 60, 1)] for k in range(1, 4)}
    assert [sorted(call) for _, call in hbase._plan(big, families)] == [[b"\x01"], [b"\x02"], [b"\x03"]]


# -- outages ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_is_store_unavailable_naming_the_url():
    url = f"hbase://127.0.0.1:{_free_port()}?timeout_s=2"
    backend = HBaseBackend(url)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        backend.list_tables()
    assert time.monotonic() - started < 2
    assert raised.value.url == url and url in str(raised.value) and "cannot connect" in str(raised.value)
    with pytest.raises(StoreUnavailable):
        open_store(url)
    backend._infos["t"] = TableInfo("t", {"f": GCPolicy()})  # skip the describe call
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        backend.table("t").check_and_set(b"r", "f", b"q", None, b"x", NOW_MS)
    backend.close()
    with pytest.raises(StoreError, match="closed"):
        backend.list_tables()


def test_silent_server_times_out_as_store_unavailable():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepts connections (the kernel does), never answers
        url = f"hbase://127.0.0.1:{listener.getsockname()[1]}?timeout_s=0.5"
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"no answer from 127\.0\.0\.1:\d+ within 0\.5 s"):
            HBaseBackend(url).list_tables()
        assert time.monotonic() - started < 3


def test_connections_the_server_dropped_while_idle_are_replaced(tmp_path):
    with HBaseThriftGateway(f"sqlite:///{tmp_path}/idle.db", port=0, idle_timeout_s=0.2) as gateway:
        backend = HBaseBackend(f"hbase://127.0.0.1:{gateway.port}?pool_size=2&timeout_s=5")
        backend.create_table("t", {"f": GCPolicy()})
        for _ in range(3):
            time.sleep(0.5)  # the gateway closes the pooled connection meanwhile
            backend.table("t").mutate_rows([RowMutation(b"k", [SetCell("f", b"q", b"v", NOW_MS)])])
            assert backend.table("t").read_rows([b"k"])[0].value("f", b"q") == b"v"
        for i in range(2):  # check_and_set is never sent twice, yet survives a dropped idle connection
            time.sleep(0.5)
            assert backend.table("t").check_and_set(b"lease", "f", b"q", None if i == 0 else b"a", b"ab"[i:i + 1],
                                                    NOW_MS) is True
        assert backend.table("t").read_rows([b"lease"])[0].value("f", b"q") == b"b"
        backend.close()


def test_server_restart_in_process_same_backend_object(tmp_path):
    port = _free_port()
    path = f"sqlite:///{tmp_path}/restart.db"
    backend = HBaseBackend(f"hbase://127.0.0.1:{port}?timeout_s=5")
    with HBaseThriftGateway(path, port=port):
        backend.create_table("t", {"f": GCPolicy()})
        backend.table("t").mutate_rows([RowMutation(b"a", [SetCell("f", b"q", b"1", NOW_MS)])])
    with pytest.raises(StoreUnavailable):
        backend.table("t").read_rows([b"a"])
    with HBaseThriftGateway(path, port=port):
        assert backend.table("t").read_rows([b"a"])[0].value("f", b"q") == b"1"
    backend.close()


GATEWAY = [sys.executable, "-m", "tablewatch.cli", "gateway", "hbase-thrift"]


def _start_gateway(db: str, port: int, log: Path) -> subprocess.Popen:
    with open(log, "a") as stderr:  # a file, not a pipe nobody reads
        process = subprocess.Popen([*GATEWAY, "--store", db, "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = process.stdout.readline()  # printed once it listens
    assert "listening on 127.0.0.1:" in line, (line, log.read_text())
    return process


def test_gateway_killed_mid_stream_loses_no_acknowledged_batch(tmp_path):
    db = f"sqlite:///{tmp_path}/killed.db"
    port = _free_port()
    log = tmp_path / "gateway.log"
    gateway = _start_gateway(db, port, log)
    url = f"hbase://127.0.0.1:{port}?table_prefix=k&timeout_s=3&pool_size=2"
    store = open_store(url)
    acknowledged: list[int] = []
    failure: list[tuple[BaseException, float]] = []

    def write_stream() -> None:
        b = 0
        while True:
            ts = T0 + (b * 1000 + np.arange(1000)) * 0.25
            try:
                store.write_points("stream", {}, ts, np.full(1000, float(b)))
            except Exception as e:  # noqa: BLE001 - the test asserts what it is
                failure.append((e, time.monotonic()))
                return
            acknowledged.append(b)
            b += 1

    writer = threading.Thread(target=write_stream)
    try:
        writer.start()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(gateway.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        gateway.wait(10)
        writer.join(15)
        assert not writer.is_alive()
        [(error, failed_at)] = failure
        assert isinstance(error, StoreUnavailable), repr(error)
        assert error.url == url and url in str(error)
        assert failed_at - killed_at < 3.5  # bounded by the connect/answer timeout, not a hang

        gateway = _start_gateway(db, port, log)  # same port, same file
        values = store.read_points("stream", {})["value"].to_numpy()  # the same Store and backend objects
        batches, counts = np.unique(values, return_counts=True)
        found = dict(zip(batches.astype(int).tolist(), counts.tolist()))
        # every acknowledged batch, whole (the one in flight may be there in part, or not)
        assert {b: found.get(b) for b in acknowledged} == {b: 1000 for b in acknowledged}
        store.write_points("stream", {}, [T0 - 10], [-1.0])
        assert store.read_points("stream", {}, end=T0)["value"].tolist() == [-1.0]
    finally:
        store.close()
        if gateway.poll() is None:
            gateway.terminate()
            gateway.wait(10)


def test_gateway_command_refuses_a_busy_port(capsys, tmp_path):
    from tablewatch.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(["gateway", "hbase-thrift", "--store", f"sqlite:///{tmp_path}/x.db", "--port", str(port)])
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_a_prefix_selects_its_own_tables_only(tmp_path):
    with HBaseThriftGateway(f"sqlite:///{tmp_path}/prefixes.db", port=0) as gateway:
        base = f"hbase://127.0.0.1:{gateway.port}?timeout_s=10"
        plain, tw, tw_a, tw_x = (HBaseBackend(base + suffix) for suffix in
                                 ("", "&table_prefix=tw", "&table_prefix=tw_a", "&table_prefix=tw.x"))
        plain.create_table("tw_meta", {"f": GCPolicy()})
        plain.create_table("tw_a_points", {"f": GCPolicy()})
        tw.create_table("meta", {"f": GCPolicy()})
        tw.create_table("points", {"f": GCPolicy()})
        tw_a.create_table("meta", {"f": GCPolicy()})
        tw_x.create_table("meta", {"f": GCPolicy()})
        assert plain.list_tables() == ["tw_a_points", "tw_meta"]
        assert tw.list_tables() == ["meta", "points"]
        assert tw_a.list_tables() == ["meta"]
        assert tw_x.list_tables() == ["meta"]
        # each store reads and writes its own table of a shared name
        tw.table("meta").mutate_rows([RowMutation(b"k", [SetCell("f", b"q", b"tw", NOW_MS)])])
        assert list(tw_a.table("meta").scan()) == [] and list(plain.table("tw_meta").scan()) == []
        connection = happybase.Connection("127.0.0.1", gateway.port)
        assert sorted(connection.tables()) == [b"tw.meta", b"tw.points", b"tw.x.meta", b"tw_a.meta", b"tw_a_points",
                                               b"tw_meta"]
        connection.close()
        for backend in (plain, tw, tw_a, tw_x):
            backend.close()
