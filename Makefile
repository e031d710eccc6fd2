# Two targets a new user needs: `make run` (the default scenario) and `make test` (the suite).
# Each creates .venv on first use and reinstalls only when pyproject.toml changes.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.agora-installed
PYTHON ?= python3

.PHONY: run test bench long-test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/agora run scenarios/marketplace.toml --out runs/quickstart --overwrite

# One pytest worker per core (pytest-xdist).
test: $(STAMP)
	$(PY) -m pytest -q -n auto

long-test: $(STAMP)
	$(PY) -m pytest -q -m long

bench: $(STAMP)
	$(VENV)/bin/agora bench

clean:
	rm -rf runs .pytest_cache
