# Two venvs. RUN_VENV holds the daemon alone, without torch: the default int8 backbone
# ships prebuilt in the package. VENV adds what tests, benchmarks and `edgecl backbone
# build` need; torch is installed first and pinned to its CPU build: an unpinned torch
# pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
RUN_VENV ?= .venv-run
RUN_STAMP := $(RUN_VENV)/.installed

.PHONY: setup run demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[build,dev]'
	touch $(STAMP)

setup: $(STAMP)

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/pip install -q -e .
	touch $(RUN_STAMP)

# The daemon on its default int8 backbone (copied from the package into ./edgecl-data on
# first start); no torch.
run: $(RUN_STAMP)
	$(RUN_VENV)/bin/edgecl serve

demo: $(RUN_STAMP)
	$(RUN_VENV)/bin/edgecl demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# pytest exits 5 when it collected nothing; that is a failure of the suite, not a pass,
# but it must not be confused with a crash either: report it and fail.
test: lint
	$(BIN)/python -m pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

# Every benchmark; each writes its own section of BENCHMARKS.md (bounded in time, loopback only).
bench: setup
	PYTHON=$(BIN)/python benchmarks/run_all.sh

clean:
	rm -rf $(VENV) $(RUN_VENV) .mypy_cache .ruff_cache .pytest_cache
