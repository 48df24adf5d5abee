# Two commands on a fresh machine: `make run` serves, `make test` checks everything.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
WORKERS ?= 1
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hypercorn --config hypercorn.toml --workers $(WORKERS) service.app:app

lint: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/mypy --strict service

test: lint
	$(BIN)/pytest

# The figures of issue 2 (POST req/s against a bare Quart app; /healthz p99 while cpu tasks
# run). Installs wrk from Debian's packages if it is missing; writes bench/results/*.json.
bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
