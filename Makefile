# Set-up contract: `make demo` and `make test` each create .venv if missing, install, then run.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.sapo_vl-installed
PYTEST  ?= $(PY) -m pytest

.PHONY: demo test test-all install clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sapo-vl demo

test: $(STAMP)
	$(PYTEST) -q

test-all: $(STAMP)
	$(PYTEST) -q -m 'not gpu'

clean:
	rm -rf $(VENV) runs .pytest_cache
