# `make test` works on a fresh machine: it creates .venv, installs tablewatch with
# every extra and its test dependencies, installs the system packages the tests
# need, and runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test venv system-deps bench clean

test: venv system-deps
	$(BIN)/python -m pytest -q

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

bench: venv
	$(BIN)/pip install -q -e '.[all,dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info
