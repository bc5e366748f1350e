"""Helpers shared by the collector tests (fixtures live in each module)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path


class DatabaseLock:
    """Holds SQLite's write lock on a database from another connection
    (``BEGIN EXCLUSIVE``), so every writer of the store waits its busy timeout
    and fails with StoreUnavailable: a real outage of the embedded store, that
    root's file permissions cannot give."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connection: sqlite3.Connection | None = None

    def acquire(self) -> DatabaseLock:
        self.connection = sqlite3.connect(self.path, isolation_level=None, timeout=10, check_same_thread=False)
        self.connection.execute("BEGIN EXCLUSIVE")
        return self

    def release(self) -> None:
        if self.connection is not None:
            self.connection.execute("ROLLBACK")
            self.connection.close()
            self.connection = None

    def __enter__(self) -> DatabaseLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def wait_until(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.01) -> object:
    """Poll ``condition`` until it is truthy; its value. AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def mount_tiny_tmpfs(mount_point: Path, size: str = "64k") -> str | None:
    """Mount a real tmpfs of ``size`` at ``mount_point`` (writes past it fail
    with ENOSPC); None on success, else why it could not be mounted."""
    import subprocess

    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip() or f"mount exited {done.returncode}")


def unmount(mount_point: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)
