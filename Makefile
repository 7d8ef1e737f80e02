# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test check lint demo models clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

# The edit loop: lint, types and the tests not marked slow (torchrun, subprocesses, compile, parallel experiments).
# The tests not marked slow, one pytest worker per core with one thread each (more threads than cores spin).
check: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow" -n auto

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

models: setup
	$(VENV)/bin/resnet models

# The demo: ResNet-20 on Fashion-MNIST with the `fast` recipe, two epochs without augmentation (docs/training.md).
# The data is found beside the checkout (../shared/datasets), in $$RESNET_DATA, or where Debian's
# dataset-fashion-mnist puts it; DEMO_ARGS adds options (e.g. DEMO_ARGS="--data-dir DIR").
DEMO_ARGS ?=

demo: setup
	$(VENV)/bin/resnet train --model resnet20 --dataset fashion-mnist --recipe fast --set data.augment=none $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
