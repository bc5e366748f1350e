"""The HBase Thrift gateway, spoken to by plain happybase over TCP, as any
HBase Thrift v1 client would."""

from __future__ import annotations

import contextlib
import json
import struct
import threading
import time
import uuid

import happybase
import numpy as np
import pytest
from thriftpy2.thrift import TApplicationException

from tablewatch import open_store
from tablewatch.gateway.filters import parse_filter
from tablewatch.gateway.hbase_thrift import HBaseThriftGateway, hbase_idl
from tablewatch.store import chunks

idl = hbase_idl()
T0 = float(int(time.time()) // 86400 * 86400 - 7 * 86400)  # a day boundary a week ago: inside the default 30-day points retention


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    path = tmp_path_factory.mktemp("gateway") / "store.db"
    with HBaseThriftGateway(f"sqlite:///{path}", port=0) as gateway:
        yield gateway


@pytest.fixture
def connection(gateway):
    connection = happybase.Connection("127.0.0.1", gateway.port, table_prefix="h" + uuid.uuid4().hex[:10])
    yield connection
    connection.close()


@pytest.fixture
def table(connection):
    connection.create_table("t", {"f": dict(max_versions=3), "g": dict()})
    return connection.table("t")


def test_tables_families_enable_disable_delete(connection):
    connection.create_table("logs", {"f": dict(max_versions=5, time_to_live=3600), "g:": dict(max_versions=1)})
    assert connection.tables() == [b"logs"]
    families = connection.table("logs").families()
    assert families[b"f"]["max_versions"] == 5 and families[b"f"]["time_to_live"] == 3600
    assert families[b"g"]["max_versions"] == 1 and families[b"g"]["time_to_live"] == 2**31 - 1
    with pytest.raises(idl.AlreadyExists):
        connection.create_table("logs", {"f": {}})
    assert connection.is_table_enabled("logs")
    with pytest.raises(idl.IOError, match="TableNotDisabledException"):
        connection.delete_table("logs")  # HBase: disable first
    connection.disable_table("logs")
    assert not connection.is_table_enabled("logs")
    with pytest.raises(idl.IOError, match="TableNotEnabledException"):
        connection.table("logs").row(b"r")
    connection.enable_table("logs")
    connection.delete_table("logs", disable=True)
    assert connection.tables() == []
    with pytest.raises(idl.IOError, match="TableNotFoundException"):
        connection.table("logs").families()
    assert connection.table("logs").regions() == []  # as HBase: no regions for a missing table


def test_create_table_uses_thrift_default_of_three_versions(connection):
    connection.create_table("d", {"f": {}})
    table = connection.table("d")
    for ts in range(1, 6):
        table.put(b"r", {b"f:q": b"%d" % ts}, timestamp=ts)
    assert table.cells(b"r", b"f:q") == [b"5", b"4", b"3"]
    assert connection.table("d").families()[b"f"]["max_versions"] == 3


def test_put_row_rows_cells(table):
    table.put(b"r1", {b"f:a": b"1", b"f:b": b"2", b"g:c": b"3"})
    table.put(b"r2", {b"f:a": b"old"}, timestamp=1000)
    table.put(b"r2", {b"f:a": b"new"}, timestamp=2000)
    table.put(b"r3", {b"f:": b"empty qualifier"})
    assert table.row(b"r1") == {b"f:a": b"1", b"f:b": b"2", b"g:c": b"3"}
    assert table.row(b"r1", columns=[b"f:b", b"g"]) == {b"f:b": b"2", b"g:c": b"3"}
    assert table.row(b"r1", columns=[b"f"]) == {b"f:a": b"1", b"f:b": b"2"}
    assert table.row(b"r2", include_timestamp=True) == {b"f:a": (b"new", 2000)}
    assert table.row(b"r2", timestamp=2000) == {b"f:a": b"old"}  # time range [0, 2000)
    assert table.row(b"missing") == {}
    assert table.row(b"r3", columns=[b"f:"]) == {b"f:": b"empty qualifier"}  # "f:" is the empty qualifier
    assert table.rows([b"r2", b"missing", b"r1"], columns=[b"f:a"]) == [(b"r2", {b"f:a": b"new"}),
                                                                        (b"r1", {b"f:a": b"1"})]
    assert table.rows([b"r2"], timestamp=1500) == [(b"r2", {b"f:a": b"old"})]
    assert table.cells(b"r2", b"f:a", include_timestamp=True) == [(b"new", 2000), (b"old", 1000)]
    assert table.cells(b"r2", b"f:a", versions=1) == [b"new"]
    assert table.cells(b"r2", b"f:a", timestamp=2000) == [b"old"]
    assert table.cells(b"r2", b"g:nope") == []
    with pytest.raises(idl.IOError, match="NoSuchColumnFamilyException"):
        table.put(b"r", {b"nope:x": b"1"})


def test_scan_ranges_prefixes_columns_limits_and_batches(table):
    with table.batch() as batch:
        for i in range(50):
            batch.put(b"row%02d" % i, {b"f:a": b"%d" % i, b"f:b": b"x", b"g:c": b"y"})
        batch.put(b"other", {b"f:a": b"o"})
    keys = [k for k, _ in table.scan()]
    assert keys == sorted(keys) and len(keys) == 51
    assert [k for k, _ in table.scan(row_prefix=b"row1")] == [b"row%02d" % i for i in range(10, 20)]
    assert [k for k, _ in table.scan(row_start=b"row45", row_stop=b"row48")] == [b"row45", b"row46", b"row47"]
    assert [k for k, _ in table.scan(row_start=b"row48")] == [b"row48", b"row49"]
    assert [k for k, _ in table.scan(row_stop=b"row01")] == [b"other", b"row00"]
    assert [k for k, _ in table.scan(limit=5, batch_size=2)] == [b"other", b"row00", b"row01", b"row02", b"row03"]
    assert len(list(table.scan(batch_size=1))) == 51
    assert dict(table.scan(row_prefix=b"row0", columns=[b"g"]))[b"row03"] == {b"g:c": b"y"}
    assert [k for k, _ in table.scan(columns=[b"g:c"])][:1] == [b"row00"]  # "other" has no g:c
    rows = list(table.scan(row_prefix=b"row00", include_timestamp=True, sorted_columns=True))
    assert list(rows[0][1]) == [b"f:a", b"f:b", b"g:c"]
    assert [k for k, _ in table.scan(row_start=b"row03", row_stop=b"row00", reverse=True)] == [
        b"row03", b"row02", b"row01"]
    partial = list(table.scan(row_prefix=b"row07", scan_batching=2))  # Scan.setBatching: partial rows
    assert [len(data) for _, data in partial] == [2, 1]


def test_scan_filter_strings(table):
    table.put(b"a1", {b"f:x1": b"v", b"f:x2": b"w", b"f:y": b"z"})
    table.put(b"a2", {b"f:y": b"z"})
    table.put(b"b1", {b"f:x1": b"v"})
    assert list(table.scan(filter=b"KeyOnlyFilter()")) == [
        (b"a1", {b"f:x1": b"", b"f:x2": b"", b"f:y": b""}), (b"a2", {b"f:y": b""}), (b"b1", {b"f:x1": b""})]
    assert list(table.scan(filter=b"FirstKeyOnlyFilter() AND KeyOnlyFilter()")) == [
        (b"a1", {b"f:x1": b""}), (b"a2", {b"f:y": b""}), (b"b1", {b"f:x1": b""})]
    assert [k for k, _ in table.scan(filter=b"PrefixFilter ('a')")] == [b"a1", b"a2"]
    assert list(table.scan(filter=b"PrefixFilter('a') AND ColumnPrefixFilter('x')")) == [
        (b"a1", {b"f:x1": b"v", b"f:x2": b"w"})]
    assert [k for k, _ in table.scan(filter=b"(PageFilter(2))")] == [b"a1", b"a2"]
    assert [k for k, _ in table.scan(filter=b"InclusiveStopFilter('a2')")] == [b"a1", b"a2"]
    assert dict(table.scan(filter=b"KeyOnlyFilter(true)"))[b"a2"] == {b"f:y": struct.pack(">i", 1)}
    assert parse_filter(b"PrefixFilter('it''s')").prefix == b"it's"


def test_batches_transactions_wal_and_deletes(table):
    with pytest.raises(ValueError):
        with table.batch(transaction=True) as batch:
            batch.put(b"t1", {b"f:a": b"1"})
            raise ValueError("the block failed: nothing is sent")
    assert table.row(b"t1") == {}
    with table.batch(batch_size=3, wal=False) as batch:  # sends every 3 mutations, and the rest at the end
        for i in range(7):
            batch.put(b"b%d" % i, {b"f:a": b"%d" % i, b"g:b": b"x"})
        batch.delete(b"b0", columns=[b"g:b"])
    assert table.row(b"b0") == {b"f:a": b"0"}
    assert len(list(table.scan(row_prefix=b"b"))) == 7
    table.delete(b"b1", columns=[b"f"])  # a family alone: the whole family
    assert table.row(b"b1") == {b"g:b": b"x"}
    table.delete(b"b2")  # the whole row
    assert table.row(b"b2") == {}
    for ts in (100, 200, 300):
        table.put(b"v", {b"f:a": b"%d" % ts}, timestamp=ts)
    table.delete(b"v", columns=[b"f:a"], timestamp=200)  # versions <= 200 only
    assert table.cells(b"v", b"f:a", include_timestamp=True) == [(b"300", 300)]
    # HBase's order inside one mutateRow call: its deletes, then its puts
    table.connection.client.mutateRow(table.name, b"m", [
        idl.Mutation(column=b"f:a", value=b"kept"), idl.Mutation(isDelete=True, column=b"f:a")], {})
    assert table.row(b"m") == {b"f:a": b"kept"}
    with pytest.raises(idl.IllegalArgument, match="family:qualifier"):
        table.connection.client.mutateRow(table.name, b"m", [idl.Mutation(column=b"f", value=b"x")], {})


def test_counters(table):
    assert table.counter_get(b"c", b"f:n") == 0
    assert table.counter_inc(b"c", b"f:n") == 1
    assert table.counter_inc(b"c", b"f:n", value=41) == 42
    assert table.counter_dec(b"c", b"f:n", value=2) == 40
    assert table.row(b"c")[b"f:n"] == struct.pack(">q", 40)
    table.counter_set(b"c", b"f:m", -5)
    assert table.counter_inc(b"c", b"f:m", 2) == -3
    table.put(b"c", {b"f:text": b"abc"})
    with pytest.raises(idl.IOError, match="not a long"):
        table.counter_inc(b"c", b"f:text")
    client = table.connection.client
    client.increment(idl.TIncrement(table=table.name, row=b"c", column=b"f:n", ammount=10))
    assert table.counter_get(b"c", b"f:n") == 50
    appended = client.append(idl.TAppend(table=table.name, row=b"c", columns=[b"f:text"], values=[b"def"]))
    assert [c.value for c in appended] == [b"abcdef"]
    assert client.checkAndPut(table.name, b"c", b"f:text", b"abcdef", idl.Mutation(column=b"f:flag", value=b"1"), {})
    assert not client.checkAndPut(table.name, b"c", b"f:text", b"nope", idl.Mutation(column=b"f:flag", value=b"2"), {})
    assert not client.checkAndPut(table.name, b"c", b"f:flag", None, idl.Mutation(column=b"f:flag", value=b"3"), {})
    assert table.row(b"c")[b"f:flag"] == b"1"


def test_check_and_put_reads_an_absent_or_empty_value_as_hbase_does(table):
    # HBase's checkAndMutate: a null (absent) or empty value matches a missing
    # cell or a cell holding b"", and nothing else.
    client = table.connection.client

    def check_and_put(expected, new, column=b"f:lease"):
        return client.checkAndPut(table.name, b"r", b"f:lease", expected, idl.Mutation(column=column, value=new), {})

    assert check_and_put(b"", b"") is True  # missing: matches ""
    assert table.row(b"r") == {b"f:lease": b""}
    assert check_and_put(None, b"a") is True  # holding "": matches "must not exist"
    assert check_and_put(None, b"b") is False
    assert check_and_put(b"", b"b") is False
    assert check_and_put(b"a", b"b") is True
    assert check_and_put(b"b", b"1", column=b"g:other") is True  # checks one column, puts another
    assert table.row(b"r") == {b"f:lease": b"b", b"g:other": b"1"}
    with pytest.raises(idl.IOError, match="NoSuchColumnFamilyException"):
        client.checkAndPut(table.name, b"r", b"nope:q", None, idl.Mutation(column=b"f:q", value=b"x"), {})
    assert table.row(b"r")[b"f:lease"] == b"b"  # the connection still works


def test_connection_pool_from_several_threads(gateway, connection):
    prefix = connection.table_prefix.decode()
    connection.create_table("pool", {"f": dict(max_versions=1)})
    pool = happybase.ConnectionPool(4, host="127.0.0.1", port=gateway.port, table_prefix=prefix)
    errors = []

    def work(worker: int) -> None:
        try:
            for i in range(50):
                with pool.connection() as c:
                    t = c.table("pool")
                    t.put(b"w%d-%02d" % (worker, i), {b"f:v": b"%d" % i})
                    t.counter_inc(b"total", b"f:n")
                    assert t.row(b"w%d-%02d" % (worker, i)) == {b"f:v": b"%d" % i}
                    assert len(list(t.scan(row_prefix=b"w%d-" % worker))) == i + 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with pool.connection() as c:
        assert c.table("pool").counter_get(b"total", b"f:n") == 8 * 50  # increments are atomic
        assert len(list(c.table("pool").scan(row_prefix=b"w"))) == 8 * 50


def test_unimplemented_method_answers_ioerror_and_connection_survives(table):
    client = table.connection.client
    with pytest.raises(idl.IOError) as raised:
        client.getRowOrBefore(table.name, b"r", b"f")
    assert b"getRowOrBefore is not implemented" in raised.value.message
    with pytest.raises(idl.IOError, match="not implemented"):
        client.getRegionInfo(b"t,,99999999999999")
    table.put(b"after", {b"f:a": b"still works"})
    assert table.row(b"after") == {b"f:a": b"still works"}


def test_errors_are_declared_thrift_exceptions_and_keep_the_connection(connection, table):
    client = connection.client
    with pytest.raises(idl.IllegalArgument, match="scanner ID is invalid"):
        client.scannerGetList(987654, 10)
    with pytest.raises(idl.IOError, match="TableNotFoundException"):
        connection.table("missing").put(b"r", {b"f:a": b"1"})
    with pytest.raises(idl.IllegalArgument, match="row key"):
        table.put(b"", {b"f:a": b"1"})
    with pytest.raises(idl.IllegalArgument, match="Maximum versions must be positive"):
        connection.create_table("zero", {"f": dict(max_versions=0)})
    with pytest.raises(idl.IllegalArgument, match="table name"):
        client.createTable(b"bad name!", [idl.ColumnDescriptor(name=b"f:")])
    assert connection.tables() == [b"t"]


def test_scanners_are_closed_with_their_connection_and_when_idle(tmp_path):
    with HBaseThriftGateway(f"sqlite:///{tmp_path}/s.db", port=0, scanner_timeout_s=0.3) as gateway:
        first = happybase.Connection("127.0.0.1", gateway.port)
        first.create_table("t", {"f": {}})
        with first.table("t").batch() as batch:
            for i in range(20):
                batch.put(b"%02d" % i, {b"f:a": b"x"})
        scan = first.table("t").scan(batch_size=5)
        assert next(scan)[0] == b"00"  # a scanner stays open on the gateway
        assert len(gateway.handler._scanners) == 1
        first.close()
        deadline = time.monotonic() + 5
        while gateway.handler._scanners and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gateway.handler._scanners == {}
        with contextlib.suppress(Exception):
            scan.close()  # happybase's generator would close its scanner over the closed connection
        second = happybase.Connection("127.0.0.1", gateway.port)
        scanner_id = second.client.scannerOpen(b"t", b"", None, {})
        time.sleep(0.4)
        second.client.scannerOpen(b"t", b"", None, {})  # opening a scanner sweeps idle ones
        with pytest.raises(idl.IllegalArgument, match="scanner ID is invalid"):
            second.client.scannerGet(scanner_id)
        assert second.client.scannerOpenWithPrefix(b"t", b"1", None, {}) > 0
        second.close()


def test_a_store_written_by_tablewatch_is_readable_through_the_gateway(tmp_path):
    url = f"sqlite:///{tmp_path}/written.db"
    with open_store(url) as store:
        ts = T0 + np.arange(5000) * 2.0
        store.write_points("serve.latency_s", {"model": "ranker"}, ts, ts - T0)
        store.write_task_runs([{"pipeline": "etl", "task": "load", "run_id": "r1", "status": "success",
                                "started_at": T0, "ended_at": T0 + 3}])
    with HBaseThriftGateway(url, port=0) as gateway:
        connection = happybase.Connection("127.0.0.1", gateway.port)
        assert {b"tw_points", b"tw_series", b"tw_tasks", b"tw_meta"} <= set(connection.tables())
        config = json.loads(connection.table("tw_meta").row(b"config")[b"config:json"])
        assert config["salt_buckets"] == 16
        [(key, meta)] = connection.table("tw_series").scan(row_prefix=b"sserve.latency_s\x00", columns=[b"meta"])
        assert json.loads(meta[b"meta:json"]) == {"metric": "serve.latency_s", "tags": {"model": "ranker"}}
        values = []
        for _, cells in connection.table("tw_points").scan(columns=[b"p"]):
            for value in cells.values():
                values.append(chunks.decode(value)[1])
        assert np.sort(np.concatenate(values)).tolist() == (ts - T0).tolist()
        [(_, run)] = connection.table("tw_tasks").scan()
        assert json.loads(run[b"run:json"])["run_id"] == "r1"
        # and what happybase writes, tablewatch reads
        connection.table("tw_meta").put(b"note", {b"config:by": b"happybase"})
        connection.close()
    with open_store(url) as store:
        assert store.backend.table("tw_meta").read_rows([b"note"])[0].value("config", b"by") == b"happybase"


def test_framed_compact_gateway_with_happybase(tmp_path):
    with HBaseThriftGateway(f"sqlite:///{tmp_path}/fc.db", port=0, transport="framed", protocol="compact") as gw:
        connection = happybase.Connection("127.0.0.1", gw.port, transport="framed", protocol="compact")
        connection.create_table("t", {"f": {}})
        connection.table("t").put(b"r", {b"f:a": b"1"})
        assert list(connection.table("t").scan()) == [(b"r", {b"f:a": b"1"})]
        with pytest.raises(idl.IOError, match="not implemented"):
            connection.client.getRowOrBefore(b"t", b"r", b"f")
        assert connection.table("t").row(b"r") == {b"f:a": b"1"}
        connection.close()


def test_unknown_method_name_is_a_thrift_application_error(gateway):
    # A method outside the IDL (a newer client): thriftpy2's processor answers
    # TApplicationException(UNKNOWN_METHOD), and the connection stays usable.
    connection = happybase.Connection("127.0.0.1", gateway.port)
    client = connection.client
    client._oprot.write_message_begin("getThriftServerType", 1, 0)
    idl.Hbase.getTableNames_args().write(client._oprot)
    client._oprot.write_message_end()
    client._oprot.trans.flush()
    with pytest.raises(TApplicationException):
        client._recv("getTableNames")
    assert isinstance(connection.tables(), list)
    connection.close()
