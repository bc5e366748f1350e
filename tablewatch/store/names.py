"""Series identity: metric names, tags, their validation and the series id.

A series is a metric name plus tags. Its id is an 8-byte BLAKE2b hash of the
canonical form ``metric \\0 k1=v1 \\0 k2=v2 ...`` (tags sorted by key), so the
same metric and tags give the same id in every process and on every backend.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tablewatch.errors import ValidationError, ValidationTypeError

MAX_METRIC_CHARS = 200
MAX_TAG_KEY_CHARS = 64
MAX_TAG_VALUE_CHARS = 256
MAX_TAGS = 16
SERIES_ID_BYTES = 8

METRIC_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/\-]*$")
TAG_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)  # slots: listing 100k series builds 100k of them
class Series:
    """A metric name and its tags; ``id`` is the fixed-width hash of both."""

    metric: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> bytes:
        return series_id(self.metric, self.tags)

    def __hash__(self) -> int:
        return hash((self.metric, tuple(sorted(self.tags.items()))))


def check_encodable(field_name: str, text: str) -> str:
    """``text`` if it can be stored (UTF-8 encoded); a ValidationError naming
    the field otherwise. A lone surrogate is what ``os.fsdecode()`` makes of a
    file name that is not UTF-8 (``b"caf\\xe9"`` → ``"caf\\udce9"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValidationError(
            field_name, text,
            f"cannot be encoded as UTF-8 (character {text[e.start]!r} at position {e.start}; a name decoded with "
            "os.fsdecode()? decode its bytes with errors='replace')",
        ) from None
    return text


def validate_metric(metric: object, field_name: str = "metric") -> str:
    if not isinstance(metric, str):
        raise ValidationTypeError(field_name, metric, "must be a string")
    if not metric:
        raise ValidationError(field_name, metric, "must not be empty")
    if len(metric) > MAX_METRIC_CHARS:
        raise ValidationError(field_name, metric, f"is {len(metric)} characters, over {MAX_METRIC_CHARS}")
    if not METRIC_RE.match(metric):
        raise ValidationError(
            field_name, metric, "may hold only letters, digits and _ . : / - (and not start with . : / -)"
        )
    return metric


def validate_tags(tags: object) -> dict[str, str]:
    """Tags as a plain dict of str to str, sorted by key; raise naming the bad tag."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise ValidationTypeError("tags", tags, "must be a mapping of tag names to string values")
    if len(tags) > MAX_TAGS:
        raise ValidationError("tags", dict(tags), f"has {len(tags)} tags, over {MAX_TAGS}")
    clean: dict[str, str] = {}
    for key in sorted(tags, key=str):
        value = tags[key]
        if not isinstance(key, str):
            raise ValidationTypeError("tag name", key, "must be a string")
        if not key or len(key) > MAX_TAG_KEY_CHARS:
            raise ValidationError("tag name", key, f"must be 1 to {MAX_TAG_KEY_CHARS} characters")
        if not TAG_KEY_RE.match(key):
            raise ValidationError("tag name", key, "may hold only letters, digits and _ . - (starting with a letter or _)")
        if not isinstance(value, str):
            raise ValidationTypeError(f"tags[{key!r}]", value, "tag values must be strings")
        if not value or len(value) > MAX_TAG_VALUE_CHARS:
            raise ValidationError(f"tags[{key!r}]", value, f"must be 1 to {MAX_TAG_VALUE_CHARS} characters")
        if _CONTROL_RE.search(value):
            raise ValidationError(f"tags[{key!r}]", value, "must not contain control characters")
        check_encodable(f"tags[{key!r}]", value)
        clean[key] = value
    return clean


def canonical(metric: str, tags: Mapping[str, str]) -> bytes:
    parts = [metric] + [f"{k}={tags[k]}" for k in sorted(tags)]
    return "\x00".join(parts).encode()


def series_id(metric: str, tags: Mapping[str, str]) -> bytes:
    return hashlib.blake2b(canonical(metric, tags), digest_size=SERIES_ID_BYTES).digest()
