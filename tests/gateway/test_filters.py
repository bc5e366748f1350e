"""HBase's filter language through the gateway: happybase ``table.scan(filter=...)``
over real Thrift, checked against the semantics HBase documents (reference
guide, "Thrift API and Filter Language"; the filter classes' javadoc)."""

from __future__ import annotations

import uuid

import happybase
import pytest

from tablewatch.gateway.filters import FilterError, parse_filter
from tablewatch.gateway.hbase_thrift import HBaseThriftGateway, hbase_idl

idl = hbase_idl()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    path = tmp_path_factory.mktemp("filters") / "store.db"
    with HBaseThriftGateway(f"sqlite:///{path}", port=0) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def connection(gateway):
    connection = happybase.Connection("127.0.0.1", gateway.port, table_prefix="flt" + uuid.uuid4().hex[:8])
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def people(connection):
    """r1..r4 with families f (3 versions) and g; r3 has no f:age; r2's f:age
    has an older version 50 under its newest, 25."""
    connection.create_table("people", {"f": dict(max_versions=3), "g": dict(max_versions=1)})
    table = connection.table("people")
    table.put(b"r2", {b"f:age": b"50"}, timestamp=1_000)
    table.put(b"r1", {b"f:name": b"alice", b"f:age": b"30", b"g:city": b"Paris"}, timestamp=2_000)
    table.put(b"r2", {b"f:name": b"bob", b"f:age": b"25"}, timestamp=2_000)
    table.put(b"r3", {b"f:name": b"carol", b"g:city": b"Berlin"}, timestamp=2_000)
    table.put(b"r4", {b"f:name": b"Dave", b"f:age": b"41"}, timestamp=2_000)
    return table


@pytest.fixture(scope="module")
def switches(connection):
    """s1: a=1 b=0; s2: a=1 b=1; s3: a=0; s4: a=1."""
    connection.create_table("switches", {"f": dict(max_versions=1)})
    table = connection.table("switches")
    for key, cells in ((b"s1", {b"f:a": b"1", b"f:b": b"0"}), (b"s2", {b"f:a": b"1", b"f:b": b"1"}),
                       (b"s3", {b"f:a": b"0"}), (b"s4", {b"f:a": b"1"})):
        table.put(key, cells)
    return table


def scan(table, filter_string: str, **options) -> dict[bytes, dict[bytes, bytes]]:
    return dict(table.scan(filter=filter_string.encode(), **options))


def keys(table, filter_string: str, **options) -> list[bytes]:
    return [key for key, _ in table.scan(filter=filter_string.encode(), **options)]


# -- comparators and compare operators --------------------------------------------------------


@pytest.mark.parametrize("operator, expected", [
    ("<", {b"r2": b"25"}), ("<=", {b"r1": b"30", b"r2": b"25"}), ("=", {b"r1": b"30"}),
    ("!=", {b"r2": b"25", b"r4": b"41"}),
    # r2's newest age (25) fails, its older version (50) passes: HBase 2.x
    # filters every version the family keeps and returns the newest that passed
    (">=", {b"r1": b"30", b"r2": b"50", b"r4": b"41"}), (">", {b"r2": b"50", b"r4": b"41"}),
])
def test_value_filter_compare_operators(people, operator, expected):
    # "cell OP operand": ValueFilter(<, 'binary:30') keeps values that sort before 30
    found = scan(people, f"ValueFilter({operator}, 'binary:30')", columns=[b"f:age"])
    assert {key: cells[b"f:age"] for key, cells in found.items()} == expected


def test_comparators(people):
    names = {"columns": [b"f:name"]}
    assert scan(people, "ValueFilter(=, 'binary:bob')") == {b"r2": {b"f:name": b"bob"}}
    assert scan(people, "ValueFilter(=, 'binaryprefix:ca')") == {b"r3": {b"f:name": b"carol"}}
    assert keys(people, "ValueFilter(>, 'binaryprefix:b')", **names) == [b"r3"]  # "c..." > "b"; bob's prefix is equal
    # regexstring: found anywhere in the value (Java's find()), not a full match
    assert keys(people, "ValueFilter(=, 'regexstring:^[a-c].*o')", **names) == [b"r2", b"r3"]
    assert keys(people, "ValueFilter(=, 'regexstring:li')", **names) == [b"r1"]
    assert keys(people, "ValueFilter(!=, 'regexstring:a')", **names) == [b"r2"]
    # substring: contained, case-insensitive
    assert scan(people, "ValueFilter(=, 'substring:DA')") == {b"r4": {b"f:name": b"Dave"}}
    assert keys(people, "ValueFilter(!=, 'substring:A')", **names) == [b"r2"]


