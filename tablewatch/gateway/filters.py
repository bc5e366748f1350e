"""HBase's filter language, parsed and evaluated as an HBase 2.x region server does.

A Thrift scan may carry a filter string (``TScan.filterString``, happybase's
``table.scan(filter=...)``), which HBase's Thrift server turns into filter
objects with ``ParseFilter``. This module is the gateway's ``ParseFilter`` and
those filters, and :func:`apply_filter` runs them over rows the way HBase's
``RegionScanner`` and ``UserScanQueryMatcher`` do.

The grammar (HBase reference guide, "Thrift API and Filter Language")::

    expression := term ("OR" term)*                  lowest precedence
    term       := unary ("AND" unary)*
    unary      := ("SKIP" | "WHILE") unary | "(" expression ")" | filter
    filter     := Name "(" [argument ("," argument)*] ")"
    argument   := 'quoted string' ('' is a quote) | integer | true | false
                | < | <= | = | != | >= | >

``SKIP`` and ``WHILE`` bind tighter than ``AND``, which binds tighter than
``OR`` (ParseFilter's precedence: SKIP = WHILE > AND > OR). ``A AND B`` is a
``FilterList`` that must pass all, ``A OR B`` one that must pass one; ``SKIP
F`` drops a whole row when ``F`` filters any of its cells (``SkipFilter``);
``WHILE F`` ends the scan as soon as ``F`` filters something
(``WhileMatchFilter``).

Comparators are quoted ``'type:value'``: ``binary`` (byte order),
``binaryprefix`` (byte order of the first ``len(value)`` bytes),
``regexstring`` (a regular expression found anywhere in the UTF-8 text, ``.``
matching newlines too) and ``substring`` (contained, case-insensitive); the
last two only with ``=`` and ``!=``. ``ValueFilter(<, 'binary:5')`` keeps the
cells whose value sorts before ``5``.

How a scan evaluates them (HBase 2.x, kept here because results depend on it):

- Per row: ``filter_row_key``, then each cell in (family, qualifier, newest
  first) order through ``filter_cell``, then ``filter_row_cells`` and
  ``filter_row``; ``reset`` between rows. ``filter_all_remaining`` is asked
  before every cell and after every row: once true, the scan ends (the row in
  progress keeps the cells already included).
- Filters see every version a family keeps; a Thrift scan then returns the
  newest version each column has left (HBASE-17125). So ``TimestampsFilter``
  and ``ValueFilter`` can return an older version when the newest is filtered.
- ``NEXT_ROW`` skips the rest of the row *in that family* (HBase scans each
  family's store separately); ``NEXT_COL`` the rest of the column.
- A seek hint (``ColumnRangeFilter``/``ColumnPrefixFilter`` below their
  start) is taken as ``SKIP``: the same cells come back, only slower.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

# -- return codes: (cell included?, how far to skip: cell, column, row) ----------------

CELL, COLUMN, ROW = 0, 1, 2
ReturnCode = tuple[bool, int]
INCLUDE: ReturnCode = (True, CELL)
INCLUDE_AND_NEXT_COL: ReturnCode = (True, COLUMN)
INCLUDE_AND_SEEK_NEXT_ROW: ReturnCode = (True, ROW)
SKIP: ReturnCode = (False, CELL)
NEXT_COL: ReturnCode = (False, COLUMN)
NEXT_ROW: ReturnCode = (False, ROW)

COMPARE_OPERATORS = ("<", "<=", "=", "!=", ">=", ">")
COMPARATOR_TYPES = ("binary", "binaryprefix", "regexstring", "substring")


class FilterError(ValueError):
    """A filter string HBase's ParseFilter would refuse; the message names the problem."""


@dataclass(frozen=True)
class ScanCell:
    family: str
    qualifier: bytes
    value: bytes
    timestamp_ms: int


# -- comparators ------------------------------------------------------------------------


def _sign(a: bytes, b: bytes) -> int:
    return (a > b) - (a < b)


