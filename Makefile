# Developer shortcuts. Each target uses .venv (created by `make install`).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test test-all lint bench clean

install:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints-cpu.txt -e '.[dev]'

run: install
	$(BIN)/python -m experiments.run $(ARGS)

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint:
	$(BIN)/ruff check src experiments tests bench examples
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/startup.py 3
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/overhead.py 5 --same-work 1
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/solve.py 3 pendulum
	$(BIN)/python bench/solve.py 3 multi
	$(BIN)/python bench/scaling.py

clean:
	rm -rf outputs multirun .pytest_cache .mypy_cache .ruff_cache
