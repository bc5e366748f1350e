"""The collector's disk spool: batches that could not reach the store wait here.

Layout::

    <spool root>/
        <collector id>/          one directory per live collector, held with flock(<dir>/lock)
            000000000001.twb     one file per batch, replayed in name order
            .tmp-...             a file being written (never read as data)

A collector writes only into its own directory, and holds an exclusive
``flock`` on its ``lock`` file for its whole life. The kernel releases that
lock when the process dies, even by SIGKILL, so a directory whose lock can be
taken belongs to a dead collector: the next collector on the same spool root
adopts it, replays its files in order and removes it. Two live collectors never
replay the same file, and a live collector's files are replayed only by itself,
so the order of its own batches (a training run written as ``running`` and then
as ``success``) is kept.

A file is written under a temporary name, fsynced, renamed into place with
``os.replace`` and the directory fsynced, so a crash never leaves a half file
under a data name. Every file carries a CRC32 of its content; a file that fails
it is renamed ``*.bad`` and reported, never half-replayed. A file is deleted
only after every entry in it was written to the store; replaying it twice is
harmless because the store's writes are idempotent.

File format (``.twb``, little-endian)::

    b"TWSPOOL1" | u32 header length | header (JSON) | payload | u32 CRC32 of all before

The header names the store URL and lists the entries; the payload holds the
points of each ``points`` entry in order: ts (int64 µs), values (float64) and,
when the entry has steps, steps (int64).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import struct
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from tablewatch.store.runs import TrainingRun
from tablewatch.store.tasks import TaskRun

log = logging.getLogger("tablewatch")

MAGIC = b"TWSPOOL1"
FORMAT_VERSION = 1
SUFFIX = ".twb"
LOCK_NAME = "lock"
#: Where batches the store refused are kept (under the spool root), never replayed.
REJECTED_DIR = "rejected"
SPOOL_ENV = "TABLEWATCH_SPOOL"
_U32 = struct.Struct("<I")
_POINTS_FIELD = re.compile(rb'\{"version":\d+,"points":(\d+),')


# -- what a batch holds ---------------------------------------------------------------


@dataclass(slots=True)
class PointsEntry:
    """Points of one series: ts in int64 µs, values float64, steps int64 or None."""

    metric: str
    tags: dict[str, str]
    ts_us: np.ndarray
    values: np.ndarray
    steps: np.ndarray | None = None
    #: The writer's own handle of the series (the SDK keeps what the store
    #: resolved there); never spooled.
    series: Any = field(default=None, compare=False, repr=False)

    @property
    def points(self) -> int:
        return len(self.ts_us)


@dataclass
class TaskRunsEntry:
    runs: list[TaskRun]

    points = 0


@dataclass
class TrainingRunEntry:
    run: TrainingRun

    points = 0


@dataclass
class SketchesEntry:
    """Distribution sketch records (``SketchRecord.to_dict()`` forms)."""

    records: list[dict[str, Any]]

    points = 0


Entry = Union[PointsEntry, TaskRunsEntry, TrainingRunEntry, SketchesEntry]


def batch_points(entries: Sequence[Entry]) -> int:
    return sum(e.points for e in entries)


# -- encoding -------------------------------------------------------------------------


def encode_batch(entries: Sequence[Entry], store_url: str) -> bytes:
    described: list[dict[str, Any]] = []
    payload: list[bytes] = []
    for entry in entries:
        if isinstance(entry, PointsEntry):
            has_steps = entry.steps is not None
            described.append(
                {"kind": "points", "metric": entry.metric, "tags": entry.tags, "n": entry.points, "steps": has_steps}
            )
            payload.append(np.ascontiguousarray(entry.ts_us, dtype="<i8").tobytes())
            payload.append(np.ascontiguousarray(entry.values, dtype="<f8").tobytes())
            if has_steps:
                payload.append(np.ascontiguousarray(entry.steps, dtype="<i8").tobytes())
        elif isinstance(entry, TaskRunsEntry):
            described.append({"kind": "task_runs", "runs": [json.loads(r.to_json()) for r in entry.runs]})
        elif isinstance(entry, TrainingRunEntry):
            described.append({"kind": "training_run", "run": json.loads(entry.run.to_json())})
        elif isinstance(entry, SketchesEntry):
            described.append({"kind": "sketches", "records": entry.records})
        else:
            raise TypeError(f"cannot spool {type(entry).__name__}")
    header = json.dumps(
        {"version": FORMAT_VERSION, "points": batch_points(entries), "store": store_url, "created": time.time(),
         "pid": os.getpid(),
         "entries": described},
        separators=(",", ":"),
    ).encode()
    body = b"".join([MAGIC, _U32.pack(len(header)), header, *payload])
    return body + _U32.pack(zlib.crc32(body))


class CorruptSpoolFile(ValueError):
    pass


def decode_batch(data: bytes) -> tuple[str, list[Entry]]:
    """(store URL, entries) of an encoded batch; CorruptSpoolFile if it is not one."""
    if len(data) < len(MAGIC) + 8 or not data.startswith(MAGIC):
        raise CorruptSpoolFile("not a tablewatch spool file")
    body, crc = data[:-4], _U32.unpack(data[-4:])[0]
    if zlib.crc32(body) != crc:
        raise CorruptSpoolFile("checksum mismatch")
    (header_len,) = _U32.unpack_from(body, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(body[start : start + header_len])
    if header.get("version") != FORMAT_VERSION:
        raise CorruptSpoolFile(f"unknown spool format version {header.get('version')!r}")
    offset = start + header_len
    entries: list[Entry] = []
    for item in header["entries"]:
        kind = item["kind"]
        if kind == "points":
            n = item["n"]
            ts = np.frombuffer(body, dtype="<i8", count=n, offset=offset).astype(np.int64)
            values = np.frombuffer(body, dtype="<f8", count=n, offset=offset + 8 * n).astype(np.float64)
            offset += 16 * n
            steps = None
            if item["steps"]:
                steps = np.frombuffer(body, dtype="<i8", count=n, offset=offset).astype(np.int64)
                offset += 8 * n
            entries.append(PointsEntry(item["metric"], item["tags"], ts, values, steps))
        elif kind == "task_runs":
            entries.append(TaskRunsEntry([TaskRun.from_json(json.dumps(r).encode()) for r in item["runs"]]))
        elif kind == "training_run":
            entries.append(TrainingRunEntry(TrainingRun.from_json(json.dumps(item["run"]).encode())))
        elif kind == "sketches":
            entries.append(SketchesEntry(item["records"]))
        else:
            raise CorruptSpoolFile(f"unknown entry kind {kind!r} (written by a newer tablewatch?)")
    if offset != len(body):
        raise CorruptSpoolFile("payload length does not match the header")
    return header["store"], entries


# -- where the spool lives ----------------------------------------------------------------


def default_spool_root(store_url: str, env: dict[str, str] | None = None) -> Path:
    """The spool root for a store: ``<db>.spool/`` next to an SQLite file, else
    ``$TABLEWATCH_SPOOL/<store hash>``, else ``~/.cache/tablewatch/spool/<store hash>``
    (``$XDG_CACHE_HOME`` respected). The hash keeps the spools of different
    stores apart, so a batch is only ever replayed into the store it was meant for."""
    from tablewatch.store.backends import scheme_of

    env = os.environ if env is None else env
    if scheme_of(store_url) == "sqlite":
        from tablewatch.store.sqlite import parse_sqlite_url

        path, _ = parse_sqlite_url(store_url)
        return Path(str(path.resolve()) + ".spool")
    digest = hashlib.blake2b(store_url.encode(), digest_size=6).hexdigest()
    base = env.get(SPOOL_ENV)
    if base:
        return Path(base) / digest
    cache = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "tablewatch" / "spool" / digest


# -- the spool ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpoolFile:
    path: Path
    owned: bool  # in this collector's own directory


class Spool:
    """One collector's view of a spool root. Not thread-safe on its own: the
    collector serialises calls (it holds its spool lock around them)."""

    def __init__(self, root: str | os.PathLike[str], store_url: str) -> None:
        self.root = Path(root)
        self.store_url = store_url
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._dir: Path | None = None
        self._lock_fd: int | None = None
        self._seq = 0
        self._adopted: list[tuple[Path, int]] = []  # (dir, lock fd) of dead collectors being replayed

    # -- own directory -------------------------------------------------------------

    @property
    def own_dir(self) -> Path | None:
        return self._dir

    def _ensure_dir(self) -> Path:
        if self._dir is not None:
            return self._dir
        self.root.mkdir(parents=True, exist_ok=True)
        # Build the directory and lock it under a hidden name, then rename it
        # into view: another collector never sees it unlocked.
        hidden = self.root / f".new-{self.id}"
        hidden.mkdir(exist_ok=True)
        fd = os.open(hidden / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            final = self.root / self.id
            os.replace(hidden, final)
            _fsync_dir(self.root)
        except BaseException:
            os.close(fd)
            raise
        self._dir, self._lock_fd = final, fd
        return final

    def write(self, entries: Sequence[Entry]) -> Path:
        """Append a batch durably; its path. Raises OSError (ENOSPC, ...)."""
        data = encode_batch(entries, self.store_url)
        directory = self._ensure_dir()
        self._seq += 1
        final = directory / f"{self._seq:012d}{SUFFIX}"
        temp = directory / f".tmp-{self._seq:012d}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
            _fsync_dir(directory)
        except BaseException:
            self._seq -= 1
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        return final

    @property
    def rejected_dir(self) -> Path:
        return self.root / REJECTED_DIR

    def set_aside(self, entries: Sequence[Entry], reason: str) -> Path:
        """Keep a batch the store refused in ``rejected/``: ``<name>.twb`` (the
        spool format: :func:`decode_batch` reads it) and ``<name>.txt`` (why);
        the path of the batch. Never replayed. Raises OSError."""
        directory = self.rejected_dir
        directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{self.id}-{self._seq:06d}"
        final = directory / (name + SUFFIX)
        temp = directory / f".tmp-{name}"
        temp.write_bytes(encode_batch(entries, self.store_url))
        os.replace(temp, final)
        (directory / (name + ".txt")).write_text(reason + "\n", encoding="utf-8", errors="backslashreplace")
        return final

    # -- reading -----------------------------------------------------------------------

    def own_files(self) -> list[Path]:
        return _data_files(self._dir) if self._dir is not None else []

    def adopt_orphans(self) -> int:
        """Take the lock of every directory of a dead collector under the root
        (so no one else replays them); the number adopted now."""
        if not self.root.is_dir():
            return 0
        adopted = 0
        held = {d for d, _ in self._adopted}
        try:
            candidates = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return 0
        for directory in candidates:
            if directory == self._dir or directory in held or directory.name == REJECTED_DIR:
                continue
            try:
                fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # a live collector (or another replayer) holds it
                continue
            if not directory.exists():  # removed by its last replayer just now
                os.close(fd)
                continue
            for temp in directory.glob(".tmp-*"):
                _unlink(temp)  # a write cut short by the crash: never data
            self._adopted.append((directory, fd))
            adopted += 1
        return adopted

    def pending(self) -> list[SpoolFile]:
        """Files to replay, in order: adopted directories (oldest collector
        directory first), then this collector's own files."""
        found = [SpoolFile(p, False) for d, _ in self._adopted for p in _data_files(d)]
        found += [SpoolFile(p, True) for p in self.own_files()]
        return found

    def has_pending(self) -> bool:
        return bool(self.own_files()) or any(_data_files(d) for d, _ in self._adopted)

    def count(self) -> tuple[int, int]:
        """(files, points) waiting in this collector's own and adopted directories."""
        files = points = 0
        for item in self.pending():
            files += 1
            points += peek_points(item.path)
        return files, points

    def read(self, path: Path) -> list[Entry]:
        """The entries of a spool file; a corrupt file is renamed ``*.bad`` and
        CorruptSpoolFile raised."""
        data = path.read_bytes()
        try:
            store_url, entries = decode_batch(data)
        except (CorruptSpoolFile, ValueError, KeyError, TypeError) as e:
            bad = path.with_name(path.name + ".bad")
            os.replace(path, bad)
            raise CorruptSpoolFile(f"{path}: {e}; kept as {bad.name}") from e
        if store_url != self.store_url:
            log.warning("tablewatch: spool file %s was written for store %r, not %r; replaying it here anyway "
                        "(the spool directory was shared)", path, store_url, self.store_url)
        return entries

    def remove(self, path: Path) -> None:
        _unlink(path)

    def release_finished(self) -> None:
        """Remove adopted directories that are now empty, and let go of them."""
        keep = []
        for directory, fd in self._adopted:
            if _data_files(directory):
                keep.append((directory, fd))
                continue
            _remove_dir(directory)
            os.close(fd)
        self._adopted = keep

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's directories (closing the
        inherited descriptors leaves the parent's locks in place) without
        touching them."""
        for fd in [fd for _, fd in self._adopted] + ([self._lock_fd] if self._lock_fd is not None else []):
            try:
                os.close(fd)
            except OSError:
                pass
        self._adopted, self._dir, self._lock_fd = [], None, None

    def close(self) -> None:
        """Release every lock; remove this collector's directory if it is empty
        (a non-empty one stays for the next collector to replay)."""
        self.release_finished()
        for _, fd in self._adopted:
            os.close(fd)
        self._adopted = []
        if self._dir is not None and self._lock_fd is not None:
            if not _data_files(self._dir):
                _remove_dir(self._dir)
            os.close(self._lock_fd)
        self._dir, self._lock_fd = None, None
        # A batch written after this (a log() that raced the collector's close)
        # goes to a directory of its own: this one may be adopted already.
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def peek_points(path: Path) -> int:
    """Points in a spool file, read from its header only (0 if unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 4)
            if not head.startswith(MAGIC):
                return 0
            (size,) = _U32.unpack_from(head, len(MAGIC))
            start = f.read(min(size, 64))
            counted = _POINTS_FIELD.match(start)  # written first: no need to parse 100,000 entries
            if counted:
                return int(counted.group(1))
            header = json.loads(start + f.read(size - len(start)))
        return sum(e.get("n", 0) for e in header["entries"] if e.get("kind") == "points")
    except (OSError, ValueError, KeyError):
        return 0


def _data_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))
    except OSError:
        return []


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_dir(directory: Path) -> None:
    for leftover in directory.glob(".tmp-*"):
        _unlink(leftover)
    _unlink(directory / LOCK_NAME)
    try:
        directory.rmdir()
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
