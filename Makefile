# Two entry points a new user needs: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup demo test test-all bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the local CPU wheel; an unpinned torch would pull a CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[models,postgres,dev,bench,ray]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/python -m embedops.demo

test: setup
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q

test-all: setup
	EMBEDOPS_SLOW=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
