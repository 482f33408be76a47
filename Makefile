# One-command entry points. `make test` and `make reproduce` create .venv and install on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Data root: ../shared/data when it exists (this project's offline copies), else ./data.
L2L_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)
export L2L_DATA_DIR
# Profile for `make reproduce` (full = paper fidelity; smoke = minutes, for checking the pipeline).
PROFILE ?= full
# Where `make reproduce` runs its jobs (meta-training seeds, evaluations): local (a Dask LocalCluster sized to
# this machine, the default), serial (in the notebook's process) or a Dask scheduler address (tcp://host:port).
# Other targets (tests, bench) run serially unless L2L_SCHEDULER says otherwise.
SCHEDULER ?= $(or $(L2L_SCHEDULER),local)

.PHONY: install test test-fast reproduce book bench bench-avx2 clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Unit tests, the book test, then every notebook under nbval in the smoke profile: papermill writes
# parameterised copies into build/nbval (parameters cell injected), nbval executes them.
test: $(STAMP)
	rm -rf build/nbval
	$(PY) -m l2l_core.book.reproduce --profile smoke --prepare build/nbval
	$(PY) -m pytest tests build/nbval --nbval-lax

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

reproduce: $(STAMP)
	L2L_SCHEDULER=$(SCHEDULER) $(PY) -m l2l_core.book.reproduce --profile $(PROFILE)

book: $(STAMP)
	$(PY) -m l2l_core.book.reproduce --book-only

bench: $(STAMP)
	$(PY) bench/run_bench.py
	$(PY) bench/jobs_bench.py
	$(PY) bench/kernel_parts.py

# The AVX2 build of the kernels timed on this CPU (on an AVX-512 CPU: the other instruction set), beside make bench's
# (without the PyTorch path, which the kernels' build does not change).
bench-avx2: $(STAMP)
	L2L_KERNEL_CFLAGS=-march=haswell $(PY) bench/run_bench.py --no-compare-plain --out bench/results-avx2.json
	L2L_KERNEL_CFLAGS=-march=haswell $(PY) bench/kernel_parts.py --out bench/kernel_parts-avx2.json

clean:
	rm -rf _build build .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
