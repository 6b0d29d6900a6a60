# distilray: the two commands a newcomer needs are `make demo` and `make test`.
# Both set up everything they need themselves (venv, CPU torch, system speech tools).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned here, not in pyproject: 2.13.0 is the CPU build this platform ships
# for laptops/CI; GPU images bring their own CUDA torch.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
# dotted overrides for `make demo` / `make quality`, e.g. DEMO_ARGS=untrained_baseline=true
DEMO_ARGS ?=

.PHONY: setup system-deps demo quality test test-all lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[embedded,tts,dev]"
	touch $@

# Speech for synthetic training data (`distilray data synth`, see README): espeak-ng and
# flite (required), festival with Debian's English voices, Debian's `fortunes` quotations
# (real prose for the sentence bank), MBROLA voices and two more festival voices. MBROLA
# and those voices live in Debian's contrib/non-free components: on Debian they are
# enabled in a sources file of their own (when apt offers no installable mbrola: a
# package that is only referenced still "shows"); where they cannot be had, synthesis
# runs without them.
SPEECH_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k \
	festvox-us-slt-hts fortunes
MBROLA_PACKAGES := festvox-rablpc16k festvox-don mbrola mbrola-us1 mbrola-us2 mbrola-us3 \
	mbrola-en1 festvox-us1 festvox-us2 festvox-us3 festvox-en1
NONFREE_SOURCES := /etc/apt/sources.list.d/distilray-contrib-non-free.sources

system-deps:
	@missing=$$(for p in $(SPEECH_PACKAGES) $(MBROLA_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] && exit 0; \
	echo "installing speech synthesis packages:" $$missing; \
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	. /etc/os-release; \
	if [ "$$ID" = debian ] && [ ! -f $(NONFREE_SOURCES) ] && [ -f /etc/apt/sources.list.d/debian.sources ] \
	    && [ -z "$$(apt-cache madison mbrola 2>/dev/null)" ]; then \
	  sed 's/^Components: .*/Components: contrib non-free/' /etc/apt/sources.list.d/debian.sources \
	    | $$SUDO tee $(NONFREE_SOURCES) >/dev/null; \
	fi; \
	$$SUDO apt-get update -qq && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SPEECH_PACKAGES) >/dev/null && \
	{ $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(MBROLA_PACKAGES) >/dev/null || \
	  echo "warning: contrib voices (MBROLA, festival rab/don) not installed; synthesis goes on without them"; }

setup: $(VENV)/.installed system-deps

## The whole pipeline end to end on the embedded tiny.en teacher (2-core CPU: 17.4 min measured, budget 20: README row 127; 10.7 on a faster machine, row 129; 260 steps took 19-22).
demo: setup
	$(PY) jobs/demo.py --config configs/tiny/demo.yaml $(DEMO_ARGS)

## The quality recipe: the demo's stages at a larger scale (2-core CPU: budget 90 min; 83 min measured on the slower machine kind: README row 79; 33.6 and 36.7 on a faster one with the Steel Sky test set, rows 132-133).
quality: setup
	$(PY) jobs/demo.py --config configs/tiny/quality.yaml $(DEMO_ARGS)

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
