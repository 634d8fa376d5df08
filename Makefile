# The README's commands. `make install` is idempotent (pip's wheel cache).
# The older stack (torch 2.1.2, numpy 1) lives in .venv-torch21:
# `make install-torch21 test-torch21`.
PY ?= .venv/bin/python
PY21 := .venv-torch21/bin/python
# pytest-xdist processes for `make test`; each builds the session fixtures
# (the shared training is ~10 s of CPU) on its own
TEST_WORKERS ?= 2

.PHONY: install test test-fast quickstart install-torch21 test-torch21
install:
	bash tools/install.sh

install-torch21:
	VENV=.venv-torch21 TORCH_SPEC=torch==2.1.2 NUMPY_SPEC='numpy<2' \
		bash tools/install.sh

# the ECA layer and backbone, converters, safe loading, configs and one
# end-to-end train/test/resume on the older stack
test-torch21:
	$(PY21) -m pytest -q -m "not slow or torch21" tests

test:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) tests

# after every change: the ECA layer and backbone, converters, safe loading,
# configs, COCO checks (tests not marked slow; markers in tests/conftest.py)
test-fast:
	$(PY) -m pytest -q -m "not slow" tests

quickstart:
	bash tools/quickstart.sh
