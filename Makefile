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

.PHONY: setup run demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[build,dev,fleet]'
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

# Fashion-MNIST two classes at a time, with progress: about a minute on a desktop CPU, up to
# ~11 on a small board; `make demo DEMO_ARGS=--quick` takes a tenth of that.
DEMO_ARGS ?=
demo: $(RUN_STAMP)
	$(RUN_VENV)/bin/edgecl demo $(DEMO_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# pytest exits 5 when it collected nothing; that is a failure of the suite, not a pass,
# but it must not be confused with a crash either: report it and fail. With a -m selection
# it is also what a selection that matches no test gives. $(1): arguments, $(2): which tests.
define run_pytest
	$(BIN)/python -m pytest $(1); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no $(2) tests" >&2; fi; exit $$rc
endef

# `make test` leaves out the tests marked slow (daemons killed in loops, full-dataset and
# stress runs); `make test-slow` runs only those. CI (.ci/run) runs both; plain `pytest`
# runs everything.
test: lint
	$(call run_pytest,-m "not slow",default)

test-slow: setup
	$(call run_pytest,-m slow,slow)

# Every benchmark; each writes its own section of BENCHMARKS.md (bounded in time, loopback only).
bench: setup
	PYTHON=$(BIN)/python benchmarks/run_all.sh

clean:
	rm -rf $(VENV) $(RUN_VENV) .mypy_cache .ruff_cache .pytest_cache
