PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint docs bench-p1 bench-converters bench-backfill clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[train,dev,bench,ray]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10

lint: $(STAMP)
	$(BIN)/ruff check qdrant_compat converters tests benchmarks examples
	$(BIN)/mypy qdrant_compat converters

bench-p1: $(STAMP)
	$(BIN)/python -m benchmarks.p1_bct

bench-converters: $(STAMP)
	$(BIN)/python -m benchmarks.p1_converters

clean:
	rm -rf $(VENV) demo_output qdrant_storage qdrant_compat_registry walkthrough wt py existing site bct_upgrade_output convert_output \
	  existing_output backfill_output

docs: $(STAMP)
	$(BIN)/python docs/build_api.py site
