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

# uv installs the same packages as pip, in a third of the time. The libraries are compiled
# to bytecode up front (as pip does): where PYTHONDONTWRITEBYTECODE is set (as on CI images)
# every process would otherwise compile what it imports, every time. Not their test suites
# (a third of the files; nothing imports them) nor pip's and setuptools' own code: 13 s
# instead of uv's --compile-bytecode, 30 s on two cores. A file that does not compile is
# compiled on import, if anything ever imports it.
SITE_PACKAGES = $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
NOT_COMPILED := '/tests?/|/site-packages/(pip|setuptools|pkg_resources)/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev,spark,explain]"
	$(BIN)/python -m compileall -q -j 0 -x $(NOT_COMPILED) $(SITE_PACKAGES) \
		|| echo "some library files did not compile (see above); they compile on import"
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