def test_row_qualifier_and_family_filters(people):
    assert keys(people, "RowFilter(>=, 'binary:r3')") == [b"r3", b"r4"]
    assert keys(people, "RowFilter(=, 'regexstring:[24]$')") == [b"r2", b"r4"]
    assert scan(people, "QualifierFilter(=, 'binary:age')") == {
        b"r1": {b"f:age": b"30"}, b"r2": {b"f:age": b"25"}, b"r4": {b"f:age": b"41"}}
    assert scan(people, "FamilyFilter(=, 'binary:g')") == {b"r1": {b"g:city": b"Paris"}, b"r3": {b"g:city": b"Berlin"}}
    assert scan(people, "FamilyFilter(!=, 'binary:f')") == scan(people, "FamilyFilter(=, 'binary:g')")
    assert keys(people, "QualifierFilter(=, 'binaryprefix:ci')") == [b"r1", b"r3"]


# -- SingleColumnValueFilter: filterIfMissing, latestVersionOnly ----------------------------------


def test_single_column_value_filter_keeps_whole_rows_and_rows_without_the_column(people):
    found = scan(people, "SingleColumnValueFilter('f', 'age', >, 'binary:28')")
    assert list(found) == [b"r1", b"r3", b"r4"]  # r3 has no f:age: kept unless filterIfMissing
    assert found[b"r1"] == {b"f:name": b"alice", b"f:age": b"30", b"g:city": b"Paris"}
    assert keys(people, "SingleColumnValueFilter('f', 'age', >, 'binary:28', true, true)") == [b"r1", b"r4"]
    # the column must be read for the test: asking for f:name only, every row "misses" it
    assert keys(people, "SingleColumnValueFilter('f', 'age', >, 'binary:28', true, true)", columns=[b"f:name"]) == []


def test_single_column_value_filter_latest_version_only(people):
    # r2's f:age is 25 now and was 50 before: only latestVersionOnly=false looks at the older version
    assert b"r2" not in scan(people, "SingleColumnValueFilter('f', 'age', >, 'binary:45', true, true)")
    found = scan(people, "SingleColumnValueFilter('f', 'age', >, 'binary:45', true, false)")
    assert list(found) == [b"r2"]
    assert found[b"r2"] == {b"f:name": b"bob", b"f:age": b"25"}  # still the newest version of each column


def test_single_column_value_exclude_filter_drops_the_tested_column(people):
    assert scan(people, "SingleColumnValueExcludeFilter('f', 'age', >, 'binary:28', true, true)") == {
        b"r1": {b"f:name": b"alice", b"g:city": b"Paris"}, b"r4": {b"f:name": b"Dave"}}


# -- column filters ---------------------------------------------------------------------------------


def test_column_range_filter_inclusivity(connection):
    connection.create_table("ranges", {"f": dict(), "g": dict()})
    table = connection.table("ranges")
    table.put(b"c", {b"f:a": b"1", b"f:b": b"2", b"f:c": b"3", b"f:d": b"4", b"g:b": b"5"})

    def columns(filter_string: str) -> list[bytes]:
        return sorted(scan(table, filter_string).get(b"c", {}))

    assert columns("ColumnRangeFilter('b', true, 'd', false)") == [b"f:b", b"f:c", b"g:b"]  # in every family
    assert columns("ColumnRangeFilter('b', false, 'd', true)") == [b"f:c", b"f:d"]
    assert columns("ColumnRangeFilter('b', false, 'c', false)") == []
    assert columns("ColumnRangeFilter('', true, 'b', true)") == [b"f:a", b"f:b", b"g:b"]  # '' is unbounded
    assert columns("ColumnRangeFilter('c', true, '', false)") == [b"f:c", b"f:d"]


def test_column_count_get_filter_ends_the_scan_at_a_wider_row(connection):
    connection.create_table("counts", {"f": dict()})
    table = connection.table("counts")
    table.put(b"x1", {b"f:a": b"1", b"f:b": b"2"})
    table.put(b"x2", {b"f:a": b"1", b"f:b": b"2", b"f:c": b"3", b"f:d": b"4"})
    table.put(b"x3", {b"f:a": b"1"})
    # the first N columns of each row; HBase's javadoc: once a row has more,
    # filterAllRemaining() is true and the scan ends ("unsuitable as a Scan filter")
    assert scan(table, "ColumnCountGetFilter(3)") == {
        b"x1": {b"f:a": b"1", b"f:b": b"2"}, b"x2": {b"f:a": b"1", b"f:b": b"2", b"f:c": b"3"}}
    assert keys(table, "ColumnCountGetFilter(4)") == [b"x1", b"x2", b"x3"]
    assert keys(table, "ColumnPaginationFilter(2, 1)") == [b"x1", b"x2"]  # x3 has no second column
    assert scan(table, "ColumnPaginationFilter(2, 1)")[b"x2"] == {b"f:b": b"2", b"f:c": b"3"}


