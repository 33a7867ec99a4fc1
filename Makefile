# Compression tutorials. `make tables` regenerates every table; `make test` checks everything.
PROFILE ?= tutorial
SEEDS ?= 1 2
ARGS ?=
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_FLAGS ?= -q -p no:cacheprovider --durations=12
# Lessons whose tutorial outputs are not committed yet: they run at the smoke profile in
# tests/test_notebooks.py, but nbval has no committed outputs to compare (none at present).
NBVAL_PENDING :=

.PHONY: setup tables gpu-check notebooks tolerances kernels test test-fast bench lab clean help

help:
	@echo "make tables [PROFILE=smoke|tutorial|paper] [ARGS='--seed 1 -p NAME VALUE']  run every notebook, write results/<profile>/REPORT.md"
	@echo "make tables PROFILE=paper NPROC=4   the same, data-parallel on 4 processes (torchrun, DDP)"
	@echo "make gpu-check   on a GPU: the paper recipe's joint pruning briefly, images/s, memory, epoch time"
	@echo "make test        unit tests + nbval on the committed notebooks + smoke runs of the lessons with cells nbval skips"
	@echo "make test-fast   unit tests + smoke notebooks only (inner loop)"
	@echo "make notebooks   refresh the committed notebook outputs and notebooks/tables (tutorial profile)"
	@echo "make tolerances  re-run every lesson with SEEDS (default 1 2) and derive notebooks/tables/tolerances.csv"
	@echo "make kernels     re-run seed 0 under other CPU kernels (KERNEL=avx2) into notebooks/tables/kernels/, re-derive"
	@echo "make bench       print the speed figures and lesson 03's targets"
	@echo "make setup | lab | clean"

# The virtual environment is (re)built when missing or when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

setup: $(STAMP)

# NPROC > 1: every lesson data-parallel under torchrun (DDP: gloo on the CPU, NCCL on GPUs; one
# process per GPU), rank 0 writing; e.g. make tables PROFILE=paper NPROC=4
NPROC ?= 1
LAUNCH := $(if $(filter 1,$(NPROC)),$(PY),$(PY) -m torch.distributed.run --standalone --nproc-per-node $(NPROC))
tables: $(STAMP)
	$(LAUNCH) -m tutorial_lib.run --profile $(PROFILE) $(ARGS)

# One GPU, at most about 8 minutes: the paper recipe's joint pruning for a few hundred steps on
# generated CIFAR-100-shaped data; prints images/s, GPU memory and the epoch and 164-epoch times
gpu-check: $(STAMP)
	$(PY) -m tutorial_lib.bench gpu

notebooks: $(STAMP)
	$(PY) -m tutorial_lib.run --profile tutorial --in-place

# The spread behind the tolerances: the lessons that do not rank methods over seeds themselves
# (01 and 03; 02, 04 and 05 run their comparisons with three seeds and their seed tables feed
# the same pool) again with each seed of SEEDS, then the per-cell tolerances derived from those
# runs and the committed one (seed 0); the seed runs' tables are committed beside it
# (notebooks/tables/seed<N>/), so the derivation can be re-done.
TOLERANCE_LESSONS ?= 01 03
tolerances: $(STAMP)
	for s in $(SEEDS); do \
		$(PY) -m tutorial_lib.run --seed $$s --results results/seeds/seed$$s --only $(TOLERANCE_LESSONS) && \
		$(PY) -m tutorial_lib.reproduce freeze --source results/seeds/seed$$s/tutorial/tables \
			--target notebooks/tables/seed$$s || exit 1; done
	$(PY) -m tutorial_lib.reproduce derive
	$(PY) -m tutorial_lib.reproduce spread

# The spread across CPUs, measured: every lesson with seed 0 again under another instruction set
# (default: AVX2 kernels pinned on an AVX-512 host; on another machine, `make kernels KERNEL=<name>
# KERNEL_ENV=` records that machine's own kernels), its tables committed in
# notebooks/tables/kernels/$(KERNEL)/; a cell that moved there is held to that spread too.
KERNEL ?= avx2
KERNEL_ENV ?= ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2
kernels: $(STAMP)
	env $(KERNEL_ENV) TQDM_DISABLE=1 $(PY) -m tutorial_lib.run --results results/kernels/$(KERNEL)
	$(PY) -m tutorial_lib.reproduce freeze --source results/kernels/$(KERNEL)/tutorial/tables \
		--target notebooks/tables/kernels/$(KERNEL)
	$(PY) -m tutorial_lib.reproduce derive

# nbval re-runs the committed notebooks first and compares their exact cells; the tables that
# run writes (results/tutorial/tables) are then compared with notebooks/tables within the
# tolerances in notebooks/tables/tolerances.csv (tests/test_reproduce.py), with the unit tests.
# A lesson's smoke run is skipped here when nbval runs every one of its cells (the same code on
# more data, in the same session); lessons with NBVAL_SKIP cells (02, 07) keep theirs.
test: $(STAMP)
	TQDM_DISABLE=1 TUTORIAL_CHECK_MEASURED=1 $(PY) -m pytest $(PYTEST_FLAGS) notebooks tests --nbval-lax \
		--nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg $(addprefix --ignore=,$(NBVAL_PENDING))

test-fast: $(STAMP)
	$(PY) -m pytest $(PYTEST_FLAGS) tests

bench: $(STAMP)
	$(PY) -m tutorial_lib.bench masks
	$(PY) -m tutorial_lib.bench train
	$(PY) -m tutorial_lib.bench distill
	$(PY) -m tutorial_lib.bench constraints
	$(PY) -m tutorial_lib.bench depth
	$(PY) -m tutorial_lib.bench runtimes
	$(PY) -m tutorial_lib.bench quant

lab: $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name compression-tutorial --display-name "Compression tutorial (.venv)"
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf results .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
