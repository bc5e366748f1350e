"""In-memory distribution sketches of a model's features and predictions,
drained by the Collector into the store's ``tw_sketches`` table.

A serving process calls :meth:`PredictionSketches.add` once per prediction;
the collector's flush loop calls :meth:`PredictionSketches.drain` and writes
what it returns with ``Store.write_sketches`` (spooling it when the store is
down; the records' ``to_dict()`` form is JSON). See
:mod:`tablewatch.store.sketches` for the sketches and how they are stored.

Each (model, feature, window) being accumulated is an *entry* with its own
random writer id. ``drain`` emits an entry's **cumulative** sketch of its window
under the same writer id with a growing ``seq``, so the store keeps one cell per
entry (the newest emission), not one per flush, and a re-emission replayed late
from a spool never hides a newer one. An entry is emitted when its window has
closed, or at most every ``emit_every_s`` seconds while it is open, or by
``drain(force=True)`` (on close); a closed window's entry is then forgotten, and
a late value for it starts a new entry (a new cell, merged on read).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tablewatch.errors import ValidationError, ValidationTypeError
from tablewatch.store.sketches import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_CATEGORIES,
    PREDICTION,
    WRITER_BYTES,
    DistributionSketch,
    SketchRecord,
    validate_name,
)
from tablewatch.store.timestamps import MAX_TS_US, MIN_TS_US

US_PER_S = 1_000_000
DEFAULT_WINDOW_S = 3600
DEFAULT_EMIT_EVERY_S = 60.0
MAX_FEATURES_PER_CALL = 1000
#: Numbers are buffered and sketched in vectorised batches of this many.
_PENDING_LIMIT = 2048
_NUMERIC = (int, float, np.integer, np.floating)
_CATEGORICAL = (str, bool, np.bool_)


@dataclass
class _Entry:
    writer: str
    sketch: DistributionSketch
    last_emit: float
    pending: list[float] = field(default_factory=list)
    seq: int = 0
    dirty: bool = False

    def settle(self) -> None:
        if self.pending:
            self.sketch.missing += self.sketch.numeric.add_many(self.pending)
            self.pending = []


class PredictionSketches:
    """Accumulates per (model, feature, window) distribution sketches.

    ``window_s``: width of the time windows, aligned on the epoch (drift can
    later be computed for any union of windows); ``emit_every_s``: how often an
    open window is re-emitted; ``alpha``: relative accuracy of numeric quantiles;
    ``max_categories``: categories kept per categorical feature. ``clock``
    returns epoch seconds (a seam for tests). Thread-safe.
    """

    def __init__(
        self,
        *,
        window_s: int = DEFAULT_WINDOW_S,
        emit_every_s: float = DEFAULT_EMIT_EVERY_S,
        alpha: float = DEFAULT_ALPHA,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(window_s, bool) or not isinstance(window_s, int) or not 1 <= window_s <= 86_400 or 86_400 % window_s:
            raise ValidationError("window_s", window_s, "must be a whole number of seconds dividing a day (86400)")
        if isinstance(emit_every_s, bool) or not isinstance(emit_every_s, (int, float)) or emit_every_s < 0:
            raise ValidationError("emit_every_s", emit_every_s, "must be a number of seconds >= 0")
        DistributionSketch.create(alpha, max_categories)  # checks both
        self.window_s = window_s
        self.emit_every_s = float(emit_every_s)
        self.alpha = alpha
        self.max_categories = max_categories
        self._clock = clock
        self._window_us = window_s * US_PER_S
        self._entries: dict[tuple[str, str, int], _Entry] = {}
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Entries (model, feature, window) being accumulated."""
        return len(self._entries)

    def add(self, model: str, features: Mapping[str, Any] | None, prediction: Any, ts_us: int | None = None) -> None:
        """Count one prediction: each feature value, and ``prediction`` as the
        feature ``"__prediction__"`` (a mapping of outputs, e.g. class
        probabilities, as ``"__prediction__.<key>"``). Numbers are sketched as
        numeric, strings and booleans as categorical, None/NaN/±inf counted as
        missing. ``ts_us``: event time in µs since the epoch (default: now).

        Everything is checked before anything is counted; a bad value raises
        :class:`~tablewatch.errors.ValidationError` naming it
        (``features['age']``)."""
        if ts_us is None:
            ts_us = int(self._clock() * US_PER_S)
        elif isinstance(ts_us, bool) or not isinstance(ts_us, (int, np.integer)) or not MIN_TS_US <= ts_us < MAX_TS_US:
            raise ValidationError("ts_us", ts_us, "must be an integer of µs since the epoch, 1970 to 2100")
        self._check_name(model, "model")
        if features is None:
            features = {}
        elif not isinstance(features, Mapping):
            raise ValidationTypeError("features", features, "must be a mapping of feature names to values")
        if len(features) > MAX_FEATURES_PER_CALL:
            raise ValidationError("features", f"{len(features)} features", f"at most {MAX_FEATURES_PER_CALL} per call")
        values: list[tuple[str, Any]] = []
        for name, value in features.items():
            self._check_name(name, "feature name")
            values.append((name, self._check_value(value, f"features[{name!r}]")))
        if isinstance(prediction, Mapping):
            for key, value in prediction.items():
                name = f"{PREDICTION}.{key}"
                self._check_name(name, "prediction key")
                values.append((name, self._check_value(value, f"prediction[{key!r}]")))
        else:
            values.append((PREDICTION, self._check_value(prediction, "prediction")))
        window = int(ts_us) - int(ts_us) % self._window_us
        with self._lock:
            for name, value in values:
                entry = self._entries.get((model, name, window))
                if entry is None:
                    entry = self._entries[(model, name, window)] = self._new_entry()
                entry.dirty = True
                if value is None:
                    entry.sketch.missing += 1
                elif isinstance(value, float):
                    entry.pending.append(value)
                    if len(entry.pending) >= _PENDING_LIMIT:
                        entry.settle()
                else:
                    entry.sketch.categorical.add(value)

    def drain(self, *, force: bool = False) -> list[SketchRecord]:
        """Records due to be written: every changed entry whose window has
        closed or that was last emitted ``emit_every_s`` ago (every changed
        entry when ``force``). Entries of closed windows (all entries when
        ``force``) are forgotten once emitted."""
        now_us = int(self._clock() * US_PER_S)
        now = time.monotonic()
        records = []
        with self._lock:
            for key, entry in list(self._entries.items()):
                model, feature, window = key
                closed = now_us >= window + self._window_us
                if entry.dirty and (force or closed or now - entry.last_emit >= self.emit_every_s):
                    entry.settle()
                    records.append(SketchRecord(model, feature, window, self.window_s, entry.writer, entry.seq,
                                                entry.sketch.copy()))
                    entry.seq += 1
                    entry.dirty = False
                    entry.last_emit = now
                    if entry.seq >= self.window_s * 1000:  # seq must stay inside the window: start a new cell
                        self._entries[key] = self._new_entry()
                        continue
                if force or (closed and not entry.dirty):
                    del self._entries[key]
        return records

    # -- helpers ------------------------------------------------------------------

    def _new_entry(self) -> _Entry:
        return _Entry(os.urandom(WRITER_BYTES).hex(), DistributionSketch.create(self.alpha, self.max_categories),
                      time.monotonic())

    def _check_name(self, name: Any, where: str) -> None:
        if not isinstance(name, str) or name not in self._names:
            validate_name(name, where)
            if len(self._names) < 100_000:
                self._names.add(name)

    @staticmethod
    def _check_value(value: Any, where: str) -> Any:
        """The value as counted: a float, a categorical value, or None (missing)."""
        if value is None:
            return None
        if isinstance(value, _CATEGORICAL):
            return value
        if isinstance(value, _NUMERIC):
            number = float(value)
            return number if math.isfinite(number) else None
        raise ValidationTypeError(where, value, "must be a number, a string, a boolean or None")
