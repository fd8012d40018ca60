# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# Both create or reuse the virtual environment at .venv; a re-run with everything
# installed skips the install (the stamp is newer than the packaging files).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.anchorage-installed
WORK_DIR ?= work_dirs/demo
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $(STAMP)

# Train TinySSD on the built-in shapes set and report COCO mAP on its validation split.
# Each run starts over: --overwrite replaces the previous demo run in $(WORK_DIR).
demo: $(STAMP)
	$(PY) tools/train.py specs/tiny_ssd_shapes.yaml --work-dir $(WORK_DIR) --overwrite

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Lint, then the whole suite (slow end-to-end tests included), on PYTEST_WORKERS processes
# (pytest-xdist; 0 runs everything in this process).
test: lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) work_dirs .pytest_cache .ruff_cache
