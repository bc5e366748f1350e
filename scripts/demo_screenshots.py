"""The README's demo screenshots (docs/screenshots/demo-*.png), taken again.

Fills a demo store in a temporary directory (``tablewatch demo --no-serve``:
14 days of data, the example rules evaluated), starts ``tablewatch dashboard``
on it, opens each page of the README's screenshot table in Debian's Chromium
(Playwright) and saves it once every Plotly chart of the page is drawn and the
page has stopped running. Run it after a change to how the pages look:

    .venv/bin/python scripts/demo_screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's bench helpers
from bench.common import free_port, wait_ready  # noqa: E402
from bench.dashboard_bench import CHARTS_DRAWN_JS, CHROMIUM  # noqa: E402

PAGES = {  # file name -> (the page and its selection, as the README's table shows them; its Plotly charts)
    "demo-tasks.png": ("/tasks?pipeline=nightly-etl&task=extract&range=7d", 3),
    "demo-drift.png": ("/drift?model=ranker&feature=age&range=7d", 2),
    "demo-training.png": ("/training?model=ranker", 2),
    "demo-alerts.png": ("/alerts", 0),
}
DRAWN_TIMEOUT_MS = 60_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshots", help="folder to save the screenshots in")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/demo.db"
        subprocess.run([sys.executable, "-m", "tablewatch.cli", "demo", "--store", store, "--no-serve"], check=True,
                       stdout=subprocess.DEVNULL)
        port = free_port()
        dashboard = subprocess.Popen([sys.executable, "-m", "tablewatch.cli", "dashboard", "--store", store,
                                      "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base, dashboard, path="/_stcore/health")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                for name, (path, charts) in PAGES.items():
                    page.goto(base + path)
                    page.wait_for_selector("h1", timeout=DRAWN_TIMEOUT_MS)  # the script has started
                    page.wait_for_function(CHARTS_DRAWN_JS, arg=charts, timeout=DRAWN_TIMEOUT_MS)
                    page.wait_for_timeout(500)  # the last chart's transition
                    page.screenshot(path=str(out / name), full_page=True)
                    print(f"{out / name}: {path}")
                browser.close()
        finally:
            dashboard.terminate()
            dashboard.wait(timeout=10)


if __name__ == "__main__":
    main()
