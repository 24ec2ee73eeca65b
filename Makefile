# Two commands matter: `make setup` then `make train` / `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: setup train test test-fast lint clean

setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# torch first: the pinned CPU wheel; the project's range then installs nothing more.
	$(BIN)/python -m pip install torch==$(TORCH_VERSION)
	# dev: tests and lint; demo: gmrw-demo (Gradio), whose browser test is part of `make test`
	$(BIN)/python -m pip install -e ".[dev,demo]"

train:
	$(BIN)/gmrw-train $(ARGS)

test:
	GMRW_FIXTURES=$${GMRW_FIXTURES:-$(abspath ../shared/fixtures/reference)} $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast:
	GMRW_FIXTURES=$${GMRW_FIXTURES:-$(abspath ../shared/fixtures/reference)} $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf build dist .pytest_cache .ruff_cache outputs runs wandb src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
