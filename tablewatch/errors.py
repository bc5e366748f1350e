"""The tablewatch error tree.

Every error tablewatch raises on purpose is a :class:`TablewatchError`. Backends
wrap their driver's errors (sqlite3, gRPC, Thrift) at the boundary with
``raise StoreUnavailable(...) from e`` so that callers never need to know which
backend they talk to.
"""

from __future__ import annotations

from typing import Any


class TablewatchError(Exception):
    """Base class of every error tablewatch raises on purpose."""


class StoreError(TablewatchError):
    """The store refused or failed an operation."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (server down, file not writable, timeout).

    Retrying later may succeed; the collector spools on this error.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"store {url!r} is unavailable: {reason}")
        self.url = url
        self.reason = reason


class TableNotFound(StoreError):
    """A table that does not exist was read or written."""


class TableExists(StoreError):
    """``create_table`` was called for a table that already exists."""


class StoreURLError(TablewatchError, ValueError):
    """A store URL is malformed or names an unknown backend."""


class MissingDependency(TablewatchError, ImportError):
    """A backend's optional driver package is not installed."""


class RuleError(TablewatchError, ValueError):
    """An invalid rules file. The message names the file, the line, the rule
    and the field (one line per problem), e.g.
    ``rules.yaml:14: rules[2] ('etl-slow').window: must be a duration like 30m, 1h, 7d (got 'abc')``;
    ``problems`` holds the lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class ValidationError(TablewatchError, ValueError):
    """Bad input: ``field`` names what was wrong, ``value`` is what was given."""

    def __init__(self, field: str, value: Any, problem: str) -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}: {problem} (got {shown})")
        self.field = field
        self.value = value
        self.problem = problem


class ValidationTypeError(ValidationError, TypeError):
    """Bad input of the wrong type (a string where a number belongs, ...)."""


class StoreNotFound(StoreError):
    """A command that only reads was pointed at a store that does not exist
    (tablewatch never creates a store for a reader)."""


class StoreSchemaError(StoreError):
    """The store's own metadata (``tw_meta``) is from a newer tablewatch, or damaged."""


class SeriesNotFound(TablewatchError, LookupError):
    """No series has exactly these tags, but some have them among others;
    ``candidates`` lists those series. A question asked wrong, not a store
    failure: not a :class:`StoreError`."""

    def __init__(self, message: str, candidates: list) -> None:
        super().__init__(message)
        self.candidates = candidates
