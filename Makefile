# Two commands do all the set-up on a fresh machine:
#   make demo   # builds the synthetic world, pre-trains its tiny LLaVA, checks its gates
#   make test   # the test suite
# Each creates .venv (or uses VENV=...) and installs what it needs. torch is pinned to the CPU
# build by default; a GPU user keeps their own with `make demo TORCH=`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint bench install clean

$(BIN)/.siu-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if [ -n "$(TORCH)" ]; then $(BIN)/python -m pip install -q "$(TORCH)"; fi
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.siu-installed

demo: install
	$(BIN)/siu demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/world_times.py
	$(BIN)/python benchmarks/unlearn_step_cost.py
	$(BIN)/python benchmarks/eval_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
