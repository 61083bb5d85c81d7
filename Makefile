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

$(STAMP): pyproject.toml
	python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

## setup: create .venv and install citeops with its pinned dependencies (torch CPU first)
setup: $(STAMP)

## data: fetch SciFact + Citation-Integrity into the data dir (verified) if it is empty
data: setup
	@if [ -z "$$($(CITEOPS) data stats --json 2>/dev/null)" ]; then $(CITEOPS) data fetch; fi

## run: the loop on the embedded default: data, short training, evaluation, ingest, drift, trigger
run: data
	$(CITEOPS) train --epochs 1 --max-examples 1200 --max-length 128
	$(CITEOPS) evaluate --model-uri models:/claim-verifier@latest-trained
	$(CITEOPS) ingest
	$(CITEOPS) drift
	$(CITEOPS) trigger

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

.PHONY: help setup data run test test-full lint format clean up down
