"""Opening a store: its own metadata is checked, readers never create a store,
a folder is refused, and a read-only store can be read without writing a byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tablewatch import open_store
from tablewatch.cli import main
from tablewatch.errors import StoreError, StoreNotFound, StoreSchemaError
from tablewatch.store.table import RowMutation, SetCell

T0 = float(int(time.time()) // 3600 * 3600 - 86400)
TABLEWATCH = [sys.executable, "-m", "tablewatch.cli"]


def _write_config(url: str, value: bytes) -> None:
    with open_store(url) as store:
        store.backend.table("tw_meta").mutate_rows([RowMutation(b"config", [SetCell("config", b"json", value, 0)])])


# -- point 4: tw_meta is checked -------------------------------------------------------------


@pytest.mark.parametrize("config, expected", [
    ({"salt_buckets": 16, "bucket_seconds": 3600, "schema": 2}, "written by a newer tablewatch (schema version 2"),
    ({"salt_buckets": 16, "bucket_seconds": 3600, "schema": 0}, "is damaged: schema version 0"),
    ({"salt_buckets": 16, "bucket_seconds": 3600}, "is damaged: it has no schema version"),
    ({"bucket_seconds": 3600, "schema": 1}, "is damaged: salt_buckets is missing"),
    ({"salt_buckets": 0, "bucket_seconds": 3600, "schema": 1}, "is damaged: salt_buckets"),
    ("not json {", "is damaged: not JSON"),
    ([1, 2], "is damaged: expected a JSON object"),
])
def test_a_newer_or_damaged_store_is_refused_saying_which_and_what_to_do(tmp_path, capsys, config, expected):
    url = f"sqlite:///{tmp_path}/meta.db"
    _write_config(url, (config if isinstance(config, str) else json.dumps(config)).encode())
    with pytest.raises(StoreSchemaError) as raised:
        open_store(url)
    message = str(raised.value)
    assert expected in message
    assert ("upgrade tablewatch" in message) if "newer" in expected else ("Restore the store" in message)
    assert main(["store", "info", "--store", url]) == 2  # the CLI says it, without a traceback
    err = capsys.readouterr().err
    assert err.startswith("tablewatch: error: ") and expected in err and "Traceback" not in err


def test_the_current_schema_opens(tmp_path):
    url = f"sqlite:///{tmp_path}/ok.db"
    open_store(url).close()
    with open_store(url, create=False) as store:
        assert store.info()["schema"] == 1


# -- point 3: no silent new stores ------------------------------------------------------------


def test_readers_refuse_a_store_that_does_not_exist_and_create_nothing(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    for command in (["store", "info"], ["store", "hotspots"], ["store", "retention"], ["store", "compact"],
                    ["series"], ["query", "m"]):
        assert main([*command, "--store", f"sqlite:///{missing}"]) == 2, command
        err = capsys.readouterr().err
        assert "does not exist" in err and str(missing) in err and "tablewatch push" in err
    assert not (tmp_path / "no").exists()  # no folder, no file
    with pytest.raises(StoreNotFound):
        open_store(str(missing), create=False)
    assert not (tmp_path / "no").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    monkeypatch.delenv("TABLEWATCH_STORE", raising=False)
    assert main(["store", "info"]) == 2
    assert "tablewatch.db" in capsys.readouterr().err
    assert list(empty.iterdir()) == []


def test_a_folder_is_not_a_store(tmp_path, capsys):
    for command in (["store", "info"], ["series"], ["push", "m", "1"]):
        assert main([*command, "--store", str(tmp_path)]) != 0
        assert "is a directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StoreError, match="is a directory"):
        open_store(f"sqlite:///{tmp_path}")


def test_a_writer_creates_the_store_and_says_so_once(tmp_path):
    url = f"sqlite:///{tmp_path}/new/tw.db"
    first = subprocess.run([*TABLEWATCH, "push", "m", "1", "--store", url], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("created a new, empty store at " + url) == 1
    again = subprocess.run([*TABLEWATCH, "push", "m", "2", "--store", url], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "created" not in again.stderr
    with open_store(url, create=False) as store:
        assert store.read_arrays("m")[1].tolist() == [1.0, 2.0]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def _make_store(folder: Path) -> str:
    folder.mkdir()
    url = f"sqlite:///{folder}/tw.db"
    with open_store(url) as store:
        store.write_points("cpu", {"host": "a"}, T0 + np.arange(10.0), np.arange(10.0))
    return url


def test_mode_ro_reads_without_writing_anything(tmp_path):
    folder = tmp_path / "ro"
    url = _make_store(folder)
    before = _snapshot(folder)
    assert sorted(before) == ["tw.db"]  # closed cleanly: no -wal, no -shm
    (folder / "tw.db").chmod(0o444)
    folder.chmod(0o555)
    try:
        with open_store(url + "?mode=ro", create=False) as store:
            assert store.read_only
            assert store.read_arrays("cpu", {"host": "a"})[1].tolist() == list(np.arange(10.0))
            assert store.info()["read_only"] is True
            with pytest.raises(StoreError, match="read-only"):
                store.write_points("cpu", {"host": "a"}, [T0 + 20], [1.0])
            with pytest.raises(StoreError, match="read-only"):
                store.set_retention({"points": 86400})
        assert _snapshot(folder) == before  # not a byte written, not even -wal or -shm
    finally:
        folder.chmod(0o755)


def test_mode_ro_sees_what_a_live_writer_has_committed(tmp_path):
    url = _make_store(tmp_path / "live")
    writer = open_store(url)
    try:
        writer.write_points("cpu", {"host": "a"}, [T0 + 100], [42.0])  # still in the -wal file
        with open_store(url + "?mode=ro", create=False) as reader:
            assert reader.read_arrays("cpu", {"host": "a"})[1][-1] == 42.0
    finally:
        writer.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a command as the user nobody")
def test_a_store_in_a_folder_nobody_may_write_is_read_by_nobody():
    """As root, permissions do not stop us: run the reader as the user nobody,
    for whom neither the file nor its folder is writable."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "util-linux's setpriv is part of Debian's base system"
    # Not under pytest's tmp_path: other pytest sessions reset its root to 0700,
    # which would lock nobody out of it.
    outer = Path(tempfile.mkdtemp(prefix="tw-nobody-", dir="/tmp"))
    try:
        outer.chmod(0o755)
        base = outer / "shared"
        url = _make_store(base)
        base.chmod(0o755)
        (base / "tw.db").chmod(0o644)
        before = _snapshot(base)
        result = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *TABLEWATCH, "query", "cpu", "--tag",
             "host=a", "--format", "csv", "--store", url],
            capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": "/nonexistent"},
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == "ts,value,step" and len(result.stdout.splitlines()) == 11
        assert _snapshot(base) == before
    finally:
        shutil.rmtree(outer)
