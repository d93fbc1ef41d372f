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

test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(BIN)/python -m mypy vmctl

bench: $(STAMP)
	$(BIN)/python bench/sim_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache *.egg-info