@dataclass(frozen=True)
class Comparator:
    """``compare_to(data)``: this comparator's value against ``data``, as
    HBase's ``ByteArrayComparable.compareTo`` (0 is a match)."""

    kind: str
    value: bytes
    pattern: re.Pattern | None = None

    def compare_to(self, data: bytes) -> int:
        if self.kind == "binary":
            return _sign(self.value, data)
        if self.kind == "binaryprefix":
            return _sign(self.value, data[: len(self.value)])
        text = data.decode("utf-8", "replace")
        if self.kind == "regexstring":
            assert self.pattern is not None
            return 0 if self.pattern.search(text) else 1
        return 0 if self.value.decode("utf-8", "replace").lower() in text.lower() else 1


def _filtered_out(operator: str, result: int) -> bool:
    """HBase's ``CompareFilter.compare``: True when the cell does not pass
    (``result`` is the comparator's value compared to the cell's)."""
    return {
        "<": result <= 0, "<=": result < 0, "=": result != 0,
        "!=": result == 0, ">=": result > 0, ">": result >= 0,
    }[operator]


# -- filters ---------------------------------------------------------------------------------


class Filter:
    """HBase's ``Filter`` protocol (the defaults are ``FilterBase``'s)."""

    reversed = False

    def reset(self) -> None:
        pass

    def filter_row_key(self, key: bytes) -> bool:
        """True: leave out this whole row."""
        return False

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        return INCLUDE

    def transform_cell(self, cell: ScanCell) -> ScanCell:
        return cell

    def filter_row_cells(self, cells: list[ScanCell]) -> None:
        """Change the row's included cells in place."""

    def filter_row(self) -> bool:
        """True: leave out the row (asked once its cells are known)."""
        return False

    def filter_all_remaining(self) -> bool:
        """True: the scan is over."""
        return False

    def set_reversed(self, reversed_: bool) -> None:
        self.reversed = reversed_


class FilterList(Filter):
    """``A AND B`` (``must_pass_all``) or ``A OR B``, as HBase 2.x's
    ``FilterListWithAND`` / ``FilterListWithOR``."""

    def __init__(self, filters: Sequence[Filter], must_pass_all: bool) -> None:
        self.filters = list(filters)
        self.must_pass_all = must_pass_all
        # OR (HBASE-17678, HBASE-18368): what each sub-filter last asked to
        # skip in this row, so that it is not asked again about a cell it
        # already skipped (a column, or the rest of a family).
        self._previous: list[tuple[ReturnCode, str, bytes] | None] = [None] * len(self.filters)

    def set_reversed(self, reversed_: bool) -> None:
        super().set_reversed(reversed_)
        for f in self.filters:
            f.set_reversed(reversed_)

    def reset(self) -> None:
        for f in self.filters:
            f.reset()
        self._previous = [None] * len(self.filters)

    def filter_row_key(self, key: bytes) -> bool:
        # every sub-filter is asked (PrefixFilter notes the row change there)
        verdicts = [f.filter_all_remaining() or f.filter_row_key(key) for f in self.filters]
        return any(verdicts) if self.must_pass_all else all(verdicts)

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        if self.must_pass_all:  # "and" of inclusion, the longest skip
            seek = CELL
            for f in self.filters:
                if f.filter_all_remaining():
                    return NEXT_ROW
                sub_include, sub_seek = f.filter_cell(cell)
                seek = max(seek, sub_seek)
                if not sub_include:
                    return False, seek  # later filters do not see it (HBASE-20565)
            return True, seek
        code: ReturnCode | None = None  # "or" of inclusion, the shortest skip
        for i, f in enumerate(self.filters):
            if f.filter_all_remaining():
                continue
            sub = self._remembered(i, cell) or f.filter_cell(cell)
            self._previous[i] = None if sub[1] == CELL else (sub, cell.family, cell.qualifier)
            code = sub if code is None else (code[0] or sub[0], min(code[1], sub[1]))
        return SKIP if code is None else code

    def _remembered(self, i: int, cell: ScanCell) -> ReturnCode | None:
        previous = self._previous[i]
        if previous is None:
            return None
        (_, seek), family, qualifier = previous
        if seek == COLUMN and (family, qualifier) == (cell.family, cell.qualifier):
            return NEXT_COL
        if seek == ROW and family == cell.family:
            return NEXT_ROW
        return None

    def transform_cell(self, cell: ScanCell) -> ScanCell:
        for f in self.filters:
            cell = f.transform_cell(cell)
        return cell

    def filter_row_cells(self, cells: list[ScanCell]) -> None:
        for f in self.filters:
            f.filter_row_cells(cells)

    def filter_row(self) -> bool:
        if self.must_pass_all:
            return any(f.filter_row() for f in self.filters)  # stops at the first: as HBase
        return all(f.filter_row() for f in self.filters)

    def filter_all_remaining(self) -> bool:
        if self.must_pass_all:
            return any(f.filter_all_remaining() for f in self.filters)
        return all(f.filter_all_remaining() for f in self.filters)


