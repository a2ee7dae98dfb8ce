# The two commands of the quick start are `make run` and `make test`; everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench bench-quick clean monitoring

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed

## run: serve ./data as dataset "local" on http://127.0.0.1:8080 (loopback only)
run: $(VENV)/.installed
	$(BIN)/gateway serve

## test: ruff, mypy --strict and the whole pytest suite (installs what the tests need)
test: $(VENV)/.installed
	./scripts/test

lint: $(VENV)/.installed
	$(BIN)/ruff check gateway tests bench deploy
	$(BIN)/mypy
	$(BIN)/mypy --strict deploy/monitoring/generate.py

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache

## bench: the full benchmark (about 14 minutes); writes bench/results/latest.{json,md}
bench: $(VENV)/.installed
	$(BIN)/python -m bench.run

## bench-quick: the regression guard (about 30 s), also run by the test suite
bench-quick: $(VENV)/.installed
	$(BIN)/python -m bench.run --quick

## monitoring: regenerate the Grafana dashboard and the chart's copies of it and of the alerting rules
monitoring:
	$(PYTHON) deploy/monitoring/generate.py