def test_timestamps_filter_and_filters_see_older_versions(connection):
    connection.create_table("versions", {"f": dict(max_versions=3)})
    table = connection.table("versions")
    for ts, value in ((1_000, b"v1"), (2_000, b"v2"), (3_000, b"v3")):
        table.put(b"t", {b"f:q": value}, timestamp=ts)
    assert scan(table, "TimestampsFilter(2000)", include_timestamp=True) == {b"t": {b"f:q": (b"v2", 2_000)}}
    assert scan(table, "TimestampsFilter(1000, 3000)") == {b"t": {b"f:q": b"v3"}}  # the newest that matches
    assert scan(table, "TimestampsFilter(5)") == {}
    # HBase 2.x filters every version the family keeps, then returns the newest left
    assert scan(table, "ValueFilter(=, 'binary:v1')", include_timestamp=True) == {b"t": {b"f:q": (b"v1", 1_000)}}
    assert scan(table, "ValueFilter(=, 'binary:v1')", timestamp=1_000) == {}  # the scan's time range comes first


# -- SKIP, WHILE, precedence ------------------------------------------------------------------------


def test_skip_drops_whole_rows(switches):
    assert scan(switches, "ValueFilter(!=, 'binary:0')") == {
        b"s1": {b"f:a": b"1"}, b"s2": {b"f:a": b"1", b"f:b": b"1"}, b"s4": {b"f:a": b"1"}}
    # SKIP: a row with any cell the inner filter filters is left out whole
    assert scan(switches, "SKIP ValueFilter(!=, 'binary:0')") == {
        b"s2": {b"f:a": b"1", b"f:b": b"1"}, b"s4": {b"f:a": b"1"}}


def test_while_ends_the_scan_at_the_first_failure(switches):
    assert keys(switches, "RowFilter(!=, 'binary:s3')") == [b"s1", b"s2", b"s4"]
    assert keys(switches, "WHILE RowFilter(!=, 'binary:s3')") == [b"s1", b"s2"]
    assert keys(switches, "WHILE RowFilter(!=, 'binary:s3')", reverse=True) == [b"s4"]
    # a cell that fails ends it too: s1 keeps the cells before it, nothing after
    assert scan(switches, "WHILE ValueFilter(=, 'binary:1')") == {b"s1": {b"f:a": b"1"}}


def test_precedence_skip_while_over_and_over_or(switches):
    # AND binds tighter than OR: s1 OR (s2 AND a zero value)
    assert scan(switches, "RowFilter(=, 'binary:s1') OR RowFilter(=, 'binary:s2') AND ValueFilter(=, 'binary:0')") == {
        b"s1": {b"f:a": b"1", b"f:b": b"0"}}
    assert scan(switches, "(RowFilter(=, 'binary:s1') OR RowFilter(=, 'binary:s2')) AND ValueFilter(=, 'binary:0')"
                ) == {b"s1": {b"f:b": b"0"}}
    # SKIP binds tighter than OR: (SKIP all ones) OR s3
    assert scan(switches, "SKIP ValueFilter(=, 'binary:1') OR RowFilter(=, 'binary:s3')") == {
        b"s2": {b"f:a": b"1", b"f:b": b"1"}, b"s3": {b"f:a": b"0"}, b"s4": {b"f:a": b"1"}}
    # grouped under SKIP instead, the RowFilter never sees a row key (SkipFilter
    # does not pass filterRowKey on, as in HBase), so it includes every cell
    assert keys(switches, "SKIP (ValueFilter(=, 'binary:1') OR RowFilter(=, 'binary:s3'))") == [
        b"s1", b"s2", b"s3", b"s4"]
    assert keys(switches, "WHILE RowFilter(<, 'binary:s3') AND ValueFilter(=, 'binary:1')") == [b"s1", b"s2"]
    # the first two rows, or s4
    assert keys(switches, "PrefixFilter('s') AND (PageFilter(2) OR RowFilter(=, 'binary:s4'))") == [b"s1", b"s2", b"s4"]
    assert keys(switches, "PrefixFilter('s') AND PageFilter(2) OR RowFilter(=, 'binary:s4')") == [b"s1", b"s2", b"s4"]
    assert keys(switches, "PageFilter(2) AND RowFilter(>=, 'binary:s2')") == [b"s2", b"s3"]


