# The README's commands. `make install` is idempotent (pip's wheel cache).
PY := .venv/bin/python

.PHONY: install test quickstart
install:
	bash tools/install.sh

test:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q tests

quickstart:
	bash tools/quickstart.sh
