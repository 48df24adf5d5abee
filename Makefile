# Two commands on a fresh machine: `make run` serves, `make test` checks everything.
# Another Python: `make PYTHON=python3.13 VENV=.venv-3.13 test` (or PYTHON in the environment).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
WORKERS ?= 1
# STORE=sqlite: durable, in ./offload.db (or give a URL: STORE=sqlite:////var/lib/offload.db,
# STORE=redis://127.0.0.1:6379/0, which also installs the redis extra)
STORE ?=
STORE_URL := $(if $(filter sqlite,$(STORE)),sqlite:///offload.db,$(STORE))
# Celery mode (OFFLOAD_CELERY_BROKER set, docs/celery.md) installs the celery extra (redis included)
RUN_EXTRAS := $(if $(OFFLOAD_CELERY_BROKER),celery,$(if $(filter redis://% rediss://%,$(STORE_URL)),redis))
# `make run` installs what serving needs; `make test` adds the dev tools to the same venv.
RUN_STAMP := $(VENV)/.installed-run$(if $(RUN_EXTRAS),-$(RUN_EXTRAS))
STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench soak clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.$(if $(RUN_EXTRAS),[$(RUN_EXTRAS)])'
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)
	$(if $(STORE_URL),OFFLOAD_STORE=$(STORE_URL)) $(BIN)/python -m service --workers $(WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/mypy --strict service

test: lint
	$(BIN)/pytest

# The benchmarks: Offload against bare Quart, Flask (sync), Flask + Celery + redis and
# taskiq, scenarios B1-B10 (bench/run.py, bench/sqlite.py, bench/scaleout.py). Installs
# wrk and redis-server from Debian's packages when missing, and the baselines into
# bench/.venv (the product's venv stays as it is).
# `make bench QUICK=1`: a short smoke run. `make bench PROFILE=1`: py-spy on POST /tasks.
BENCH_VENV := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_ARGS := $(if $(filter-out 0,$(QUICK)),--quick) $(if $(filter-out 0,$(PROFILE)),--profile)

$(BENCH_STAMP): bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	@command -v wrk >/dev/null && command -v redis-server >/dev/null || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk redis-server; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Issue 4's soak: a mixed workload against the real server for MINUTES (default 10),
# printing RSS, open descriptors, threads and task counts every 30 s.
MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python -m bench.soak --minutes $(MINUTES)

clean:
	rm -rf $(VENV) $(BENCH_VENV) .mypy_cache .ruff_cache .pytest_cache
