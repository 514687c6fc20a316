# The README's commands: `make book` (the book from results/, no training), `make reproduce` (the runs behind it,
# cached), `make test` (lint + tests, what CI runs), `make bench` (the speed benchmarks, in the cpu profile's bf16).
# All of them create or reuse the virtual environment in $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PLAN ?= plans/cpu.yaml
# Where prepared .npz datasets live (outside the checkout); `make data` fills it from ../shared/data where that exists
DATA_DIR ?= $(HOME)/.cache/titn/data
SHARED_DATA := ../shared/data

.PHONY: book lab reproduce bench test lint format env data clean-env

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev,book]"
	$(PY) -m ipykernel install --sys-prefix --name titn-book --display-name "TITN Book (.venv)"
	touch $@

env: $(STAMP)

# This project's offline machines get CIFAR packed in ../shared/data: unpack it once per machine (seconds). Elsewhere
# the loader finds a torchvision folder or downloads (see README, "Data"), and this does nothing.
data: $(STAMP)
	@if [ -f $(SHARED_DATA)/unpack.py ]; then $(PY) $(SHARED_DATA)/unpack.py $(DATA_DIR); \
	else echo "no $(SHARED_DATA)/unpack.py: nothing to unpack (the loader downloads or reads your folders)"; fi

# The book, offline, from the results/ committed here (or $$TITN_RESULTS_DIR); opens at _build/html/index.html.
# --all: every page re-reads results/ (Sphinx would otherwise skip pages whose .md did not change, leaving old tables).
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --all -W -n --keep-going

# JupyterLab on the project, the "TITN Book (.venv)" kernel preselected. A notebook's kernel moves to the repository
# root (titn_core.notebook), so results/, checkpoints/ and the data ($$TITN_DATA_DIR, ...) are found as by the CLI.
# LAB_FLAGS adds jupyter-lab options, e.g. LAB_FLAGS="--no-browser --port 8890".
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --MappingKernelManager.default_kernel_name=titn-book --LabApp.default_url=/lab/tree/notebooks \
		$(LAB_FLAGS)

# Every run the book shows (cached by config hash: only missing or interrupted runs train), its students compiled
# (--compile: regional torch.compile, not part of the config hash, 1.06-1.4x faster on the CPUs measured; the committed
# runs were made both ways; without a C++ compiler the runs train eagerly and say so). COMPILE= trains eagerly.
COMPILE ?= --compile
reproduce: $(STAMP)
	$(PY) -m titn_core.experiments run --plan $(PLAN) $(COMPILE)

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[dev,book,bench]"
	$(PY) benchmarks/throughput.py --amp
	$(PY) benchmarks/step_profile.py --amp
	$(PY) benchmarks/matmul_shapes.py --amp
	$(PY) benchmarks/attention_kernels.py --dtype bfloat16

test: $(STAMP)
	$(PY) -m ruff check titn_core tests benchmarks
	$(PY) -m ruff format --check titn_core tests benchmarks
	$(PY) -m pytest -q --durations=10 tests

lint: $(STAMP)
	$(PY) -m ruff check titn_core tests benchmarks

format: $(STAMP)
	$(PY) -m ruff format titn_core tests benchmarks
	$(PY) -m ruff check --fix titn_core tests benchmarks

clean-env:
	rm -rf $(VENV)
