# Two commands for a fresh machine: `make run` (the app on SQLite with the Apple emulator)
# and `make test` (the whole suite). Both build .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= localhost
PORT ?= 5000

LOWEST ?= .venv-lowest

.PHONY: run test test-lowest install browser-deps bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("siwa-web needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	@$(BIN)/python scripts/check_port.py $(HOST) $(PORT)
	$(BIN)/flask --app app db upgrade
	@echo ""
	@echo "  siwa-web is starting: open http://$(HOST):$(PORT)/"
	@echo ""
	SIWA_ISSUER=$${SIWA_ISSUER:-http://$(HOST):$(PORT)} $(BIN)/flask --app app run --host $(HOST) --port $(PORT)

browser-deps:
	@bash scripts/ensure_browsers.sh

test: install browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The suite on every direct dependency at the lower bound pyproject.toml states (not run by CI).
test-lowest: browser-deps
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet $$($(PYTHON) scripts/lower_bounds.py)
	$(LOWEST)/bin/python -m pip install --quiet --no-deps -e .
	$(LOWEST)/bin/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/tokens.py

clean:
	rm -rf $(VENV) $(LOWEST) .pytest_cache test-artifacts
