# The two set-up commands of the README: `make demo` and `make test`. Both create .venv when missing.
PY := .venv/bin/python
PYTEST_ARGS ?=
# Test processes (pytest-xdist, whole files per process: a file's module fixtures are built once): one per core
# up to 4, none (in-process) on one core. Most of the suite is single-threaded Python (imports, tokenizers,
# subprocesses), so two processes on two cores take ~0.6x the time of one; chatforge's thread policy gives each
# process's torch the cores the other leaves free. TEST_JOBS=0 runs in one process.
TEST_JOBS ?= $(shell python3 -c "import os; n = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1; print(min(n, 4) if n > 1 else 0)" 2>/dev/null || echo 0)
PYTEST_PARALLEL = -n $(TEST_JOBS) --dist loadfile

.PHONY: setup browser demo demo-zh test test-fast bench clean help

setup:
	@bash scripts/setup_venv.sh

demo: setup
	@$(PY) -m chatforge demo

# The Chinese demo: the Gemma 3 270M base model learns a Chinese support knowledge base.
demo-zh: setup
	@$(PY) -m chatforge demo --lang zh

test: setup browser
	@$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# Debian's chromium for the web page's browser test (skipped, with a reason, where it cannot be installed).
browser:
	@bash scripts/install_chromium.sh || echo "warning: chromium could not be installed; the browser test will skip"

test-fast: setup
	@$(PY) -m pytest $(PYTEST_PARALLEL) -m "not integration and not e2e and not slow" $(PYTEST_ARGS)

help:
	@echo "make demo   - the whole product on the embedded default model (~10 min on 2 CPU cores)"
	@echo "make demo-zh - the Chinese demo: Gemma 3 270M base learns a Chinese support KB (~15 min on 2 cores)"
	@echo "make test   - the test suite (unit + integration)"

clean:
	rm -rf runs .pytest_cache
