# The user's verbs. Every target installs what it needs first (.venv, once per pyproject.toml);
# `make` alone (`make help`) lists them. One convention for ARGS: extra arguments of the `ptx`
# command doing the work, i.e. `ptx fit` for `train` and for every cell of a sweep target
# (`ptx predict` for `predict`); options of `ptx sweep` itself go in SWEEP_ARGS.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PTX    := $(VENV)/bin/ptx
STAMP  := $(VENV)/.installed

# The cache (phantoms, preprocessed arrays, the identifier secret) is the one a direct `ptx`
# uses: $PTX_CACHE_DIR, else $XDG_CACHE_HOME/ptx, else ~/.cache/ptx (README, "Your data").

.DEFAULT_GOAL := help
.PHONY: help install test test-slow test-all lint format phantom

help:  ## list the targets (this text); installs nothing
	@echo 'usage: make TARGET [VAR=value ...]'
	@echo
	@awk -v sweeps='$(SWEEPS)' 'BEGIN { FS = ":.*## " } \
		function title(name, line, f) { f = "ablations/sweeps/" name ".yaml"; \
			while ((getline line < f) > 0) if (sub(/^title: *"?/, "", line)) break; \
			close(f); sub(/"$$/, "", line); return line } \
		/^\$$\(SWEEPS\):.*## / { n = split(sweeps, names, " "); \
			for (i = 1; i <= n; i++) printf "  %-18s %s %s\n", names[i], $$2, title(names[i]); \
			next } \
		/^[a-zA-Z][a-zA-Z0-9_-]*:.*## / { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo
	@echo "ARGS='...': extra arguments of ptx fit (train and every sweep cell; ptx predict for"
	@echo "predict), e.g. ARGS='--trainer.max_epochs 5'. SWEEP_ARGS='...': extra ptx sweep options,"
	@echo "e.g. SWEEP_ARGS='--cells unet-resnet34 --dry-run'. Sweeps also take DATA PROFILE SEEDS"
	@echo "FOLDS FORCE=1 GROUP (ptx sweep --help); train takes EXP DATA PROFILE SEED."

install: $(STAMP)  ## create .venv and install the project into it (once per pyproject.toml)

# A new .venv takes about 6.2 GiB (torch's CUDA build alone 5.6 GiB): a full disk is named here,
# in one line, rather than as pip's OSError half-way through. MIN_FREE_GIB=0 skips the check.
MIN_FREE_GIB ?= 8
$(STAMP): pyproject.toml
	@test -x $(PY) || test $(MIN_FREE_GIB) -eq 0 || { \
		where=$$(dirname '$(VENV)'); free=$$(df -Pk "$$where" | awk 'NR == 2 { print int($$4 / 1048576) }'); \
		test -z "$$free" || test "$$free" -ge $(MIN_FREE_GIB) || { echo "make install: $$free GiB \
	free on the disk of $(abspath $(dir $(VENV))); a new $(VENV) needs about $(MIN_FREE_GIB) GiB (MIN_FREE_GIB=0 skips)" >&2; \
		exit 1; }; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install  ## fast CPU tests (the default marker set)
	$(PY) -m pytest

test-slow: install  ## the heavier tests marked `slow`
	$(PY) -m pytest -m slow

test-all: install  ## every test that needs no GPU (fast and slow)
	$(PY) -m pytest -m 'not gpu'

lint: install  ## ruff check + ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install  ## ruff check --fix + ruff format
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

bench: bench-data bench-train bench-predict  ## the three benchmarks above

.PHONY: train
# make train EXP=ct/efa_net [PROFILE=quick|paper|auto] [DATA=/path] [SEED=0] [ARGS='--trainer.max_epochs 5']
train: install  ## train one experiment config, then test it; the run record goes to runs/
	$(PTX) fit --exp $(or $(EXP),$(error give EXP=ct/efa_net or another experiments/configs entry)) \
		--profile $(or $(PROFILE),auto) $(if $(DATA),--data $(DATA)) $(if $(SEED),--seed $(SEED)) $(ARGS)

# ---- sweeps: the papers' tables ---------------------------------------------------------
# make ablation-encoders [DATA=/path] [PROFILE=auto|quick|paper] [SEEDS=0,1,2] [FOLDS=5]
#                        [FORCE=1] [GROUP=name] [SWEEP_ARGS='--cells unet-resnet34 --dry-run']
#                        [ARGS='--trainer.devices 2']
# ARGS goes to every cell's `ptx fit` (after `--`; a `--` written the old way is dropped),
# SWEEP_ARGS to `ptx sweep` itself. Finished runs are skipped (a killed sweep resumes),
# FORCE=1 reruns them; the table and figures go to results/<group>/ (make report SWEEP=name
# rebuilds them from the runs).
SWEEPS := ablation-encoders ablation-efa compare-ct sweep-growth-rate ablation-loss compare-xray
SWEEP_FLAGS = $(if $(DATA),--data $(DATA)) --profile $(or $(PROFILE),auto) \
	$(if $(SEEDS),--seeds $(SEEDS)) $(if $(FOLDS),--folds $(FOLDS)) \
	$(if $(filter 1 yes true,$(FORCE)),--force) $(if $(GROUP),--group $(GROUP))
FIT_ARGS = $(filter-out --,$(ARGS))

.PHONY: $(SWEEPS) sweeps report wandb-mirrors
# (make help lists each sweep with this comment and its YAML's title)
$(SWEEPS): install  ## sweep:
	$(PTX) sweep $@ $(SWEEP_FLAGS) $(SWEEP_ARGS) $(if $(FIT_ARGS),-- $(FIT_ARGS))

sweeps: $(SWEEPS)  ## every table of both papers, one after another

report: install  ## make report SWEEP=ablation-encoders [GROUP=name]: table + figures from runs
	$(PTX) report $(or $(SWEEP),$(error give SWEEP=one of: $(SWEEPS))) $(if $(GROUP),--group $(GROUP))

wandb-mirrors: install  ## regenerate ablations/wandb/*.yaml from ablations/sweeps/*.yaml
	$(PY) -m ablations.wandb_mirror
