# The two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV = $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.truckroll/tools/bin/uv)
RUN = $(UV) run --frozen --no-progress
LINT = $(RUN) ruff check . && $(RUN) ruff format --check .
# Development and tests verify technicians' Firebase ID tokens with firebase-admin's emulator
# convention (unsigned tokens). The server refuses to start with it in production.
DEV_AUTH = $(if $(filter production,$(TRUCKROLL_ENV)),,FIREBASE_AUTH_EMULATOR_HOST=$${FIREBASE_AUTH_EMULATOR_HOST:-127.0.0.1:9099})

.PHONY: help setup setup-test run stop test lint fmt db-shell demo bench-pings bench-match bench-dispatch bench-webhooks

help:
	@echo "make run    - install what is missing, start the embedded PostGIS, migrate, seed the demo, serve the API"
	@echo "make test   - the same set-up, then lint and the whole test suite"
	@echo "make stop   - stop what make run started"
	@echo "make demo   - simulated technicians and a dispatcher against the server make run serves"
	@echo "make lint / make fmt - ruff check and format (fmt rewrites)"
	@echo "make db-shell - psql on the embedded database"
	@echo "make bench-pings - location pings over HTTP against a no-I/O floor"
	@echo "make bench-match - ranked candidates over 1,000,000 technicians against a bare KNN floor"
	@echo "make bench-dispatch - job POST to the first offer at a fake FCM, p50/p99 over 200 jobs"
	@echo "make bench-webhooks - webhook deliveries/s to a local receiver with 2 workers, and commit-to-2xx p99 at 100 events/s"

setup:
	@bash infra/bootstrap.sh

# The test suite also drives a browser.
setup-test:
	@bash infra/bootstrap.sh --browser

run: setup
	@$(RUN) truckroll db upgrade
	@$(RUN) truckroll seed
	@$(DEV_AUTH) $(RUN) truckroll serve

stop:
	@$(RUN) truckroll stop

test: setup-test
	@$(LINT)
	@$(DEV_AUTH) $(RUN) pytest

lint: setup
	@$(LINT)

fmt:
	@$(RUN) ruff check --fix .
	@$(RUN) ruff format .

db-shell: setup
	@$(RUN) python -m infra.postgis psql

bench-pings: setup
	@$(DEV_AUTH) $(RUN) python -m bench.pings

bench-match: setup
	@$(RUN) python -m bench.match

bench-dispatch: setup
	@$(DEV_AUTH) $(RUN) python -m bench.dispatch

bench-webhooks: setup
	@$(RUN) python -m bench.webhooks

# Against the server that `make run` serves (in another terminal); its arguments can be replaced with DEMO=….
DEMO ?= --technicians 30 --jobs-per-minute 6 --speed-up 10
demo:
	@$(RUN) truckroll simulate $(DEMO)
