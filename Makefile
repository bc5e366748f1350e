# `make test` works on a fresh machine: it creates .venv, installs tablewatch with
# every extra and its test dependencies, installs the system packages the tests
# need, and runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test venv system-deps bench evidently-venv demo clean

test: venv system-deps
	$(BIN)/python -m pytest -q

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $@

# `make demo`: 14 days of demo data in ./tablewatch-demo.db, the example rules
# evaluated (console, or Slack with $SLACK_*), then the server, the alert runner
# and the dashboard until Ctrl-C. DEMO_ARGS=--no-serve stops after the alerts.
demo: venv
	$(BIN)/tablewatch demo $(DEMO_ARGS)

system-deps:
	bash scripts/install-system-deps.sh

bench: venv evidently-venv
	$(BIN)/pip install -q -e '.[all,dev,bench]'
	$(BIN)/python -m bench

# Evidently (the alerts bench compares drift decisions with it) in a venv of its
# own: Evidently 0.7 does not import with pandas 3, which tablewatch's venv has.
evidently-venv: .venv-evidently/.installed

.venv-evidently/.installed:
	$(PYTHON) -m venv .venv-evidently
	.venv-evidently/bin/pip install -q 'evidently>=0.7.20' 'pandas>=2.2,<3'
	touch $@

clean:
	rm -rf $(VENV) .venv-evidently build *.egg-info
