# The user's verbs. Every target installs what it needs first (.venv, once per pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PTX    := $(VENV)/bin/ptx
STAMP  := $(VENV)/.installed

# Data and runs stay inside the checkout unless the user says otherwise.
export PTX_CACHE_DIR ?= $(CURDIR)/.cache/ptx

.PHONY: install test test-slow test-all lint format phantom

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install  ## fast CPU tests (the default marker set)
	$(PY) -m pytest

test-slow: install  ## the heavier tests marked `slow`
	$(PY) -m pytest -m slow

test-all: install
	$(PY) -m pytest -m 'not gpu'

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

phantom: install  ## write both phantoms under data/phantom (DIR=... to change)
	$(PTX) phantom ct --out $(or $(DIR),data/phantom)/ct --patients 8 --size 256 --slices 48
	$(PTX) phantom xray --out $(or $(DIR),data/phantom)/xray --patients 40 --size 512

.PHONY: model-table bench bench-data
model-table: install  ## parameters and GMACs of every registered model, beside the papers'
	$(PTX) model-table

bench-data: install  ## DataLoader slices/s from raw DICOM vs from the preprocessing cache
	$(PY) -m benchmarks.data_loading

bench: bench-data

.PHONY: train
# make train EXP=ct/efa_net [PROFILE=quick|paper|auto] [DATA=/path] [SEED=0] [ARGS='--trainer.max_epochs 5']
train: install  ## train one experiment config, then test it; the run record goes to runs/
	$(PTX) fit --exp $(or $(EXP),$(error give EXP=ct/efa_net or another experiments/configs entry)) \
		--profile $(or $(PROFILE),auto) $(if $(DATA),--data $(DATA)) $(if $(SEED),--seed $(SEED)) $(ARGS)
