# pymemtrace developer commands.  `make help` lists them.
#
# `make test` runs the C unit tests, then pytest on every CPython >= 3.9 that
# `pyenv versions` lists (each in its own virtual environment under .venv/),
# building the extension in place with warnings as errors.

SHELL := /bin/bash
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
# CPython 3.9 and newer known to pyenv; the system python3 when there are none.
PY_VERSIONS ?= $(shell pyenv versions --bare 2>/dev/null | grep -E '^3\.(9|[1-9][0-9])\.[0-9]+$$' | sort -t. -k1,1n -k2,2n -k3,3n)
DEFAULT_VERSION ?= $(shell python3 -c 'import platform; print(platform.python_version())')
ifeq ($(strip $(PY_VERSIONS)),)
PY_VERSIONS := system
endif
VENV_ROOT := .venv
CC ?= gcc
CFLAGS_C := -std=gnu11 -O1 -g -Wall -Wextra -Werror -pthread -Isrc/pymemtrace/_c
CORE_SRC := $(filter-out src/pymemtrace/_c/core/rss_%.c,$(wildcard src/pymemtrace/_c/core/*.c)) src/pymemtrace/_c/core/rss_linux.c
PYTEST_ARGS ?=

.PHONY: help demo test test-c test-py test-asan test-dbg test-leaks bench lint fmt clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

# python_for VERSION -> interpreter path ("system" is the python3 on PATH)
python_for = $(if $(filter system,$(1)),$(shell command -v python3),$(PYENV_ROOT)/versions/$(1)/bin/python)

$(VENV_ROOT)/%/.stamp: pyproject.toml setup.py
	@echo "== creating $(VENV_ROOT)/$* (CPython $*)"
	rm -rf $(VENV_ROOT)/$*
	$(call python_for,$*) -m venv $(VENV_ROOT)/$*
	$(VENV_ROOT)/$*/bin/python -m pip install -q --disable-pip-version-check -U pip 'setuptools>=77' wheel
	@out=$$(PYMEMTRACE_WERROR=1 $(VENV_ROOT)/$*/bin/python -m pip install --disable-pip-version-check --no-build-isolation -e '.[test]' 2>&1) || { echo "$$out"; exit 1; }
	touch $@

# The stamps are real files: keep them, make would delete them as intermediates.
.PRECIOUS: $(VENV_ROOT)/%/.stamp

# setuptools is chatty: print its output only when the build fails.
build-%: $(VENV_ROOT)/%/.stamp
	@out=$$(PYMEMTRACE_WERROR=1 $(VENV_ROOT)/$*/bin/python setup.py build_ext --inplace 2>&1) || { echo "$$out"; exit 1; }

test-py-%: build-%
	@echo "== pytest on CPython $*"
	$(VENV_ROOT)/$*/bin/python -m pytest -p no:cacheprovider -q $(PYTEST_ARGS) tests

test-py: $(addprefix test-py-,$(PY_VERSIONS))

build/test_core: tests/c/test_core.c $(CORE_SRC) $(wildcard src/pymemtrace/_c/core/*.h)
	@mkdir -p build
	$(CC) $(CFLAGS_C) -o $@ tests/c/test_core.c $(CORE_SRC)

test-c: build/test_core  ## C unit tests of the pure-C core
	./build/test_core

test: test-c test-py  ## every test: C core, then pytest on each CPython >= 3.9
	@echo "== all tests passed on: $(PY_VERSIONS)"

demo: build-$(DEFAULT_VERSION)  ## watch the bundled leaking example grow
	$(VENV_ROOT)/$(DEFAULT_VERSION)/bin/python examples/demo.py

bench: build-$(DEFAULT_VERSION)  ## overhead of each tool as a ratio to the bare workload
	$(VENV_ROOT)/$(DEFAULT_VERSION)/bin/python -m benchmarks

clean:  ## remove builds and virtual environments
	rm -rf build $(VENV_ROOT) src/pymemtrace/*.so src/*.egg-info
