# One command each, on a fresh machine: `make demo` (set up + run on the embedded digits data set)
# and `make test` (set up + run the test suite). Both create .venv if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.14.1 torchvision==0.29.1
# PASSIVE: idle OpenMP threads sleep instead of spinning (spinning slows small models badly on busy cores)

.PHONY: setup demo test bench clean mutation

$(BIN)/osrkit: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test,export,cluster]"
	touch $(BIN)/osrkit

setup: $(BIN)/osrkit

demo: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/osrkit run

test: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest tests

# mutation testing of the core modules (not part of CI): benchmarks/results/mutation.md
mutation: setup
	$(BIN)/pip install -q mutmut
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/mutation.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
