# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Headless Chromium renders the report pages in the tests (Debian's package; CI is root).
CHROMIUM := /usr/bin/chromium
# Test processes at once (pytest-xdist); the tests are hermetic (own temp dirs, free ports).
JOBS ?= 2

.PHONY: install demo test lint bench clean

# uv installs the same packages as pip, in a third of the time; compiled up front (as pip
# does), so the first test processes do not each compile the libraries they import.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev,spark,explain]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf .demo
	$(BIN)/retrainer demo .demo

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q -n $(JOBS) --dist loadgroup --durations=20

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/cycle.py
	$(BIN)/python bench/cycle.py --rows 1000000 --repeats 1
	$(BIN)/python bench/cycle_parts.py --rows 1000000
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/explain.py
	$(BIN)/python bench/decisions.py

clean:
	rm -rf $(VENV) .demo .pytest_cache build src/*.egg-info
