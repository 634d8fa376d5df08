# The README's commands. `make install` is idempotent (pip's wheel cache).
PY ?= .venv/bin/python

.PHONY: install test test-fast quickstart
install:
	bash tools/install.sh

test:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q tests

# after every change: the ECA layer and backbone, converters, safe loading,
# configs, COCO checks (tests not marked slow; markers in tests/conftest.py)
test-fast:
	$(PY) -m pytest -q -m "not slow" tests

quickstart:
	bash tools/quickstart.sh