class SkipFilter(Filter):
    """``SKIP F``: a row is left out whole when ``F`` filters any of its cells."""

    def __init__(self, inner: Filter) -> None:
        self.inner = inner
        self._filter_row = False

    def set_reversed(self, reversed_: bool) -> None:
        super().set_reversed(reversed_)
        self.inner.set_reversed(reversed_)

    def reset(self) -> None:
        self.inner.reset()
        self._filter_row = False

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        code = self.inner.filter_cell(cell)
        self._filter_row = self._filter_row or code != INCLUDE
        return code

    def transform_cell(self, cell: ScanCell) -> ScanCell:
        return self.inner.transform_cell(cell)

    def filter_row(self) -> bool:
        return self._filter_row


class WhileMatchFilter(Filter):
    """``WHILE F``: the scan ends as soon as ``F`` filters a row key, a cell
    or a row."""

    def __init__(self, inner: Filter) -> None:
        self.inner = inner
        self._done = False

    def set_reversed(self, reversed_: bool) -> None:
        super().set_reversed(reversed_)
        self.inner.set_reversed(reversed_)

    def reset(self) -> None:
        self.inner.reset()

    def filter_all_remaining(self) -> bool:
        return self._done or self.inner.filter_all_remaining()

    def filter_row_key(self, key: bytes) -> bool:
        if self.filter_all_remaining():
            return True
        filtered = self.inner.filter_row_key(key)
        self._done = self._done or filtered
        return filtered

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        code = self.inner.filter_cell(cell)
        self._done = self._done or code != INCLUDE
        return code

    def transform_cell(self, cell: ScanCell) -> ScanCell:
        return self.inner.transform_cell(cell)

    def filter_row(self) -> bool:
        filtered = self.inner.filter_row()
        self._done = self._done or filtered
        return filtered


class KeyOnlyFilter(Filter):
    def __init__(self, length_as_value: bool = False) -> None:
        self.length_as_value = length_as_value

    def transform_cell(self, cell: ScanCell) -> ScanCell:
        return replace(cell, value=struct.pack(">i", len(cell.value)) if self.length_as_value else b"")


class FirstKeyOnlyFilter(Filter):
    def __init__(self) -> None:
        self._found = False

    def reset(self) -> None:
        self._found = False

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        if self._found:
            return NEXT_ROW
        self._found = True
        return INCLUDE


class PrefixFilter(Filter):
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self._filter_row = True
        self._passed = False

    def reset(self) -> None:
        self._filter_row = True

    def filter_row_key(self, key: bytes) -> bool:
        if self._passed or len(key) < len(self.prefix):
            return True
        compared = _sign(key[: len(self.prefix)], self.prefix)
        if (compared > 0 and not self.reversed) or (compared < 0 and self.reversed):
            self._passed = True
        self._filter_row = compared != 0
        return self._filter_row

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        return NEXT_ROW if self._filter_row else INCLUDE

    def filter_row(self) -> bool:
        return self._filter_row

    def filter_all_remaining(self) -> bool:
        return self._passed


class InclusiveStopFilter(Filter):
    def __init__(self, stop: bytes) -> None:
        self.stop = stop
        self._done = False

    def filter_row_key(self, key: bytes) -> bool:
        compared = _sign(self.stop, key)
        self._done = compared > 0 if self.reversed else compared < 0
        return self._done

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        return NEXT_ROW if self._done else INCLUDE

    def filter_all_remaining(self) -> bool:
        return self._done


