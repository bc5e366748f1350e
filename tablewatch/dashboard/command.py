"""``tablewatch dashboard``: runs the Streamlit app, bound to loopback unless
told otherwise. Imports nothing heavy until the command runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP = Path(__file__).parent / "app.py"


def streamlit_command(store: str, host: str, port: int) -> list[str]:
    """The command line that serves the dashboard."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer", "--theme.base", "light",
        "--", "--store", store,
    ]


def cmd_dashboard(args: argparse.Namespace) -> int:
    from tablewatch.extras import require
    from tablewatch.store import open_store

    for module in ("streamlit", "plotly", "scipy", "pydantic"):  # its drift scores and Alerts page use the alerts'
        require(module, "dashboard", "tablewatch dashboard")
    store = args.store or os.environ.get("TABLEWATCH_STORE") or "tablewatch.db"
    open_store(store).close()  # a bad URL or an unreachable store is reported here, not in the browser
    print(f"tablewatch dashboard: http://{args.host}:{args.port} (store {store})", flush=True)
    command = streamlit_command(store, args.host, args.port)
    os.execv(command[0], command)  # Streamlit owns the process from here (signals, exit code)
    return 0  # pragma: no cover


def add_commands(commands: argparse._SubParsersAction, port_type) -> None:
    dashboard = commands.add_parser("dashboard", help="serve the Streamlit dashboard")
    dashboard.add_argument("--store", help="store URL (default: $TABLEWATCH_STORE, else ./tablewatch.db)")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    dashboard.add_argument("--port", type=port_type, default=8501, help="port to listen on (default: 8501)")
    dashboard.set_defaults(handler=cmd_dashboard)
