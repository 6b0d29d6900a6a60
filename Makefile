# distilray: the two commands a newcomer needs are `make demo` and `make test`.
# Both set up everything they need themselves (venv, CPU torch, system speech tools).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned here, not in pyproject: 2.13.0 is the CPU build this platform ships
# for laptops/CI; GPU images bring their own CUDA torch.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test test-all lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[embedded,dev]"
	touch $@

system-deps:
	@command -v espeak-ng >/dev/null && command -v flite >/dev/null || { \
	  echo "installing espeak-ng and flite (speech synthesis for demo/test data)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq espeak-ng flite >/dev/null; }

setup: $(VENV)/.installed system-deps

## The whole pipeline end to end on the embedded tiny.en teacher (CPU, < 20 min).
demo: setup
	$(PY) jobs/demo.py --config configs/tiny/demo.yaml

## The test suite (fast: tiny models, short audio, one local Ray instance).
## Multi-node fault, S3-pipeline and other end-to-end tests are `slow`: `make test-all`.
test: setup
	$(VENV)/bin/pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check platform tests jobs bench

## All benchmarks, one table of ratios measured in one run.
bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) runs artifacts
