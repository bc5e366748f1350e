"""The embedded store shared by several processes, and killed mid-stream."""

from __future__ import annotations

import time

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from tablewatch import open_store

T0 = float(int(time.time()) // 86400 * 86400 - 7 * 86400)  # a day boundary a week ago: inside the default 30-day points retention

WRITER = textwrap.dedent("""
    import sys, numpy as np
    from tablewatch import open_store
    url, worker, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open_store(url) as store:
        for b in range(batches):
            ts = {t0} + (b * 1000 + np.arange(1000)) * 0.5
            store.write_points("shared", {{}}, ts + worker * 1e5, np.full(1000, worker, dtype=float))
            store.write_points("own", {{"worker": str(worker)}}, ts, np.arange(1000.0) + b * 1000)
            store.write_task_runs([{{"pipeline": "p", "task": f"w{{worker}}", "run_id": f"b{{b}}",
                                    "status": "success", "started_at": float(ts[0])}}])
""").format(t0=T0)

READER = textwrap.dedent("""
    import sys, time
    from tablewatch import open_store
    with open_store(sys.argv[1]) as store:
        reads = 0
        deadline = time.time() + 60
        while time.time() < deadline:
            store.read_points("shared", {})
            store.read_task_runs("p")
            reads += 1
            if open(sys.argv[2]).read() == "done":
                break
        print(reads)
""")


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    open_store(url).close()  # tables exist before the race starts
    flag = tmp_path / "flag"
    flag.write_text("")
    workers, batches = 4, 30
    reader = subprocess.Popen([sys.executable, "-c", READER, url, str(flag)], stdout=subprocess.PIPE, text=True)
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, str(w), str(batches)], stderr=subprocess.PIPE, text=True)
        for w in range(workers)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    flag.write_text("done")
    out, _ = reader.communicate(timeout=60)
    assert reader.returncode == 0 and int(out) > 0  # the reader was never refused

    with open_store(url) as store:
        shared = store.read_points("shared", {})
        assert len(shared) == workers * batches * 1000
        assert sorted(np.unique(shared["value"], return_counts=True)[1].tolist()) == [batches * 1000] * workers
        for w in range(workers):
            own = store.read_points("own", {"worker": str(w)})
            assert own["value"].tolist() == list(np.arange(batches * 1000.0))
        assert len(store.read_task_runs("p")) == workers * batches


KILLED = textwrap.dedent("""
    import sys, numpy as np
    from tablewatch import open_store
    store = open_store(sys.argv[1])
    b = 0
    while True:
        ts = {t0} + (b * 5000 + np.arange(5000)) * 0.1
        store.write_points("durable", {{}}, ts, np.full(5000, float(b)))
        print(b, flush=True)  # only after write_points returned
        b += 1
""").format(t0=T0)


def test_batches_whose_write_returned_survive_sigkill(tmp_path):
    url = f"sqlite:///{tmp_path}/durable.db"
    child = subprocess.Popen([sys.executable, "-c", KILLED, url], stdout=subprocess.PIPE, text=True)
    acknowledged = []
    for line in child.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 25:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with open_store(url) as store:
        values = store.read_points("durable", {})["value"].to_numpy()
    batches, counts = np.unique(values, return_counts=True)
    # every acknowledged batch is there whole; a batch in flight is all there or absent
    assert set(acknowledged) <= set(batches.astype(int).tolist())
    assert (counts == 5000).all()


CONTENDER = textwrap.dedent("""
    import sys, time
    from tablewatch.store.sqlite import SQLiteBackend
    url, me, start_at = sys.argv[1], sys.argv[2].encode(), float(sys.argv[3])
    table = SQLiteBackend(url).table("leases")
    time.sleep(max(0.0, start_at - time.time()))
    print(table.check_and_set(b"incident-1", "l", b"owner", None, me, 1_790_000_000_000))
""")


def test_check_and_set_from_processes_has_one_winner(tmp_path):
    from tablewatch.store.sqlite import SQLiteBackend
    from tablewatch.store.table import GCPolicy

    url = f"sqlite:///{tmp_path}/leases.db"
    backend = SQLiteBackend(url)
    backend.create_table("leases", {"l": GCPolicy(max_versions=1)})
    start_at = time.time() + 1.5  # every process imported and waiting, then all at once
    contenders = [
        subprocess.Popen([sys.executable, "-c", CONTENDER, url, f"proc-{i}", str(start_at)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    answers = []
    for contender in contenders:
        out, err = contender.communicate(timeout=60)
        assert contender.returncode == 0, err
        answers.append(out.strip())
    assert sorted(answers) == ["False", "False", "False", "True"]
    winner = f"proc-{answers.index('True')}".encode()
    assert backend.table("leases").read_rows([b"incident-1"])[0].value("l", b"owner") == winner
    backend.close()
