# Quick start: `make demo` runs the demo, `make test` runs the tests; both install first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench

$(VENV)/installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "debias needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

demo: $(VENV)/installed
	$(BIN)/debias demo --out demo-out

test: $(VENV)/installed
	$(BIN)/python -m pytest -n 2

bench: $(VENV)/installed
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/audit_speed.py
	$(BIN)/python bench/quality.py
	cd bench && ../$(BIN)/python debias_bench.py --audit
