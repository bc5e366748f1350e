"""``tablewatch dashboard``: its options and what it refuses before starting Streamlit."""

import pytest

from tablewatch.cli import build_parser, main
from tablewatch.dashboard.command import streamlit_command


def test_defaults_bind_to_loopback():
    args = build_parser().parse_args(["dashboard"])
    assert (args.store, args.host, args.port) == (None, "127.0.0.1", 8501)
    command = streamlit_command("sqlite:///x.db", args.host, args.port)
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert command[command.index("--server.port") + 1] == "8501"
    assert command[-2:] == ["--store", "sqlite:///x.db"]


def test_a_bad_port_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dashboard", "--port", "70000"])
    assert "--port" in capsys.readouterr().err


def test_a_bad_store_url_is_reported_before_streamlit_starts(capsys):
    assert main(["dashboard", "--store", "nosuch://x"]) == 2
    assert "nosuch" in capsys.readouterr().err
