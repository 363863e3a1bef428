# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean peer

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel on disk (an unpinned torch pulls a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	# the optional extras too, so that their tests run (scale: DuckDB, psutil; tune: Optuna; track: TensorBoard, MLflow)
	$(BIN)/pip install -q -e '.[dev,scale,tune,track]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/denoiserec demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# RecBole 1.2.1 peer for benchmarks/vs_recbole.py, in its own venv, from the shared lock file
# (recbole.md: torch first, then the exact versions of a working RecBole venv).
RECBOLE_LOCK ?= ../shared/docs/protocols/recbole-requirements.lock.txt
peer:
	test -d .venv-recbole || $(PYTHON) -m venv .venv-recbole
	.venv-recbole/bin/pip install -q torch==2.13.0
	.venv-recbole/bin/pip install -q -r $(RECBOLE_LOCK)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