class PageFilter(Filter):
    """At most ``size`` rows (counted where this filter is asked about rows)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._accepted = 0

    def filter_row(self) -> bool:
        self._accepted += 1
        return self._accepted > self.size

    def filter_all_remaining(self) -> bool:
        return self._accepted >= self.size


class ColumnPrefixFilter(Filter):
    """Columns whose qualifier starts with one of the prefixes (one for
    ``ColumnPrefixFilter``, several for ``MultipleColumnPrefixFilter``)."""

    def __init__(self, prefixes: Sequence[bytes]) -> None:
        self.prefixes = sorted(set(prefixes))

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        if cell.qualifier.startswith(tuple(self.prefixes)):
            return INCLUDE
        if all(cell.qualifier > p for p in self.prefixes):
            return NEXT_ROW  # qualifiers sort: none later in this family can match
        return SKIP  # HBase seeks to the next prefix


class ColumnPaginationFilter(Filter):
    def __init__(self, limit: int, offset: int) -> None:
        self.limit, self.offset = limit, offset
        self._count = 0

    def reset(self) -> None:
        self._count = 0

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        if self._count >= self.offset + self.limit:
            return NEXT_ROW
        code = NEXT_COL if self._count < self.offset else INCLUDE_AND_NEXT_COL
        self._count += 1
        return code


class ColumnCountGetFilter(Filter):
    """The first ``limit`` columns of a row. Made for gets: in a scan, the
    scan ends at the first row with more columns than that (HBase's javadoc:
    "unsuitable as a Scan filter")."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count = 0

    def reset(self) -> None:
        self._count = 0

    def filter_row_key(self, key: bytes) -> bool:
        return self.filter_all_remaining()

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        self._count += 1
        return NEXT_COL if self.filter_all_remaining() else INCLUDE_AND_NEXT_COL

    def filter_all_remaining(self) -> bool:
        return self._count > self.limit


class ColumnRangeFilter(Filter):
    """Qualifiers between ``minimum`` and ``maximum`` (None: unbounded), each
    end inclusive or not, in every family."""

    def __init__(self, minimum: bytes | None, min_inclusive: bool, maximum: bytes | None, max_inclusive: bool) -> None:
        self.minimum, self.min_inclusive = minimum, min_inclusive
        self.maximum, self.max_inclusive = maximum, max_inclusive

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        if self.minimum is not None:
            below = _sign(cell.qualifier, self.minimum)
            if below < 0:
                return SKIP  # HBase seeks to the minimum
            if below == 0 and not self.min_inclusive:
                return NEXT_COL
        if self.maximum is None:
            return INCLUDE
        above = _sign(cell.qualifier, self.maximum)
        if above < 0 or (above == 0 and self.max_inclusive):
            return INCLUDE
        return NEXT_ROW


class TimestampsFilter(Filter):
    """Only cells with one of these timestamps (milliseconds)."""

    def __init__(self, timestamps: Iterable[int]) -> None:
        self.timestamps = frozenset(timestamps)
        self._oldest = min(self.timestamps) if self.timestamps else None

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        if cell.timestamp_ms in self.timestamps:
            return INCLUDE
        if self._oldest is None or cell.timestamp_ms < self._oldest:
            return NEXT_COL  # versions come newest first: no later one can match
        return SKIP


class RowFilter(Filter):
    def __init__(self, operator: str, comparator: Comparator) -> None:
        self.operator, self.comparator = operator, comparator
        self._filter_out = False

    def reset(self) -> None:
        self._filter_out = False

    def filter_row_key(self, key: bytes) -> bool:
        if _filtered_out(self.operator, self.comparator.compare_to(key)):
            self._filter_out = True
        return self._filter_out

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        return NEXT_ROW if self._filter_out else INCLUDE

    def filter_row(self) -> bool:
        return self._filter_out


