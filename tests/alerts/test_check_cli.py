"""``tablewatch alerts check FILE``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tablewatch.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"


def test_a_valid_file_prints_one_line_per_rule(capsys):
    assert main(["alerts", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{EXAMPLE}: OK, 15 rules (absence 2, drift 3, new_data 1, regression 5, task_event 2, threshold 2), 3 actions")
    assert len(out) == 16
    assert "  etl-failures: regression, warning, failure_rate of nightly-etl/extract|load increase by 0.2 vs the last 30 runs; runner schedule" in out
    assert "  etl-slow: regression, warning, p95 duration_s of nightly-etl increase by 50% vs the previous 7 windows; cron '30 6 * * *'" in out


def test_an_invalid_file_exits_2_naming_line_rule_and_field(tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: etl-slow\n    kind: regression\n    metric: task.duration_s\n"
                    "    window: abc\n    threshold: 0.5\n")
    assert main(["alerts", "check", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{path}:5: rules[0] ('etl-slow').window: must be a duration like 30m, 1h, 7d (got 'abc')",
                   f"{path}: 1 problem"]


def test_the_installed_command(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("rules:\n  - {name: x, kind: absence, metric: m}\n")
    done = subprocess.run([sys.executable, "-m", "tablewatch.cli", "alerts", "check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{path}:2: rules[0] ('x').absent_for: is required" in done.stderr


def test_the_readme_example_validates():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Alert rules"):]
    example = section[section.index("```yaml\n") + len("```yaml\n"):section.index("```\n", section.index("```yaml"))]
    from tablewatch.alerts.rules import parse_rules

    rules = parse_rules(example, "README.md")
    assert {rule.kind for rule in rules.rules} == {"threshold", "regression", "drift", "absence", "new_data", "task_event"}
