# graphforget — two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: install
	$(BIN)/graphforget train --data demo --model lightgcn --layers 3 --dim 64 --epochs 30 --seed 0 --out runs/demo.pt
	$(BIN)/graphforget unlearn runs/demo.pt --data demo --random-fraction 0.01 --method ifru --seed 0 --out runs/demo-forgot.pt

test: install
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