class FamilyFilter(Filter):
    def __init__(self, operator: str, comparator: Comparator) -> None:
        self.operator, self.comparator = operator, comparator

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        if _filtered_out(self.operator, self.comparator.compare_to(cell.family.encode())):
            return NEXT_ROW  # the rest of this family
        return INCLUDE


class QualifierFilter(Filter):
    def __init__(self, operator: str, comparator: Comparator) -> None:
        self.operator, self.comparator = operator, comparator

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        return SKIP if _filtered_out(self.operator, self.comparator.compare_to(cell.qualifier)) else INCLUDE


class ValueFilter(Filter):
    def __init__(self, operator: str, comparator: Comparator) -> None:
        self.operator, self.comparator = operator, comparator

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        return SKIP if _filtered_out(self.operator, self.comparator.compare_to(cell.value)) else INCLUDE


class SingleColumnValueFilter(Filter):
    """Rows whose column ``family:qualifier`` passes the comparison. A row
    without the column passes unless ``filter_if_missing``; with
    ``latest_version_only`` (the default) only the column's newest version is
    tested, otherwise any version may pass."""

    def __init__(self, family: bytes, qualifier: bytes, operator: str, comparator: Comparator,
                 filter_if_missing: bool = False, latest_version_only: bool = True) -> None:
        self.family, self.qualifier = family, qualifier
        self.operator, self.comparator = operator, comparator
        self.filter_if_missing, self.latest_version_only = filter_if_missing, latest_version_only
        self._found = self._matched = False

    def reset(self) -> None:
        self._found = self._matched = False

    def _is_column(self, cell: ScanCell) -> bool:
        return cell.family.encode() == self.family and cell.qualifier == self.qualifier

    def filter_cell(self, cell: ScanCell) -> ReturnCode:
        if self._matched:
            return INCLUDE
        if self.latest_version_only and self._found:
            return NEXT_ROW
        if not self._is_column(cell):
            return INCLUDE
        self._found = True
        if _filtered_out(self.operator, self.comparator.compare_to(cell.value)):
            return NEXT_ROW if self.latest_version_only else INCLUDE
        self._matched = True
        return INCLUDE

    def filter_row(self) -> bool:
        return not self._matched if self._found else self.filter_if_missing


class SingleColumnValueExcludeFilter(SingleColumnValueFilter):
    """:class:`SingleColumnValueFilter`, leaving the tested column out of the rows."""

    def filter_row_cells(self, cells: list[ScanCell]) -> None:
        cells[:] = [c for c in cells if not self._is_column(c)]


# -- running a filter over rows -----------------------------------------------------------


def apply_filter(
    rows: Iterable[tuple[bytes, Sequence[Sequence[ScanCell]]]], scan_filter: Filter, versions: int = 1
) -> Iterator[tuple[bytes, list[ScanCell]]]:
    """The rows and cells a filtered HBase scan returns. ``rows`` gives each
    row's columns in (family, qualifier) order, each column's cells newest
    first; at most ``versions`` cells per column come back."""
    for key, columns in rows:
        if scan_filter.filter_row_key(key):
            if scan_filter.filter_all_remaining():
                return
            scan_filter.reset()
            continue
        kept: list[ScanCell] = []
        done = False
        skipped_family: str | None = None
        for column in columns:
            if done:
                break
            if column and column[0].family == skipped_family:
                continue
            included = 0
            for cell in column:
                if scan_filter.filter_all_remaining():
                    done = True  # HBase's DONE_SCAN: this row keeps what it has
                    break
                include, seek = scan_filter.filter_cell(cell)
                if include:
                    included += 1
                    if included > versions:
                        break
                    kept.append(scan_filter.transform_cell(cell))
                if seek == COLUMN:
                    break
                if seek == ROW:
                    skipped_family = cell.family
                    break
        # HBase asks again at the next cell it reads, before the reset below.
        done = done or scan_filter.filter_all_remaining()
        scan_filter.filter_row_cells(kept)
        excluded = not kept or scan_filter.filter_row()
        scan_filter.reset()
        if not excluded:
            yield key, kept
        if done or scan_filter.filter_all_remaining():
            return


