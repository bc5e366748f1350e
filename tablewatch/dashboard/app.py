"""The dashboard's Streamlit entry point: ``streamlit run app.py -- --store URL``
(``tablewatch dashboard`` does this). Each page is a script in ``views/`` at its
own URL path: ``/``, ``/tasks``, ``/training``, ``/serving``, ``/drift``,
``/alerts``, ``/store``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tablewatch.extras import require

st = require("streamlit", "dashboard", "the dashboard")
from tablewatch.dashboard import widgets  # noqa: E402

PAGES_DIR = Path(__file__).parent / "views"
#: (script, title, URL path, icon)
PAGES = (
    ("overview.py", "Overview", "", ":material/dashboard:"),
    ("tasks.py", "Tasks", "tasks", ":material/schedule:"),
    ("training.py", "Training", "training", ":material/model_training:"),
    ("serving.py", "Serving", "serving", ":material/speed:"),
    ("drift.py", "Drift", "drift", ":material/query_stats:"),
    ("alerts.py", "Alerts", "alerts", ":material/notifications:"),
    ("store.py", "Store", "store", ":material/storage:"),
)


def _store_argument(argv: list[str]) -> str | None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--store", default=None)
    known, _ = parser.parse_known_args(argv)
    return known.store


def main() -> None:
    st.set_page_config(page_title="tablewatch", page_icon=":material/monitoring:", layout="wide")
    widgets.configure(_store_argument(sys.argv[1:]))
    pages = [
        st.Page(PAGES_DIR / script, title=title, url_path=path or None, icon=icon, default=not path)
        for script, title, path, icon in PAGES
    ]
    st.navigation(pages).run()


main()
