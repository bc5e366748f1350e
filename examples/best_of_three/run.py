"""Run the best-of-three workflow once, now, the way beat would start it: with a
real broker (CELERY_BROKER_URL) a worker must be running (`celery -A tasks
worker --concurrency 3`); with the default in-memory broker this starts a
worker in this process (three threads)."""

from __future__ import annotations

import sys

from celery.contrib.testing.worker import start_worker
from celery.result import AsyncResult

from tasks import app, collector


def main() -> int:
    in_process = app.conf.broker_url.startswith("memory://")
    worker = start_worker(app, pool="threads", concurrency=3, perform_ping_check=False, shutdown_timeout=10) \
        if in_process else None
    try:
        if worker is not None:
            worker.__enter__()
        nightly = app.conf.beat_schedule["best-of-three-nightly"]
        print(f"beat schedule: {nightly['task']} {nightly['schedule']!r}; running it now")
        chord_id = app.send_task(nightly["task"]).get(timeout=60)  # as beat sends it: by name
        best = AsyncResult(chord_id, app=app).get(timeout=60)
        print(f"deployed {best['candidate']} (accuracy {best['accuracy']:.3f})")
        return 0
    finally:
        if worker is not None:
            worker.__exit__(*sys.exc_info())
        collector.close()


if __name__ == "__main__":
    sys.exit(main())
