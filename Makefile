# Everyday commands; CI (.ci/run) runs the same tools. `make help` lists the targets.
#
# Tools come from .venv when it exists (make install makes it), else from PATH:
#   make lint                         # with .venv
#   make lint BIN=/other/venv/bin/    # another environment
.DEFAULT_GOAL := help
.PHONY: help install lint docs docs-check crd test-fast test bench up

VENV ?= .venv
BIN ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/,)
PYTHON := $(BIN)python
PYTEST := $(PYTHON) -m pytest -p no:cacheprovider

# Unit tests of the pure parts, no servers, no subprocess-heavy suites: about 20 s on 2 cores.
# Add a file here when it is fast (a few seconds at most) and needs no browser, cluster or chart tools.
FAST_TESTS := tests/api tests/akash tests/client/test_progress_line.py \
	$(filter-out tests/gateway/test_routing_profiles_http.py,$(wildcard tests/gateway/test_routing_*.py)) \
	tests/gateway/test_backends.py tests/gateway/test_peers.py tests/gateway/test_pool_summary.py \
	tests/operator/test_desired_state.py tests/operator/test_drift_status.py tests/operator/test_crd.py \
	tests/operator/test_policies.py tests/local/test_plan.py tests/test_reference_docs.py tests/test_version.py \
	tests/test_install_script.py

POOL ?= examples/local-pool.yaml
BENCH ?=
ARGS ?=

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

install:  ## .venv with torch (the build for this machine) and sdxlpool editable, with test and lint tools
	bash scripts/install.sh --test

lint:  ## ruff, import-linter layer contracts, mypy (as CI)
	$(BIN)ruff check sdxlpool tests benchmarks reliability scripts
	$(BIN)lint-imports
	$(BIN)mypy sdxlpool

docs:  ## regenerate docs/reference/*.md from the code (CLI, HTTP, metrics, CRD)
	$(PYTHON) -m sdxlpool._reference

docs-check:  ## fail when a reference page is stale
	$(PYTHON) -m sdxlpool._reference --check

crd:  ## regenerate the SDXLPool CRD from sdxlpool/api/spec.py (crds/ and the chart's copy), then the pages
	$(PYTHON) -m sdxlpool.operator.crd > crds/sdxlpools.sdxlpool.dev.yaml
	cp crds/sdxlpools.sdxlpool.dev.yaml charts/sdxlpool/crds/sdxlpools.sdxlpool.dev.yaml
	$(PYTHON) -m sdxlpool._reference

test-fast:  ## unit tests of the pure parts (seconds); ARGS="-k routing" narrows them
	$(PYTEST) -q -m "not slow and not gpu" $(FAST_TESTS) $(ARGS)

test:  ## the whole suite, as CI runs it (10+ minutes on 2 cores; bash .ci/run also installs what it needs)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PYTEST) -q $(ARGS)

bench:  ## list the benchmarks; BENCH=routing ARGS="..." runs benchmarks/routing.py (figures: docs/benchmarks.md)
ifeq ($(BENCH),)
	@for f in benchmarks/[!_]*.py; do \
		printf '  %-24s %s\n' "$$(basename $$f .py)" "$$(sed -n '1s/^"""//p' $$f)"; done
	@echo 'run one: make bench BENCH=NAME [ARGS="--help"]'
else
	$(PYTHON) benchmarks/$(BENCH).py $(ARGS)
endif

up:  ## run a whole pool on this machine (POOL=examples/local-pool.yaml); Ctrl-C stops it
	$(BIN)sdxlpool up $(POOL) $(ARGS)
