# The README's two commands: `make reproduce` and `make test`. Both set up .venv first.
VENV := .venv/bin
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
REUSE ?= True

.PHONY: setup reproduce test lint format

setup:
	@bash scripts/setup.sh

reproduce: setup
	@$(VENV)/python -m chronos_core reproduce --reuse $(REUSE)

test: setup
	@$(VENV)/ruff check chronos_core tests
	@$(VENV)/python -m pytest tests

lint: setup
	@$(VENV)/ruff check chronos_core tests
	@$(VENV)/ruff format --check chronos_core tests

format: setup
	@$(VENV)/ruff format chronos_core tests
