# Two commands for a fresh machine: `make run` (the app on SQLite with the Apple emulator)
# and `make test` (the whole suite). Both build .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= localhost
PORT ?= 5000

.PHONY: run test install browser-deps bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("siwa-web needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/flask --app app db upgrade
	@echo ""
	@echo "  siwa-web is starting: open http://$(HOST):$(PORT)/"
	@echo ""
	SIWA_ISSUER=$${SIWA_ISSUER:-http://$(HOST):$(PORT)} $(BIN)/flask --app app run --host $(HOST) --port $(PORT)

browser-deps:
	@bash scripts/ensure_chromium.sh

test: install browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/tokens.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
