# The two set-up commands of the README: `make demo` and `make test`. Both create .venv when missing.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup browser demo demo-zh test test-fast bench clean help

setup:
	@bash scripts/setup_venv.sh

demo: setup
	@$(PY) -m chatforge demo

# The Chinese demo: the Gemma 3 270M base model learns a Chinese support knowledge base.
demo-zh: setup
	@$(PY) -m chatforge demo --lang zh

test: setup browser
	@$(PY) -m pytest $(PYTEST_ARGS)

# Debian's chromium for the web page's browser test (skipped, with a reason, where it cannot be installed).
browser:
	@bash scripts/install_chromium.sh || echo "warning: chromium could not be installed; the browser test will skip"

test-fast: setup
	@$(PY) -m pytest -m "not integration and not e2e and not slow" $(PYTEST_ARGS)

help:
	@echo "make demo   - the whole product on the embedded default model (~10 min on 2 CPU cores)"
	@echo "make demo-zh - the Chinese demo: Gemma 3 270M base learns a Chinese support KB (~15 min on 2 cores)"
	@echo "make test   - the test suite (unit + integration)"

clean:
	rm -rf runs .pytest_cache
