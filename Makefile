# Every target sets itself up: a fresh machine needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := dev,web,rabbitmq,redis,metrics,plot,cli,testing
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest soak demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The soak at full size: one million admissions on the virtual clock (make test runs a bounded one).
SOAK_ADMISSIONS ?= 1000000
soak: $(STAMP)
	ADMISSION_SOAK_ADMISSIONS=$(SOAK_ADMISSIONS) $(BIN)/pytest -m soak tests/soak $(PYTEST_ARGS)

# make demo DEMO_ARGS="--speed 60 --port 8000": any `admission demo` options.
demo: $(STAMP)
	$(BIN)/admission demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist *.egg-info
