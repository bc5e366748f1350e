"""examples/model_server: a real uvicorn serving server.py, loadgen.py
shifting `age` half way; latency per route template and the shifted
distribution end up in the store."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from tablewatch import open_store
from tests.examples.conftest import EXAMPLES, example_env, free_port, run_example


def wait_healthy(url, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def test_latency_and_a_shifted_feature_are_recorded(tmp_path):
    url = f"sqlite:///{tmp_path}/serving.db"
    env = example_env(url)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "server:app", "--port", str(port),
                               "--log-level", "warning"], cwd=EXAMPLES / "model_server", env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
        load = run_example("model_server", "loadgen.py", "--url", f"http://127.0.0.1:{port}", "--requests", "600",
                           "--shift", "age=+20", "--shift-after", "300", env=env)
        assert load.returncode == 0, load.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        # a graceful shutdown (the lifespan closes the collector); uvicorn then re-raises SIGTERM
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)

    with open_store(url, create=False) as store:
        tags = {"service": "ranker", "route": "/predict/{model}", "method": "POST"}
        ok = store.read_arrays("serve.latency_s", {**tags, "status": "2xx"})[1]
        missing = store.read_arrays("serve.latency_s", {**tags, "status": "4xx"})[1]
        assert len(ok) + len(missing) == 600 and 0 < len(missing) < 30  # the template, never the raw path
        assert 0 < float(ok.mean()) < 1.0
        assert ("ranker", "age") in store.list_sketched_features("ranker")
        age = store.read_sketch("ranker", "age")
        income = store.read_sketch("ranker", "income")
        assert age.count == len(ok)
        q10, q90 = age.numeric.quantiles([0.1, 0.9])
        assert q90 - q10 > 25  # two populations, 20 years apart (one alone spans about 15)
        i10, i90 = income.numeric.quantiles([0.1, 0.9])
        assert i90 / i10 < 3.5
