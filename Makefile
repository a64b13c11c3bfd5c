# The two set-up commands of the README: `make demo` and `make test`. Both create .venv when missing.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast bench clean help

setup:
	@bash scripts/setup_venv.sh

demo: setup
	@$(PY) -m chatforge demo

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	@$(PY) -m pytest -m "not integration and not e2e and not slow" $(PYTEST_ARGS)

help:
	@echo "make demo   - the whole product on the embedded default model (~10 min on 2 CPU cores)"
	@echo "make test   - the test suite (unit + integration)"

clean:
	rm -rf runs .pytest_cache
