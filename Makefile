# The two commands of the README: `make demo` and `make test`. Both install into the active Python environment.
PYTHON ?= python
PIP_FLAGS ?= --disable-pip-version-check

.PHONY: demo test install install-dev data clean

install:
	$(PYTHON) -m pip install $(PIP_FLAGS) -e .

install-dev:
	$(PYTHON) -m pip install $(PIP_FLAGS) -e ".[dev]"

data:
	$(PYTHON) tools/make_shapes.py --root data/shapes

# Installs, generates the embedded shapes dataset, trains the light demo detector and prints the COCO table.
demo: install data
	$(PYTHON) tools/train.py experiment=shapes_demo

# Installs with the dev extras and runs the whole suite (the slow convergence checks included), on 2 pytest-xdist
# workers of one torch thread each (tests/conftest.py); tests sharing a costly fixture stay on one worker (loadgroup).
# PYTEST_FLAGS= runs it in one process.
PYTEST_FLAGS ?= -n 2 --dist loadgroup
test: install-dev
	$(PYTHON) -m pytest $(PYTEST_FLAGS)

clean:
	rm -rf work_dirs .pytest_cache
