"""The Table API contract, written once. A backend's test module mixes
:class:`TableContract` into a class and provides a ``backend`` fixture."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tablewatch.errors import TableExists, TableNotFound, ValidationError
from tablewatch.store.table import (
    Cell,
    CellColumns,
    DeleteCells,
    DeleteRow,
    GCPolicy,
    PackedBytes,
    RowMutation,
    SetCell,
    newest_cells,
    newest_values,
    set_cells,
)

NOW_MS = int(time.time() * 1000)


def put(table, key: bytes, family: str, qualifier: bytes, value: bytes, ts: int = NOW_MS) -> None:
    table.mutate_rows([RowMutation(key, [SetCell(family, qualifier, value, ts)])])


class TableContract:
    #: Whether check_and_set writes at the timestamp given (HBase's Thrift v1
    #: checkAndPut cannot carry one: the cell gets the server's clock).
    check_and_set_keeps_timestamp = True

    @pytest.fixture
    def name(self) -> str:
        return "t_" + uuid.uuid4().hex[:12]

    @pytest.fixture
    def table(self, backend, name):
        backend.create_table(name, {"a": GCPolicy(max_versions=1), "v": GCPolicy(max_versions=3)})
        yield backend.table(name)
        backend.delete_table(name)

    # -- admin -----------------------------------------------------------------

    def test_create_list_info_delete(self, backend, name):
        backend.create_table(name, {"f": GCPolicy(max_versions=2, max_age_s=3600.0), "g": GCPolicy(max_versions=1)})
        assert name in backend.list_tables()
        info = backend.table_info(name)
        assert info.families["f"] == GCPolicy(max_versions=2, max_age_s=3600.0)
        assert info.families["g"] == GCPolicy(max_versions=1)
        with pytest.raises(TableExists):
            backend.create_table(name, {"f": GCPolicy()})
        backend.delete_table(name)
        assert name not in backend.list_tables()
        with pytest.raises(TableNotFound):
            backend.table_info(name)

    def test_create_with_split_keys(self, backend, name):
        backend.create_table(name, {"f": GCPolicy()}, split_keys=[bytes([i]) for i in range(1, 8)])
        table = backend.table(name)
        put(table, b"\x05key", "f", b"q", b"x")
        assert [r.key for r in table.scan()] == [b"\x05key"]
        backend.delete_table(name)

    # -- cells -------------------------------------------------------------------

    def test_set_and_read_cell(self, table):
        put(table, b"row1", "a", b"q", b"value")
        [row] = table.read_rows([b"row1"])
        assert row.key == b"row1"
        assert row.value("a", b"q") == b"value"
        assert row.cells["a"][b"q"][0].timestamp_ms == NOW_MS

    def test_same_timestamp_overwrites(self, table):
        put(table, b"r", "v", b"q", b"one")
        put(table, b"r", "v", b"q", b"two")
        [row] = table.read_rows([b"r"], versions=10)
        assert [c.value for c in row.cells["v"][b"q"]] == [b"two"]

    def test_versions_newest_first_and_capped_by_family(self, table):
        for i in range(5):
            put(table, b"r", "v", b"q", f"v{i}".encode(), NOW_MS - 1000 * (5 - i))
            put(table, b"r", "a", b"q", f"a{i}".encode(), NOW_MS - 1000 * (5 - i))
        [row] = table.read_rows([b"r"], versions=10)
        assert [c.value for c in row.cells["v"][b"q"]] == [b"v4", b"v3", b"v2"]
        assert [c.value for c in row.cells["a"][b"q"]] == [b"a4"]
        stamps = [c.timestamp_ms for c in row.cells["v"][b"q"]]
        assert stamps == sorted(stamps, reverse=True)
        [row] = table.read_rows([b"r"])
        assert [c.value for c in row.cells["v"][b"q"]] == [b"v4"]

    def test_binary_values_and_keys_round_trip(self, table):
        key = bytes(range(256))[1:64]
        value = bytes(range(256)) * 4
        put(table, key, "a", b"\x00\xff", value)
        [row] = table.read_rows([key])
        assert row.value("a", b"\x00\xff") == value

    @pytest.mark.parametrize("ts", [-1, 2**63, 1.5, True])
    def test_bad_timestamps_are_refused(self, table, ts):
        with pytest.raises(ValidationError, match="timestamp_ms"):
            put(table, b"r", "a", b"q", b"x", ts)
        assert table.read_rows([b"r"]) == []

    def test_unknown_family_is_refused(self, table):
        with pytest.raises(ValidationError, match="family"):
            put(table, b"r", "nope", b"q", b"x")

    def test_set_cells_writes_cells_given_as_columns(self, table):
        # The embedded store's one-executemany path and the others' row mutations alike.
        put(table, b"r2", "v", b"q", b"old", NOW_MS - 5)
        set_cells(table, CellColumns([b"r1", b"r2", b"r1", b"r3"], ["a", "v", "v", "a"], [b"x", b"q", b"y", b"x"],
                                     [b"1", b"2", b"3", b"4"], [NOW_MS, NOW_MS, NOW_MS - 1, NOW_MS]))
        rows = {row.key: row for row in table.read_rows([b"r1", b"r2", b"r3"])}
        assert rows[b"r1"].cells == {"a": {b"x": [Cell(b"1", NOW_MS)]}, "v": {b"y": [Cell(b"3", NOW_MS - 1)]}}
        assert table.read_rows([b"r2"], versions=3)[0].cells["v"][b"q"] == [Cell(b"2", NOW_MS), Cell(b"old", NOW_MS - 5)]
        assert rows[b"r3"].value("a", b"x") == b"4"
        with pytest.raises(ValidationError, match="timestamp_ms"):
            set_cells(table, CellColumns([b"r4", b"r5"], ["a", "a"], [b"q", b"q"], [b"x", b"y"], [NOW_MS, -1]))
        with pytest.raises(ValidationError, match="family"):
            set_cells(table, CellColumns([b"r4"], ["nope"], [b"q"], [b"x"], [NOW_MS]))
        with pytest.raises(ValidationError, match="row key"):
            set_cells(table, CellColumns([b""], ["a"], [b"q"], [b"x"], [NOW_MS]))
        assert table.read_rows([b"r4", b"r5"]) == []

    def test_set_cells_of_one_width_and_family(self, table):
        # Keys, qualifiers and values of one width each (the embedded store
        # passes them as three blobs), empty values and qualifiers included;
        # written twice, each cell is stored once.
        put(table, b"r2", "v", b"q", b"old", NOW_MS - 5)
        for _ in range(2):
            set_cells(table, CellColumns([b"r1", b"r2", b"r1"], ["v"] * 3, [b"q", b"q", b"p"], [b"1", b"2", b"3"],
                                         [NOW_MS, NOW_MS, NOW_MS - 1]))
            set_cells(table, CellColumns([b"r3", b"r4"], ["a"] * 2, [b"", b""], [b"", b""], [NOW_MS, NOW_MS]))
            # ... and given as PackedBytes (what the store builds for one-point chunks)
            set_cells(table, CellColumns(PackedBytes(b"r5r6", 2), ["a"] * 2, PackedBytes(b"qq", 1),
                                         PackedBytes(b"5566", 2), [NOW_MS, NOW_MS - 2]))
        rows = {row.key: row for row in table.read_rows([b"r1", b"r2", b"r3", b"r4", b"r5", b"r6"], versions=3)}
        assert rows[b"r1"].cells == {"v": {b"p": [Cell(b"3", NOW_MS - 1)], b"q": [Cell(b"1", NOW_MS)]}}
        assert rows[b"r2"].cells == {"v": {b"q": [Cell(b"2", NOW_MS), Cell(b"old", NOW_MS - 5)]}}
        assert rows[b"r3"].cells == rows[b"r4"].cells == {"a": {b"": [Cell(b"", NOW_MS)]}}
        assert rows[b"r5"].cells == {"a": {b"q": [Cell(b"55", NOW_MS)]}}
        assert rows[b"r6"].cells == {"a": {b"q": [Cell(b"66", NOW_MS - 2)]}}

    @staticmethod
    def put_versions_of_two_rows(table, family_a_value: bytes) -> None:
        put(table, b"r1", "v", b"q", b"old", NOW_MS - 5)
        put(table, b"r1", "v", b"q", b"new", NOW_MS)
        put(table, b"r1", "v", b"p", b"other", NOW_MS - 9)
        put(table, b"r1", "a", b"q", family_a_value)
        put(table, b"r2", "v", b"q", b"second row")

    def test_newest_values_gives_each_columns_newest_version(self, table):
        self.put_versions_of_two_rows(table, b"not this family")
        found = newest_values(table, [b"r2", b"r1", b"absent"], "v")
        assert sorted(found) == [(b"r1", b"p", b"other"), (b"r1", b"q", b"new"), (b"r2", b"q", b"second row")]
        put(table, b"s1", "v", b"q", b"not this prefix")
        assert sorted(newest_values(table, None, "v", prefix=b"r")) == sorted(found)
        with pytest.raises(ValidationError, match="family"):
            newest_values(table, [b"r1"], "nope")

    def test_newest_cells_of_key_ranges(self, table):
        self.put_versions_of_two_rows(table, b"family a")
        put(table, b"r3", "a", b"q", b"out of the ranges")
        put(table, b"s1", "v", b"q", b"second range")
        found = newest_cells(table, [(b"s", None), (b"r1", b"r3")], ["v", "a"])
        assert [cell[0] for cell in found] == [b"r1"] * 3 + [b"r2", b"s1"]  # rows in key order
        assert [cell[1] for cell in found[:3]] in (["a", "v", "v"], ["v", "v", "a"])  # a row's families together
        assert sorted(found) == [
            (b"r1", "a", b"q", NOW_MS, b"family a"), (b"r1", "v", b"p", NOW_MS - 9, b"other"),
            (b"r1", "v", b"q", NOW_MS, b"new"), (b"r2", "v", b"q", NOW_MS, b"second row"),
            (b"s1", "v", b"q", NOW_MS, b"second range")]
        assert newest_cells(table, [(b"r1", b"r2")], ["a"]) == [(b"r1", "a", b"q", NOW_MS, b"family a")]
        assert newest_cells(table, [(b"x", b"y")], ["a", "v"]) == []
        with pytest.raises(ValidationError, match="family"):
            newest_cells(table, [(b"r1", b"r2")], ["nope"])

    # -- deletes -----------------------------------------------------------------------

    def test_delete_column_family_and_row(self, table):
        table.mutate_rows([RowMutation(b"r", [
            SetCell("a", b"x", b"1", NOW_MS), SetCell("a", b"y", b"2", NOW_MS), SetCell("v", b"z", b"3", NOW_MS),
        ])])
        table.mutate_rows([RowMutation(b"r", [DeleteCells("a", b"x")])])
        [row] = table.read_rows([b"r"])
        assert set(row.cells["a"]) == {b"y"}
        table.mutate_rows([RowMutation(b"r", [DeleteCells("a")])])
        [row] = table.read_rows([b"r"])
        assert "a" not in row.cells and row.value("v", b"z") == b"3"
        table.mutate_rows([RowMutation(b"r", [DeleteRow()])])
        assert table.read_rows([b"r"]) == []

    def test_mutations_apply_in_order(self, table):
        table.mutate_rows([RowMutation(b"r", [
            SetCell("a", b"x", b"old", NOW_MS), DeleteRow(), SetCell("a", b"x", b"new", NOW_MS),
        ])])
        [row] = table.read_rows([b"r"])
        assert row.value("a", b"x") == b"new"

    # -- reads -------------------------------------------------------------------------

    def test_read_rows_returns_existing_rows_in_key_order(self, table):
        for key in (b"c", b"a", b"b"):
            put(table, key, "a", b"q", key)
        rows = table.read_rows([b"c", b"missing", b"a", b"a"])
        assert [r.key for r in rows] == [b"a", b"c"]

    def test_scan_half_open_range_in_byte_order(self, table):
        keys = [b"\x00", b"\x00\x01", b"a", b"ab", b"b", b"\x7f", b"\x80", b"\xff", b"\xff\xff"]
        table.mutate_rows([RowMutation(k, [SetCell("a", b"q", k, NOW_MS)]) for k in keys])
        assert [r.key for r in table.scan()] == sorted(keys)
        assert [r.key for r in table.scan(b"a", b"b")] == [b"a", b"ab"]
        assert [r.key for r in table.scan(b"\x7f", b"\xff")] == [b"\x7f", b"\x80"]
        assert [r.key for r in table.scan(start=b"\x80")] == [b"\x80", b"\xff", b"\xff\xff"]
        assert [r.key for r in table.scan(end=b"\x00\x01")] == [b"\x00"]

    def test_scan_prefix_and_limit(self, table):
        keys = [b"p1", b"p10", b"p2", b"q", b"p\xff", b"p\xff\xff"]
        table.mutate_rows([RowMutation(k, [SetCell("a", b"q", b"x", NOW_MS)]) for k in keys])
        assert [r.key for r in table.scan(prefix=b"p1")] == [b"p1", b"p10"]
        assert [r.key for r in table.scan(prefix=b"p\xff")] == [b"p\xff", b"p\xff\xff"]
        assert [r.key for r in table.scan(prefix=b"p", limit=2)] == [b"p1", b"p10"]

    def test_scan_many_rows_pages_through(self, table):
        keys = [i.to_bytes(4, "big") for i in range(3000)]
        for i in range(0, 3000, 500):
            table.mutate_rows([RowMutation(k, [SetCell("a", b"q", k, NOW_MS), SetCell("v", b"r", k, NOW_MS)])
                               for k in keys[i:i + 500]])
        rows = list(table.scan())
        assert [r.key for r in rows] == keys
        assert all(r.value("v", b"r") == r.key for r in rows)

    def test_column_filter(self, table):
        table.mutate_rows([RowMutation(b"r", [
            SetCell("a", b"x", b"1", NOW_MS), SetCell("a", b"y", b"2", NOW_MS), SetCell("v", b"z", b"3", NOW_MS),
        ]), RowMutation(b"s", [SetCell("v", b"z", b"4", NOW_MS)])])
        [row] = table.read_rows([b"r"], columns=["v"])
        assert set(row.cells) == {"v"}
        [row] = table.read_rows([b"r"], columns=[("a", b"y")])
        assert row.cells == {"a": {b"y": row.cells["a"][b"y"]}} and row.value("a", b"y") == b"2"
        # rows with no matching cell are left out
        assert [r.key for r in table.scan(columns=[("a", b"x")])] == [b"r"]

    def test_keys_only_scan_returns_no_values(self, table):
        table.mutate_rows([RowMutation(k, [SetCell("a", b"q", b"x" * 1000, NOW_MS), SetCell("v", b"r", b"y", NOW_MS - 1)])
                           for k in (b"k1", b"k2")])
        rows = list(table.scan(keys_only=True))
        assert [r.key for r in rows] == [b"k1", b"k2"]
        assert rows[0].cells["a"][b"q"][0] == Cell(b"", NOW_MS)
        assert rows[0].cells["v"][b"r"][0] == Cell(b"", NOW_MS - 1)
        assert [r.key for r in table.scan_ranges([(b"k2", None)], keys_only=True, columns=["v"])] == [b"k2"]
        assert next(table.scan()).value("a", b"q") == b"x" * 1000

    def test_scan_ranges(self, table):
        keys = [bytes([i]) + b"k" for i in range(10)]
        table.mutate_rows([RowMutation(k, [SetCell("a", b"q", k, NOW_MS)]) for k in keys])
        ranges = [(bytes([7]), bytes([9])), (bytes([1]), bytes([3]))]
        assert [r.key for r in table.scan_ranges(ranges)] == [keys[1], keys[2], keys[7], keys[8]]
        assert [r.key for r in table.scan_ranges(ranges, limit=3)] == [keys[1], keys[2], keys[7]]

    # -- garbage collection ----------------------------------------------------------------

    def test_max_age_hides_and_compact_removes(self, backend, name):
        backend.create_table(name, {"f": GCPolicy(max_versions=5, max_age_s=3600.0)})
        table = backend.table(name)
        old, fresh = NOW_MS - 7200 * 1000, NOW_MS
        table.mutate_rows([RowMutation(b"r", [SetCell("f", b"old", b"x", old), SetCell("f", b"new", b"y", fresh)]),
                           RowMutation(b"s", [SetCell("f", b"old", b"z", old)])])
        [row] = table.read_rows([b"r", b"s"])
        assert set(row.cells["f"]) == {b"new"}
        assert [r.key for r in table.scan()] == [b"r"]
        table.compact()
        assert [r.key for r in table.scan()] == [b"r"]
        backend.delete_table(name)

    # -- check_and_set ----------------------------------------------------------------------

    def test_check_and_set_absent_then_match_then_mismatch(self, table):
        assert table.check_and_set(b"lease", "a", b"owner", None, b"runner-1", NOW_MS) is True
        [row] = table.read_rows([b"lease"])
        assert row.value("a", b"owner") == b"runner-1"
        if self.check_and_set_keeps_timestamp:
            assert row.cells["a"][b"owner"][0].timestamp_ms == NOW_MS
        # the cell exists now: "must not exist" fails, and so does a wrong value
        assert table.check_and_set(b"lease", "a", b"owner", None, b"runner-2", NOW_MS + 1) is False
        assert table.check_and_set(b"lease", "a", b"owner", b"runner-2", b"runner-3", NOW_MS + 1) is False
        assert table.check_and_set(b"lease", "a", b"owner", b"runner", b"runner-3", NOW_MS + 1) is False  # a prefix
        assert table.check_and_set(b"lease", "a", b"owner", b"runner-1x", b"runner-3", NOW_MS + 1) is False
        [row] = table.read_rows([b"lease"], versions=5)
        assert [c.value for c in row.cells["a"][b"owner"]] == [b"runner-1"]
        # the expected value: replaced
        assert table.check_and_set(b"lease", "a", b"owner", b"runner-1", b"runner-2", NOW_MS + 1) is True
        [row] = table.read_rows([b"lease"])
        assert row.value("a", b"owner") == b"runner-2"
        # other cells of the row, and other rows, are other cells
        assert table.check_and_set(b"lease", "a", b"owner2", None, b"x", NOW_MS) is True
        assert table.check_and_set(b"lease2", "a", b"owner", None, b"y", NOW_MS) is True
        assert table.read_rows([b"lease"])[0].value("a", b"owner") == b"runner-2"

    def test_check_and_set_compares_exact_bytes(self, table):
        tricky = b".*[a-z]+\\$^(x|y)\x00\xff\n" + bytes(range(256))
        assert table.check_and_set(b"r", "a", b"q\x00.*", None, tricky, NOW_MS) is True
        assert table.check_and_set(b"r", "a", b"q\x00.*", b".*", b"no", NOW_MS + 1) is False
        assert table.check_and_set(b"r", "a", b"q\x00.", None, b"other column", NOW_MS) is True
        assert table.check_and_set(b"r", "a", b"q\x00.*", tricky, b"done", NOW_MS + 1) is True
        assert table.read_rows([b"r"])[0].value("a", b"q\x00.*") == b"done"

    def test_check_and_set_sees_only_the_newest_version(self, table):
        put(table, b"r", "v", b"q", b"old", NOW_MS - 1000)
        put(table, b"r", "v", b"q", b"new", NOW_MS)
        assert table.check_and_set(b"r", "v", b"q", b"old", b"x", NOW_MS + 1) is False
        assert table.check_and_set(b"r", "v", b"q", b"new", b"x", NOW_MS + 1) is True
        assert table.read_rows([b"r"])[0].value("v", b"q") == b"x"

    def test_check_and_set_refuses_bad_input(self, table):
        with pytest.raises(ValidationError, match="family"):
            table.check_and_set(b"r", "nope", b"q", None, b"x", NOW_MS)
        with pytest.raises(ValidationError, match="row key"):
            table.check_and_set(b"", "a", b"q", None, b"x", NOW_MS)
        with pytest.raises(ValidationError, match="expected"):
            table.check_and_set(b"r", "a", b"q", "text", b"x", NOW_MS)
        with pytest.raises(ValidationError, match="value"):
            table.check_and_set(b"r", "a", b"q", None, "text", NOW_MS)
        with pytest.raises(ValidationError, match="timestamp_ms"):
            table.check_and_set(b"r", "a", b"q", None, b"x", -1)
        assert table.read_rows([b"r"]) == []

    def test_check_and_set_from_threads_has_one_winner(self, table):
        contenders = 8
        for round_, expected in enumerate([None, "winner"]):
            barrier = threading.Barrier(contenders)
            wins: list[bytes] = []
            errors: list[BaseException] = []
            previous = table.read_rows([b"lease"])[0].value("a", b"owner") if expected else None

            def contend(i: int) -> None:
                mine = f"runner-{round_}-{i}".encode()
                try:
                    barrier.wait()
                    if table.check_and_set(b"lease", "a", b"owner", previous, mine, NOW_MS + round_):
                        wins.append(mine)
                except BaseException as e:  # reported below
                    errors.append(e)

            threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert errors == []
            assert len(wins) == 1, wins
            assert table.read_rows([b"lease"])[0].value("a", b"owner") == wins[0]

    def test_check_and_set_treats_an_expired_cell_as_absent(self, backend, name):
        backend.create_table(name, {"f": GCPolicy(max_versions=1, max_age_s=3600.0)})
        table = backend.table(name)
        put(table, b"r", "f", b"q", b"old", NOW_MS - 7200 * 1000)
        assert table.check_and_set(b"r", "f", b"q", b"old", b"x", NOW_MS) is False
        assert table.check_and_set(b"r", "f", b"q", None, b"new", NOW_MS) is True
        assert table.read_rows([b"r"])[0].value("f", b"q") == b"new"
        backend.delete_table(name)