# -- the parser ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    rb"(?P<space>[ \t\r\n]+)|(?P<string>'(?:[^']|'')*')|(?P<number>-?[0-9]+)|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    rb"|(?P<punct>[(),])|(?P<operator><=|>=|!=|=|<|>)"
)
_KEYWORDS = ("AND", "OR", "SKIP", "WHILE")
LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, word, punct, operator, end
    value: object
    offset: int


def parse_filter(text: bytes | str) -> Filter:
    """A filter object from a filter string; :class:`FilterError` names what
    is wrong and where."""
    raw = text.encode() if isinstance(text, str) else bytes(text)
    return _Parser(raw).parse()


class _Parser:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.tokens = self._tokenize()
        self.i = 0

    def error(self, problem: str, offset: int | None = None) -> FilterError:
        where = "" if offset is None else f" at offset {offset}"
        return FilterError(f"filter string {self.raw.decode('utf-8', 'replace')!r}: {problem}{where}")

    def _tokenize(self) -> list[_Token]:
        tokens: list[_Token] = []
        position = 0
        while position < len(self.raw):
            match = _TOKEN.match(self.raw, position)
            if match is None:
                if self.raw[position:position + 1] == b"'":
                    raise self.error("a quoted argument is not closed", position)
                raise self.error(f"unexpected character {self.raw[position:position + 1].decode('latin-1')!r}",
                                 position)
            kind = match.lastgroup or ""
            text = match.group(kind)
            if kind == "string":
                tokens.append(_Token(kind, text[1:-1].replace(b"''", b"'"), position))
            elif kind == "number":
                tokens.append(_Token(kind, int(text), position))
            elif kind != "space":
                tokens.append(_Token(kind, text.decode(), position))
            position = match.end()
        tokens.append(_Token("end", None, len(self.raw)))
        return tokens

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, value: str, after: str) -> None:
        token = self.next()
        if token.value != value or token.kind not in ("punct", "word"):
            got = "the end" if token.kind == "end" else repr(token.value)
            raise self.error(f"expected {value!r} {after}, got {got}", token.offset)

    def parse(self) -> Filter:
        if self.peek().kind == "end":
            raise self.error("no filter")
        result = self.expression()
        token = self.peek()
        if token.kind != "end":
            if token.value == ")":
                raise self.error("mismatched parenthesis: ')' without '('", token.offset)
            raise self.error(f"expected AND, OR or the end, got {token.value!r}", token.offset)
        return result

    def _is(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.value == word

    def expression(self) -> Filter:
        terms = [self.term()]
        while self._is("OR"):
            self.next()
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else FilterList(terms, must_pass_all=False)

    def term(self) -> Filter:
        unaries = [self.unary()]
        while self._is("AND"):
            self.next()
            unaries.append(self.unary())
        return unaries[0] if len(unaries) == 1 else FilterList(unaries, must_pass_all=True)

    def unary(self) -> Filter:
        token = self.next()
        if token.kind == "word" and token.value in ("SKIP", "WHILE"):
            inner = self.unary()
            return SkipFilter(inner) if token.value == "SKIP" else WhileMatchFilter(inner)
        if token.kind == "punct" and token.value == "(":
            inner = self.expression()
            closing = self.next()
            if closing.value != ")":
                got = "the end" if closing.kind == "end" else repr(closing.value)
                raise self.error(f"mismatched parenthesis: expected ')', got {got}", closing.offset)
            return inner
        if token.kind == "word" and token.value not in _KEYWORDS:
            return self.simple_filter(str(token.value), token.offset)
        got = "the end" if token.kind == "end" else repr(token.value)
        raise self.error(f"expected a filter, '(', SKIP or WHILE, got {got}", token.offset)

    def simple_filter(self, name: str, offset: int) -> Filter:
        if name not in FILTERS:
            raise self.error(f"filter {name!r} is not supported; supported: {', '.join(sorted(FILTERS))}", offset)
        self.expect("(", f"after {name}")
        args: list[_Token] = []
        if self.peek().value != ")":
            while True:
                token = self.next()
                if token.kind not in ("string", "number", "word", "operator"):
                    got = "the end" if token.kind == "end" else repr(token.value)
                    raise self.error(f"{name}: expected an argument, got {got}", token.offset)
                args.append(token)
                if self.peek().value == ",":
                    self.next()
                    continue
                break
        self.expect(")", f"after the arguments of {name}")
        return _Arguments(self, name, args).build(FILTERS[name])


class _Arguments:
    """A filter's arguments, checked as its ``createFilterFromArguments`` does."""

    def __init__(self, parser: _Parser, name: str, args: list[_Token]) -> None:
        self.parser, self.name, self.args = parser, name, args

    def error(self, problem: str) -> FilterError:
        return self.parser.error(f"{self.name}: {problem}")

    def build(self, spec: tuple[str, Callable[..., Filter]]) -> Filter:
        signature, make = spec
        counts = [len(s.split()) for s in signature.split("|")]
        if "*" not in signature and len(self.args) not in counts:
            wanted = " or ".join(str(c) for c in counts)
            raise self.error(f"expected {wanted} arguments ({signature.replace('|', ' | ')}), got {len(self.args)}")
        return make(self)

    def string(self, i: int, what: str) -> bytes:
        token = self.args[i]
        if token.kind != "string":
            raise self.error(f"{what} must be a quoted string, got {token.value!r}")
        return bytes(token.value)  # type: ignore[arg-type]

    def integer(self, i: int, what: str, maximum: int = INT_MAX, minimum: int = 0) -> int:
        token = self.args[i]
        if token.kind != "number":
            raise self.error(f"{what} must be an integer, got {token.value!r}")
        value = int(token.value)  # type: ignore[call-overload]
        if not minimum <= value <= maximum:
            raise self.error(f"{what} must be from {minimum} to {maximum}, got {value}")
        return value

    def boolean(self, i: int, what: str) -> bool:
        token = self.args[i]
        if token.kind != "word" or str(token.value).lower() not in ("true", "false"):
            raise self.error(f"{what} must be true or false, got {token.value!r}")
        return str(token.value).lower() == "true"

    def operator(self, i: int) -> str:
        token = self.args[i]
        if token.kind != "operator":
            raise self.error(f"the compare operator must be one of {' '.join(COMPARE_OPERATORS)}, got {token.value!r}")
        return str(token.value)

    def comparator(self, i: int, operator: str) -> Comparator:
        raw = self.string(i, "the comparator")
        kind_bytes, colon, value = raw.partition(b":")
        kind = kind_bytes.decode("utf-8", "replace")
        if not colon:
            raise self.error(f"comparator {raw!r} must be 'type:value' with a type of {', '.join(COMPARATOR_TYPES)}")
        if kind not in COMPARATOR_TYPES:
            raise self.error(f"comparator type {kind!r} is not one of {', '.join(COMPARATOR_TYPES)}")
        if kind in ("regexstring", "substring") and operator not in ("=", "!="):
            raise self.error(f"a {kind} comparator can only be used with = and != (got {operator})")
        pattern = None
        if kind == "regexstring":
            try:
                pattern = re.compile(value.decode("utf-8", "replace"), re.DOTALL)
            except re.error as e:
                raise self.error(f"regexstring {value!r} is not a valid regular expression ({e})") from e
        return Comparator(kind, value, pattern)

    def compare(self, cls: type) -> Filter:
        operator = self.operator(0)
        return cls(operator, self.comparator(1, operator))


def _single_column_value(cls: type) -> Callable[[_Arguments], Filter]:
    def make(a: _Arguments) -> Filter:
        operator = a.operator(2)
        flags = (a.boolean(4, "filterIfMissing"), a.boolean(5, "latestVersionOnly")) if len(a.args) == 6 else ()
        return cls(a.string(0, "the family"), a.string(1, "the qualifier"), operator, a.comparator(3, operator),
                   *flags)
    return make


def _column_range(a: _Arguments) -> Filter:
    minimum, maximum = a.string(0, "the minimum column"), a.string(2, "the maximum column")
    return ColumnRangeFilter(minimum or None, a.boolean(1, "minColumnInclusive"), maximum or None,
                             a.boolean(3, "maxColumnInclusive"))


def _prefixes(a: _Arguments) -> Filter:
    return ColumnPrefixFilter([a.string(i, f"prefix {i + 1}") for i in range(len(a.args))])


#: name -> (argument signature(s), builder). The signatures are what error messages show.
FILTERS: dict[str, tuple[str, Callable[[_Arguments], Filter]]] = {
    "ColumnCountGetFilter": ("limit", lambda a: ColumnCountGetFilter(a.integer(0, "limit"))),
    "ColumnPaginationFilter": ("limit offset", lambda a: ColumnPaginationFilter(
        a.integer(0, "limit"), a.integer(1, "offset"))),
    "ColumnPrefixFilter": ("'prefix'", lambda a: ColumnPrefixFilter([a.string(0, "the prefix")])),
    "ColumnRangeFilter": ("'minColumn' minColumnInclusive 'maxColumn' maxColumnInclusive", _column_range),
    "FamilyFilter": ("compareOp 'comparator'", lambda a: a.compare(FamilyFilter)),
    "FirstKeyOnlyFilter": ("", lambda a: FirstKeyOnlyFilter()),
    "InclusiveStopFilter": ("'stopRow'", lambda a: InclusiveStopFilter(a.string(0, "the stop row"))),
    "KeyOnlyFilter": ("|lenAsVal", lambda a: KeyOnlyFilter(a.boolean(0, "lenAsVal") if a.args else False)),
    "MultipleColumnPrefixFilter": ("'prefix' ... *", _prefixes),
    "PageFilter": ("pageSize", lambda a: PageFilter(a.integer(0, "the page size", maximum=LONG_MAX))),
    "PrefixFilter": ("'prefix'", lambda a: PrefixFilter(a.string(0, "the prefix"))),
    "QualifierFilter": ("compareOp 'comparator'", lambda a: a.compare(QualifierFilter)),
    "RowFilter": ("compareOp 'comparator'", lambda a: a.compare(RowFilter)),
    "SingleColumnValueExcludeFilter": (
        "'family' 'qualifier' compareOp 'comparator'|'family' 'qualifier' compareOp 'comparator' "
        "filterIfMissing latestVersionOnly", _single_column_value(SingleColumnValueExcludeFilter)),
    "SingleColumnValueFilter": (
        "'family' 'qualifier' compareOp 'comparator'|'family' 'qualifier' compareOp 'comparator' "
        "filterIfMissing latestVersionOnly", _single_column_value(SingleColumnValueFilter)),
    "TimestampsFilter": ("timestamp ... *", lambda a: TimestampsFilter(
        a.integer(i, f"timestamp {i + 1}", maximum=LONG_MAX) for i in range(len(a.args)))),
    "ValueFilter": ("compareOp 'comparator'", lambda a: a.compare(ValueFilter)),
}


def sees_versions(scan_filter: Filter) -> bool:
    """Whether the filter's result can depend on versions older than each
    column's newest (if not, a scan need not read them)."""
    if isinstance(scan_filter, (ValueFilter, TimestampsFilter, SkipFilter, WhileMatchFilter)):
        return True  # (SKIP and WHILE: their inner filter may act on any cell it sees)
    if isinstance(scan_filter, SingleColumnValueFilter):
        return not scan_filter.latest_version_only
    if isinstance(scan_filter, FilterList):
        return any(sees_versions(f) for f in scan_filter.filters)
    return False


def prefix_of(scan_filter: Filter) -> bytes | None:
    """The row prefix every returned row must have, when the filter says so
    plainly (a PrefixFilter, alone, under WHILE or in an AND): the gateway
    then scans only that range."""
    if isinstance(scan_filter, PrefixFilter):
        return scan_filter.prefix
    if isinstance(scan_filter, WhileMatchFilter):
        return prefix_of(scan_filter.inner)
    if isinstance(scan_filter, FilterList) and scan_filter.must_pass_all:
        found = [p for p in (prefix_of(f) for f in scan_filter.filters) if p is not None]
        return max(found, key=len) if found else None
    return None