def test_filters_that_worked_before_still_work(switches):
    assert keys(switches, "PrefixFilter('s2') OR PrefixFilter('s4')") == [b"s2", b"s4"]
    assert keys(switches, "InclusiveStopFilter('s2') AND KeyOnlyFilter()") == [b"s1", b"s2"]
    assert scan(switches, "ColumnPrefixFilter('b') AND KeyOnlyFilter()") == {b"s1": {b"f:b": b""}, b"s2": {b"f:b": b""}}
    # in an AND a cell reaches a filter only if the ones before included it
    # (HBASE-20565): FirstKeyOnlyFilter first takes f:a, which ColumnPrefixFilter
    # refuses, then asks for the next row; the other way round it takes f:b
    assert scan(switches, "FirstKeyOnlyFilter() AND ColumnPrefixFilter('b')") == {}
    assert scan(switches, "ColumnPrefixFilter('b') AND FirstKeyOnlyFilter()") == {
        b"s1": {b"f:b": b"0"}, b"s2": {b"f:b": b"1"}}
    assert keys(switches, "MultipleColumnPrefixFilter('b', 'z') AND PageFilter(1)") == [b"s1"]


# -- malformed filter strings ---------------------------------------------------------------------


@pytest.mark.parametrize("filter_string, problem", [
    ("ValueFilter(=, 'binary:x'", "expected ')' after the arguments of ValueFilter, got the end"),
    ("(PrefixFilter('a')", "mismatched parenthesis: expected ')', got the end"),
    ("PrefixFilter('a'))", "mismatched parenthesis: ')' without '('"),
    ("NoSuchFilter('a')", "filter 'NoSuchFilter' is not supported; supported: ColumnCountGetFilter"),
    ("PrefixFilter('a') AND", "expected a filter, '(', SKIP or WHILE, got the end"),
    ("PrefixFilter('a') PrefixFilter('b')", "expected AND, OR or the end, got 'PrefixFilter'"),
    ("ValueFilter(~, 'binary:x')", "unexpected character '~' at offset 12"),
    ("ValueFilter('binary:x', =)", "ValueFilter: the compare operator must be one of < <= = != >= >, got b'binary:x'"),
    ("ValueFilter(=, 'glob:x')", "ValueFilter: comparator type 'glob' is not one of binary, binaryprefix, regexstring"),
    ("ValueFilter(=, 'x')", "ValueFilter: comparator b'x' must be 'type:value'"),
    ("ValueFilter(<, 'regexstring:a')", "ValueFilter: a regexstring comparator can only be used with = and != (got <)"),
    ("RowFilter(>=, 'substring:a')", "RowFilter: a substring comparator can only be used with = and !="),
    ("ValueFilter(=, 'regexstring:(')", "ValueFilter: regexstring b'(' is not a valid regular expression"),
    ("SingleColumnValueFilter('f', 'q', =)", "SingleColumnValueFilter: expected 4 or 6 arguments"),
    ("SingleColumnValueFilter('f', 'q', =, 'binary:x', yes, true)", "filterIfMissing must be true or false, got 'yes'"),
    ("ColumnCountGetFilter(-1)", "ColumnCountGetFilter: limit must be from 0 to 2147483647, got -1"),
    ("ColumnRangeFilter('a', true, 'b')", "ColumnRangeFilter: expected 4 arguments"),
    ("PrefixFilter('unclosed)", "a quoted argument is not closed at offset 13"),
    ("SKIP", "expected a filter, '(', SKIP or WHILE, got the end"),
])
def test_malformed_filter_strings_name_the_problem(switches, filter_string, problem):
    with pytest.raises(idl.IOError) as raised:
        list(switches.scan(filter=filter_string.encode()))
    message = raised.value.message
    message = message.decode() if isinstance(message, bytes) else message
    assert problem in message and repr(filter_string) in message
    assert keys(switches, "PrefixFilter('s1')") == [b"s1"]  # the connection still works


def test_parser_builds_filter_lists_with_hbase_precedence():
    parsed = parse_filter("KeyOnlyFilter() OR FirstKeyOnlyFilter() AND SKIP WHILE PageFilter(1) AND PrefixFilter('it''s')")
    assert type(parsed).__name__ == "FilterList" and not parsed.must_pass_all
    first, second = parsed.filters
    assert type(first).__name__ == "KeyOnlyFilter"
    assert second.must_pass_all and [type(f).__name__ for f in second.filters] == [
        "FirstKeyOnlyFilter", "SkipFilter", "PrefixFilter"]
    assert type(second.filters[1].inner).__name__ == "WhileMatchFilter"
    assert second.filters[2].prefix == b"it's"
    with pytest.raises(FilterError, match="no filter"):
        parse_filter("  ")
