# nudgekit: `make demo` runs the main job on the embedded default; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
USERS ?= 20000

.PHONY: demo test install install-test lint bench bench-lifecycle clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

demo: install
	$(BIN)/nudge demo --users $(USERS)

test: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

bench: install-test
	$(BIN)/python bench/ingest.py

bench-lifecycle: install-test
	$(BIN)/python bench/lifecycle.py

clean:
	rm -rf $(VENV) .nudge .pytest_cache
