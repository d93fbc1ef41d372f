# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-az bench-sim clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash examples/demo.sh
	PATH="$(abspath $(BIN)):$$PATH" bash examples/guest_demo.sh

# Four workers on two cores, one test file per worker at a time (--dist loadfile): the suite
# mostly waits on simulated operations and the simulator's clock, not on the CPU (measured: 173 s
# with two workers, 100 s with four); a file's tests never run beside each other.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 4 --dist loadfile
	$(BIN)/python -m mypy vmctl
	$(BIN)/python -m ruff check vmctl tests

# Benchmarks: vmctl with its defaults on fleets shaped like a real subscription, each result a
# median [min-max] of several runs printed against its lower bound; real `az` side by side when
# installed (`make bench-az`). BASELINE=<git ref> also runs that commit of vmctl in the same run.
AZ := .bench/azcli/bin/az
BENCH_BASELINE := $(if $(BASELINE),--baseline $(BASELINE),)

bench: $(STAMP)
	$(BIN)/python bench/startup.py $(BENCH_BASELINE)
	$(BIN)/python bench/inventory.py $(BENCH_BASELINE)
	$(BIN)/python bench/bulk.py $(BENCH_BASELINE)

# azure-cli in its own venv (never the project's): 2.91 from PyPI
$(AZ):
	$(PYTHON) -m venv .bench/azcli
	.bench/azcli/bin/python -m pip install --quiet --upgrade pip
	.bench/azcli/bin/python -m pip install --quiet 'azure-cli==2.91.*'

bench-az: $(AZ) bench

bench-sim: $(STAMP)
	$(BIN)/python bench/sim_throughput.py

clean:
	rm -rf $(VENV) .bench .pytest_cache .mypy_cache *.egg-info
