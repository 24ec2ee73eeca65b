# Two commands matter: `make setup` then `make train` / `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: setup train test test-fast test-avx2 lint clean

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

# The tests whose results depend on the CPU's float kernels (marker `numerics`), rerun with the
# instruction set capped at AVX2: ATen's kernels, oneDNN's convolutions and MKL's BLAS then take
# the code paths of an AVX2-only CPU (bf16 matmuls fall ~100x behind fp32, the sign it took).
# On an AVX2-only CPU the cap changes nothing. CI runs it after `make test`.
AVX2_CAP = ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
test-avx2:
	$(AVX2_CAP) GMRW_FIXTURES=$${GMRW_FIXTURES:-$(abspath ../shared/fixtures/reference)} $(BIN)/python -m pytest -m numerics $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf build dist .pytest_cache .ruff_cache outputs runs wandb src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
