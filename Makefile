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
	$(PY) -m l2l_core.runtime.reproduce --profile smoke --prepare build/nbval
	$(PY) -m pytest tests build/nbval --nbval-lax

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

# ONLY="04_relu 05_mnist_like" runs those notebooks; PARAMS="n_tasks=20 meta_seeds=[0,1]" overrides parameters in
# the notebooks to run that declare them (the chapters that read a changed one run again).
ONLY ?=
PARAMS ?=
reproduce: $(STAMP)
	L2L_SCHEDULER=$(SCHEDULER) $(PY) -m l2l_core.runtime.reproduce --profile $(PROFILE) \
		$(if $(ONLY),--only $(ONLY)) $(foreach p,$(PARAMS),--param '$(p)')

book: $(STAMP)
	$(PY) -m l2l_core.runtime.reproduce --book-only

# Timings into bench/results/<this CPU>/ (bench/cpu_slug.py names the folder; bench/README.md says what each measures).
bench: $(STAMP)
	$(PY) bench/run_bench.py
	$(PY) bench/jobs_bench.py
	$(PY) bench/kernel_parts.py

# The AVX2 build of the kernels timed on this CPU (on an AVX-512 CPU: the other instruction set), beside make bench's
# (without the PyTorch path, which the kernels' build does not change).
bench-avx2: $(STAMP)
	L2L_KERNEL_CFLAGS=-march=haswell $(PY) bench/run_bench.py --no-compare-plain \
		--out "$$($(PY) bench/cpu_slug.py --dir)/results-avx2.json"
	L2L_KERNEL_CFLAGS=-march=haswell $(PY) bench/kernel_parts.py --out "$$($(PY) bench/cpu_slug.py --dir)/kernel_parts-avx2.json"

clean:
	rm -rf _build build .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Stored book data (tools/README.md): each target below recomputes one folder of book/data/ (or the shipped weights)
# that a chapter reads; none of them runs as part of make reproduce.
.PHONY: long-run stuck-rate rounding-check verdict-stability ship-pretrained store-evaluation reference retrain

# book/data/long_run: one LSTM per task kind meta-trained at the thesis' budget (hours; chapter 02, method page).
long-run: $(STAMP)
	$(PY) tools/long_meta_training.py --family quadratic
	$(PY) tools/long_meta_training.py --family mnist

# book/data/stuck_rate: the first epoch of meta-seeds 5-24 on both initialisations, judged by the restart rule (chapter 02).
stuck-rate: $(STAMP)
	$(PY) tools/stuck_rate.py --init thesis
	$(PY) tools/stuck_rate.py --init pytorch

# Two finished runs' results folders (build/<profile>/results) that differ only in float rounding, for the next two.
RUN_A ?=
RUN_B ?=
LABELS ?= fma no-fp-contract
NOTE ?=
RUNS_GIVEN = test -n "$(RUN_A)" && test -n "$(RUN_B)" || { echo "usage: make $@ RUN_A=<results folder> \
	RUN_B=<results folder> [NOTE='what differed']" >&2; exit 2; }

# book/data/rounding_check: the two runs' verdicts side by side (reproduction page). Differing verdicts are a result,
# not a failure of the target.
rounding-check: $(STAMP)
	@$(RUNS_GIVEN)
	$(PY) tools/compare_runs.py $(RUN_A) $(RUN_B) --labels $(LABELS) --save book/data/rounding_check \
		--note "$(NOTE)" || test $$? -eq 1

# book/data/verdict_stability: how often another run repeats each verdict, from the two runs' LSTMs (reproduction page).
verdict-stability: $(STAMP)
	@$(RUNS_GIVEN)
	$(PY) tools/verdict_stability.py $(RUN_A) $(RUN_B) --save book/data/verdict_stability --note "$(NOTE)"

# l2l_core/optimizers/pretrained: chapter 02's MNIST LSTMs of a finished run, shipped for the drop-in optimizer;
# PRETRAINED_FROM=reference ships the reference store's LSTMs, chapter 2's thesis arm evaluated from them first.
PRETRAINED_FROM ?= build/full/results
ship-pretrained: $(STAMP)
	$(PY) tools/ship_pretrained.py $(if $(filter reference reference/,$(PRETRAINED_FROM)),--store reference,$(PRETRAINED_FROM))

# reference/tables and reference/executed: the result tables and executed notebooks of a finished `make reproduce`
# (build/full), with the machine that made them. Every later full run on that machine must equal the tables bit for
# bit (make reproduce checks it); make book builds the book from the notebooks when build/full has none.
store-evaluation: $(STAMP)
	$(PY) -m l2l_core.experiments.reference_tables store

# The reference run (reference/README.md): every missing stored LSTM, resumed job by job, on $(SCHEDULER), with each
# finished job's files committed as it finishes. Long: many hours on two cores.
reference: $(STAMP)
	tools/commit_reference.sh & L2L_SCHEDULER=$(SCHEDULER) $(PY) -m l2l_core.experiments.reference train; kill %1

# Meta-train the reference run's LSTMs again from scratch into build/retrain (ARM=02_mnist SEEDS="0" for one),
# on the local cluster or SCHEDULER=tcp://...; then each new LSTM beside the stored one: identical where both were
# trained on the same machine (else the target fails), and how far they differ elsewhere.
RETRAIN_OUT ?= build/retrain
retrain: $(STAMP)
	L2L_SCHEDULER=$(SCHEDULER) $(PY) -m l2l_core.experiments.reference train --out $(RETRAIN_OUT) \
		$(if $(ARM),--arm $(ARM)) $(if $(SEEDS),--seeds $(SEEDS))
	$(PY) -m l2l_core.experiments.reference compare --out $(RETRAIN_OUT)
