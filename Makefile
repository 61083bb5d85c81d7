# citeops — `make` (or `make help`) lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CITEOPS := $(VENV)/bin/citeops
STAMP := $(VENV)/.installed

## help: list the targets
help:
	@awk '/^## /{line=substr($$0,4); i=index(line,": "); printf "  %-10s %s\n", substr(line,1,i-1), substr(line,i+2)}' $(MAKEFILE_LIST)

LOCK := requirements.lock
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
# torch is installed by pip, before the rest and outside the lock, so that it is the CPU build
# (pip takes it from the local wheels where the machine has them). Elsewhere, for example:
#   make setup TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
# where `make lock` finds torch's CPU wheel, so that no CUDA-only package enters the lock
TORCH_WHEELS ?= $(or $(PIP_FIND_LINKS),https://download.pytorch.org/whl/cpu/torch/)

$(UV):
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION)

$(STAMP): pyproject.toml $(LOCK) | $(UV)
	$(PY) -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(UV) pip install -q --python $(PY) --require-hashes --no-deps -r $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps -e .
	$(UV) pip check -q --python $(PY)
	touch $(STAMP)

## setup: create .venv and install citeops from requirements.lock (torch CPU first, then uv)
setup: $(STAMP)

## lock: re-resolve every dependency into requirements.lock (hashes) after a pin changes
lock: | $(UV)
	$(UV) pip compile -q pyproject.toml --extra test --generate-hashes --python-version 3.11 \
	  --no-emit-package torch --find-links $(TORCH_WHEELS) \
	  --custom-compile-command "make lock" -o $(LOCK)

## data: fetch SciFact + Citation-Integrity into the data dir (verified) if it is empty
data: setup
	@if [ -z "$$($(CITEOPS) data stats --json 2>/dev/null)" ]; then $(CITEOPS) data fetch; fi

## run: the whole loop on the embedded default (`citeops demo`): champion, users, trigger, retrain, promotion
run: data
	@# Prefect creates its home without parents: on a fresh clone .citeops is not there yet
	@home="$${PREFECT_HOME:-$(CURDIR)/.citeops/prefect}" && mkdir -p "$$home" && \
	PREFECT_HOME="$$home" PREFECT_SERVER_ANALYTICS_ENABLED=false $(CITEOPS) demo

## history: promotion records and retrain decisions, newest first (`citeops history`)
history: setup
	$(CITEOPS) history

## test: the fast test suite (what CI runs)
test: setup
	$(PY) -m pytest

## test-full: every test, slow ones included
test-full: setup
	$(PY) -m pytest -m ''

## lint: ruff format check + ruff lint
lint: setup
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

## format: ruff format + autofix lint
format: setup
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

## up: start the local stack (Prefect UI :4200, MLflow UI :5000, serving :8000, a worker)
up: setup
	$(CITEOPS) up

## down: stop what `make up` / `citeops up` started
down: setup
	$(CITEOPS) down

## clean: remove local state (.citeops) and caches, keep .venv
clean:
	rm -rf .citeops .pytest_cache .ruff_cache

.PHONY: help setup lock data run history test test-full lint format clean up down
