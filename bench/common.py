"""Shared helpers for the benchmarks: timing and the printed table."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from dataclasses import dataclass

if TYPE_CHECKING:
    import subprocess


@dataclass
class Result:
    section: str
    name: str
    figure: float
    unit: str
    target: str = ""
    ok: bool | None = None
    note: str = ""


def free_port() -> int:
    """A free loopback TCP port (for a server started in a subprocess)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: "subprocess.Popen", timeout: float = 60, path: str = "/readyz") -> None:
    """Wait until ``url`` + ``path`` answers 200 (``/_stcore/health`` for the
    dashboard); RuntimeError if ``process`` exits first or ``timeout`` seconds pass."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + path).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server at {url} did not start")
        time.sleep(0.05)


def recent_midnight(days_ago: int = 14) -> int:
    """The UTC midnight ``days_ago`` days before now, in epoch seconds: where
    the benches' points start, inside the stores' default retention (30 days)
    whatever the date (a fixed date expires: reads then find nothing)."""
    return (int(time.time()) // 86_400 - days_ago) * 86_400


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """The fastest of ``repeat`` runs of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def fmt(figure: float, unit: str) -> str:
    if unit in ("points/s", "rows/s", "req/s"):
        return f"{figure:,.0f} {unit}"
    if unit == "ms":
        return f"{figure:,.1f} ms"
    if unit == "x":
        return f"{figure:,.1f}x"
    return f"{figure:,.3g} {unit}"


def print_table(results: list[Result]) -> None:
    rows = [("section", "measurement", "figure", "target", "")]
    for r in results:
        mark = "" if r.ok is None else ("ok" if r.ok else "MISSED")
        rows.append((r.section, r.name + (f" ({r.note})" if r.note else ""), fmt(r.figure, r.unit), r.target, mark))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) if j != 2 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            print(line)
    print(line)
