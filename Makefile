# Two commands do everything (see README): `make book` (the main job) and `make test`.
# Both create or reuse the virtual environment in $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test lint format env clean-env

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name titn-book --display-name "TITN Book (.venv)"
	touch $@

env: $(STAMP)

# The main job. For now: TITN trained on MNIST with the CPU profile (resumes if interrupted, cached if done).
book: $(STAMP)
	$(PY) -m titn_core train --dataset mnist --profile cpu --resume

test: $(STAMP)
	$(PY) -m ruff check titn_core tests
	$(PY) -m ruff format --check titn_core tests
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check titn_core tests

format: $(STAMP)
	$(PY) -m ruff format titn_core tests
	$(PY) -m ruff check --fix titn_core tests

clean-env:
	rm -rf $(VENV)
