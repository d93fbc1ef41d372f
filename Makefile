# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash examples/demo.sh

# Four workers on two cores, one test file per worker at a time (--dist loadfile): the suite
# mostly waits on simulated operations and the simulator's clock, not on the CPU (measured: 173 s
# with two workers, 100 s with four); a file's tests never run beside each other.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 4 --dist loadfile
	$(BIN)/python -m mypy vmctl
	$(BIN)/python -m ruff check vmctl tests

bench: $(STAMP)
	$(BIN)/python bench/sim_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache *.egg-info
