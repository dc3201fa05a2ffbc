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
	# train MF on the shipped demo data (early stopping), forget two users with IFRU, audit against
	# independent retrains: "do nothing" must fail the audit, a control retrain must pass it
	$(BIN)/graphforget train --data demo --model mf --dim 16 --lr 0.01 --l2 0.01 --eval-every 5 --patience 3 --seed 0 --quiet --out runs/demo.pt
	$(BIN)/graphforget unlearn runs/demo.pt --data demo --user 7 42 --method ifru --out runs/demo-forgot.pt
	$(BIN)/graphforget audit runs/demo.pt runs/demo-forgot.pt --data demo --edges runs/demo-forgot.edges.txt --shadows 2

test: install
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
