# registrar — developer and CI entry points (GNU make).
# `make test` and `make run` are the two commands the README documents.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv services sdk test run lint fmt bench bench-login bench-parts bench-scale clean messages asyncapi docs faults cluster fuzz

help: ## show this help
	@echo "registrar make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  %-9s %s\n", $$1, $$2}'
	@echo "variables: PYTEST_ARGS='...' (passed to pytest), PYTHON=$(PYTHON)"

venv: $(STAMP) ## create .venv and install the project with test extras

# Re-run when pyproject.toml changes (it is newer than the stamp).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

services: ## make sure PostgreSQL and RabbitMQ are reachable (starts/installs them)
	bash scripts/ensure-services.sh

# Baasic's JavaScript SDK for tests/e2e/test_baasic_sdk.py; like the browser for the browser
# tests, only where its runtime (node) is installed: elsewhere that test is skipped.
SDK_DIR   := tests/sdk
SDK_STAMP := $(SDK_DIR)/node_modules/.package-lock.json

sdk: ## install tests/sdk's npm packages (Baasic's JavaScript SDK) when node and npm exist
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
		echo "make sdk: node/npm not installed; the Baasic SDK test will be skipped" >&2; \
	elif [ ! -f $(SDK_STAMP) ] || [ $(SDK_DIR)/package-lock.json -nt $(SDK_STAMP) ]; then \
		npm ci --prefix $(SDK_DIR) --ignore-scripts --no-audit --no-fund; \
	fi

# Two runs: the suite, then the end-to-end tests again with the processes' pools going
# through PgBouncer in transaction-pooling mode (REGISTRAR_TEST_PGBOUNCER=1: tests/conftest.py
# starts PgBouncer and deselects everything outside tests/e2e). Fails if either run fails.
test: venv services sdk ## run the test suite, then tests/e2e through PgBouncer (PYTEST_ARGS='-k foo' to pass options)
	@rc=0; $(BIN)/pytest -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	echo "make test: the end-to-end tests through PgBouncer" >&2; \
	pooled=0; REGISTRAR_TEST_PGBOUNCER=1 $(BIN)/pytest -q $(PYTEST_ARGS) || pooled=$$?; \
	if [ $$pooled -eq 5 ]; then echo "make test: no end-to-end tests selected for PgBouncer" >&2; pooled=0; fi; \
	if [ $$rc -eq 0 ]; then rc=$$pooled; fi; \
	exit $$rc

run: venv services ## migrate, then run gateway + all workers (+ dev mailbox)
	$(BIN)/registrar run

lint: venv ## ruff check + format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

fmt: venv ## ruff format + ruff check --fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv services ## every figure of SPEC §8 in one run (bench/run.py): name=value lines last
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-login: venv services ## door rate alone vs during a wrong-password login storm; 401 time by failure kind (bench/login_storm.py)
	$(BIN)/python bench/login_storm.py $(BENCH_ARGS)

bench-scale: venv services ## latency, door rate and RSS at 0/100k/1M users, EXPLAIN at 1M (bench/scale.py, ~30 min)
	$(BIN)/python bench/scale.py $(BENCH_ARGS)

bench-parts: venv services ## the older comparative benchmarks (bench/*_*.py), one after another
	@set -e; for f in bench/outbox_publish.py bench/registration_throughput.py \
		bench/mail_throughput.py; do echo "== $$f"; $(BIN)/python "$$f"; done

clean: ## remove .venv, var/ and caches
	rm -rf $(VENV) var .pytest_cache .ruff_cache build dist *.egg-info $(SDK_DIR)/node_modules
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

messages: venv ## re-extract translatable messages into service/locales/messages.pot
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --omit-header \
		-o service/locales/messages.pot .

asyncapi: venv ## regenerate schemas/asyncapi.json from the event models
	$(BIN)/python -m schemas.asyncapi > schemas/asyncapi.json

docs: venv ## regenerate docs/http-api.md and docs/events.md from /openapi.json and the AsyncAPI document
	$(BIN)/python -m scripts.gen_docs

faults: venv services ## fault scenarios on real processes, audited (FAULTS_ARGS='worker_kill ...'); restarts local PostgreSQL + RabbitMQ
	$(BIN)/python -m tests.faults $(FAULTS_ARGS)

cluster: venv services ## a 3-node RabbitMQ cluster of its own loses the work queues' leader mid-stream, audited (CLUSTER_ARGS='--node-down 30'); ~5 min
	$(BIN)/python -m tests.faults.cluster $(CLUSTER_ARGS)

fuzz: venv services ## Schemathesis on /openapi.json against real processes (FUZZ_ARGS='--requests 20000')
	$(BIN)/python -m tests.fuzz $(FUZZ_ARGS)
