# The two commands of the README:
#   make demo   set up, build the releases, grade a few sample submissions per assignment, print the gradebooks
#   make demo-all   the same with every sample submission and the notebooks' full training recipes
#   make test   set up, run the project's tests
# Everything is installed into .venv from this folder's own files (a fresh machine needs only Python 3.11+).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Datasets: a local copy beside the checkout (course build machines, CI) is used when present;
# otherwise torchvision downloads them into data/.
SHARED_DATA := $(wildcard ../shared/data)
ifneq ($(SHARED_DATA),)
export DLCOURSE_DATA_MIRROR ?= $(abspath $(SHARED_DATA))
endif
export DLCOURSE_DATA ?= $(abspath data)
# uv reads its own settings, not pip's: a package index configured for pip through the environment is handed on.
ifdef PIP_INDEX_URL
export UV_INDEX_URL ?= $(PIP_INDEX_URL)
endif
ifdef PIP_EXTRA_INDEX_URL
export UV_EXTRA_INDEX_URL ?= $(PIP_EXTRA_INDEX_URL)
endif
# nbgrader shells out to alembic: the venv's bin must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup demo demo-all test release publish grade clean

setup: $(VENV)/.installed

# uv (requirements/setup.txt) downloads and installs the pinned set in parallel; pip, with the same pins, where uv
# fails. Neither compiles bytecode ahead: Python writes it at a module's first import. A run imports a few thousand of
# the venv's 19 000 files; compiling them all took 57 CPU s, a quarter of what setup costs on 2 cores.
$(VENV)/.installed: requirements/dev.txt requirements/setup.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "$(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'): the pinned requirements need 3.11 or 3.12 (run make with PYTHON=python3.11, say)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade -r requirements/setup.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/dev.txt \
	  || { echo "uv could not install requirements/dev.txt: installing with pip instead (slower)"; \
	       $(BIN)/python -m pip install --quiet --no-compile -r requirements/dev.txt; }
	rm -f $(VENV)/.lock  # uv's lock file is writable by every user: the grader refuses a venv a worker could write
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: setup
	$(BIN)/python -m autograder demo

demo-all: setup
	$(BIN)/python -m autograder demo --all-samples --full-recipes

# Two workers (pytest-xdist): CI has 2 cores. Which tests share a worker: tests/conftest.py (test_group).
TEST_WORKERS ?= 2
test: setup
	@$(BIN)/python tests/system_tools.py  # one line naming what pip cannot install (bubblewrap, Slurm), if missing
	$(BIN)/python -m pytest -q -rs --durations=25 -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

release: setup
	$(BIN)/python -m autograder release

# The student bundle (what students get, nothing else): build/bundle/
publish: setup
	$(BIN)/python -m autograder publish build/bundle

# make grade SUBMISSIONS=path/to/folder ASSIGNMENT=vit
grade: setup
	$(BIN)/python -m autograder grade $(SUBMISSIONS) --assignment $(ASSIGNMENT)

clean:
	rm -rf build gradebook.db
