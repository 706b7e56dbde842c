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

.PHONY: predict model-table bench bench-data bench-train bench-predict
predict: install  ## make predict MODEL=runs/ct/efa_net-s0 IN=scans/ OUT=predictions/ [ARGS='--tta hflip']
	$(PTX) predict --model $(or $(MODEL),$(error give MODEL=a run folder or .ckpt)) \
		--input $(or $(IN),$(error give IN=a scan file or folder)) \
		--out $(or $(OUT),$(error give OUT=an output folder)) $(ARGS)

model-table: install  ## parameters and GMACs of every registered model, beside the papers'
	$(PTX) model-table

bench-data: install  ## DataLoader slices/s from raw DICOM vs from the preprocessing cache
	$(PY) -m benchmarks.data_loading

bench-train: install  ## LightningModule + Trainer vs a plain PyTorch loop: img/s and ratio
	$(PY) -m benchmarks.train_loop

bench-predict: install  ## ptx predict on a 300-slice 512^2 CT vs a bare forward: s, slices/s, memory
	$(PY) -m benchmarks.predict

bench: bench-data bench-train bench-predict

.PHONY: train
# make train EXP=ct/efa_net [PROFILE=quick|paper|auto] [DATA=/path] [SEED=0] [ARGS='--trainer.max_epochs 5']
train: install  ## train one experiment config, then test it; the run record goes to runs/
	$(PTX) fit --exp $(or $(EXP),$(error give EXP=ct/efa_net or another experiments/configs entry)) \
		--profile $(or $(PROFILE),auto) $(if $(DATA),--data $(DATA)) $(if $(SEED),--seed $(SEED)) $(ARGS)

# ---- sweeps: the papers' tables ---------------------------------------------------------
# make ablation-encoders [DATA=/path] [PROFILE=auto|quick|paper] [SEEDS=0,1,2] [FORCE=1]
#                        [GROUP=name] [ARGS='-- --trainer.devices 2']
# Finished runs are skipped (a killed sweep resumes), FORCE=1 reruns them; the table and
# figures go to results/<group>/ (make report SWEEP=name rebuilds them from the runs).
SWEEPS := ablation-encoders ablation-efa compare-ct sweep-growth-rate ablation-loss compare-xray
SWEEP_FLAGS = $(if $(DATA),--data $(DATA)) --profile $(or $(PROFILE),auto) \
	$(if $(SEEDS),--seeds $(SEEDS)) $(if $(filter 1 yes true,$(FORCE)),--force) \
	$(if $(GROUP),--group $(GROUP))

.PHONY: $(SWEEPS) sweeps report wandb-mirrors
$(SWEEPS): install  ## run one paper table's grid, then write its report
	$(PTX) sweep $@ $(SWEEP_FLAGS) $(ARGS)

sweeps: $(SWEEPS)  ## every table of both papers, one after another

report: install  ## make report SWEEP=ablation-encoders [GROUP=name]: table + figures from runs
	$(PTX) report $(or $(SWEEP),$(error give SWEEP=one of: $(SWEEPS))) $(if $(GROUP),--group $(GROUP))

wandb-mirrors: install  ## regenerate ablations/wandb/*.yaml from ablations/sweeps/*.yaml
	$(PY) -m ablations.wandb_mirror
