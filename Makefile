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
CORE_PLATFORM := rss gotpatch shrinkwatch
CORE_SRC := $(filter-out $(foreach p,$(CORE_PLATFORM),src/pymemtrace/_c/core/$(p)_%.c),$(wildcard src/pymemtrace/_c/core/*.c)) \
	$(foreach p,$(CORE_PLATFORM),src/pymemtrace/_c/core/$(p)_linux.c)
PYTEST_ARGS ?=
# Said before every system-wide install (as root, Debian's apt-get), so that
# nothing is installed outside the venvs without a word: $(call apt_notice,PKGS)
apt_notice = echo "== $@: installing system-wide with apt-get (as root): $(1)"
CHROMIUM ?= chromium

.PHONY: help demo test test-c test-py build-all test-leaks test-asan test-asan-first test-asan-rest test-dbg dbg-deps clang-format-deps chromium-deps bench lint lint-c fmt clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14
	@printf '%s\t%s\n' test-py-V "pytest on one CPython, e.g. make test-py-3.11.7 (venv .venv/V)" \
		build-V "build the extension in place for one CPython" | expand -t 14
	@echo "found: $(PY_VERSIONS); default $(DEFAULT_VERSION)"

# python_for VERSION -> interpreter path ("system" is the python3 on PATH)
python_for = $(if $(filter system,$(1)),$(shell command -v python3),$(PYENV_ROOT)/versions/$(1)/bin/python)

# One venv per CPython: the test dependencies and an editable install (the
# extension built in place).  The sanitizer runs use the same venvs.
$(VENV_ROOT)/%/.stamp: pyproject.toml setup.py
	@echo "== creating $(VENV_ROOT)/$* (CPython $*)"
	rm -rf $(VENV_ROOT)/$*
	$(call python_for,$*) -m venv $(VENV_ROOT)/$*
	$(VENV_ROOT)/$*/bin/python -m pip install -q --disable-pip-version-check 'setuptools>=77'
	@out=$$(PYMEMTRACE_WERROR=1 $(VENV_ROOT)/$*/bin/python -m pip install --disable-pip-version-check --no-build-isolation -e '.[test]' 2>&1) || { echo "$$out"; exit 1; }
	touch $@

# The stamps are real files: keep them, make would delete them as intermediates.
.PRECIOUS: $(VENV_ROOT)/%/.stamp

# setuptools is chatty: print its output only when the build fails.
quietly = out=$$($(1) 2>&1) || { echo "$$out"; exit 1; }

build-%: $(VENV_ROOT)/%/.stamp
	@$(call quietly,PYMEMTRACE_WERROR=1 $(VENV_ROOT)/$*/bin/python setup.py build_ext --inplace)

# build_into DIR,PYTHON,NAME: the package built by setuptools into DIR for
# PYTHONPATH=DIR (the in-place build is untouched; the .so file names carry
# the ABI tag, so every CPython shares DIR; objects go to build/temp/NAME).
# PYTHON may start with variables (PYMEMTRACE_SANITIZE=1 ...).  The Python
# files are copied afresh: a module removed from src/ must not linger.
build_into = find $(1) -name '*.py' -delete 2>/dev/null; \
	$(call quietly,$(2) setup.py build_py --build-lib $(1) build_ext --build-lib $(1) --build-temp build/temp/$(3))

test-py-%: build-% chromium-deps
	@echo "== pytest on CPython $*"
	$(VENV_ROOT)/$*/bin/python -m pytest -p no:cacheprovider -q $(PYTEST_ARGS) tests

test-py: $(addprefix test-py-,$(PY_VERSIONS))

# Every venv and in-place build, one CPython after the other: the builds
# share src/pymemtrace/libpymemtrace_preload.so (and pip's editable installs
# build in place), so they must not run side by side; the test runs can.
build-all:
	@for v in $(PY_VERSIONS); do $(MAKE) --no-print-directory build-$$v || exit 1; done

build/test_core: tests/c/test_core.c $(CORE_SRC) $(wildcard src/pymemtrace/_c/core/*.h)
	@mkdir -p build
	$(CC) $(CFLAGS_C) -o $@ tests/c/test_core.c $(CORE_SRC) -ldl

test-c: build/test_core  ## C unit tests of the pure-C core
	./build/test_core

# pytest on TEST_JOBS CPythons at a time (each run's output shown whole when
# it ends); -k: every CPython runs even when one fails.
TEST_JOBS ?= 2
test: test-c  ## every test: C core, then pytest on each CPython >= 3.9 (TEST_JOBS=2 at a time)
	@$(MAKE) --no-print-directory build-all
	@$(MAKE) --no-print-directory -k -j$(TEST_JOBS) --output-sync=target test-py
	@echo "== all tests passed on: $(PY_VERSIONS)"

demo: build-$(DEFAULT_VERSION)  ## watch the bundled leaking example grow
	$(VENV_ROOT)/$(DEFAULT_VERSION)/bin/python examples/demo.py

bench: build-$(DEFAULT_VERSION)  ## overhead of each tool as a ratio to the bare workload
	$(VENV_ROOT)/$(DEFAULT_VERSION)/bin/python -m benchmarks

LEAK_LOOPS ?= 20
test-leaks: build-$(DEFAULT_VERSION)  ## tests marked 'leaks', rerun LEAK_LOOPS=20 times under tracemalloc
	$(VENV_ROOT)/$(DEFAULT_VERSION)/bin/python -m pytest -p no:cacheprovider -q -m leaks --leak-loops $(LEAK_LOOPS) $(PYTEST_ARGS) tests

# --------------------------------------------------- headless browser (HTML)
# tests/integration/test_html_report.py loads the HTML reports in Debian's
# chromium (--headless=new --dump-dom).  Installed when missing (as root);
# apt-get update only when the install fails.
chromium-deps:
	@command -v $(CHROMIUM) >/dev/null || { [ "$$(id -u)" = 0 ] && { $(call apt_notice,chromium); \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }; }; } || \
		echo "chromium missing (the browser tests will be skipped): apt-get install chromium"

# ---------------------------------------------------------------- sanitizers
# The extension is built with ASan + UBSan into build/asan/ (build_into) and
# the suite runs from the venv of `make test` with PYTHONPATH=build/asan in
# front of its editable install.  PYTHONMALLOC=malloc lets ASan see every
# Python allocation.
#
# `make test-asan` runs the whole suite (minus 'slow') on ASAN_VERSION (the
# default CPython), then tests/unit and the fault suite (FAULT_TESTS) on the
# newest CPython (ASAN_NEWEST: immortal objects, sys.monitoring and
# PyRefTracer, the paths the default CPython does not take); each run is
# followed by tests/leakcheck.py under LeakSanitizer.  The two are
# test-asan-first and test-asan-rest (CI runs them on separate cores); each
# CPython has its own build/asan/V, so they can run side by side.
# `make test-asan-V` runs one CPython alone.
ASAN_VERSION ?= $(DEFAULT_VERSION)
ASAN_NEWEST ?= $(lastword $(filter-out $(ASAN_VERSION) system,$(PY_VERSIONS)))
ASAN_EXTRA_VERSIONS ?= $(ASAN_NEWEST)
# tests/faults once it exists; until then the one file it grows from.
FAULT_TESTS ?= $(or $(wildcard tests/faults),tests/integration/test_faults.py)
# LeakSanitizer: the pytest run has it off (tests start other programs,
# gcc and shells among them, that inherit LD_PRELOAD and leak by design);
# then tests/leakcheck.py exercises every _native name in one Python process
# with it on, so a C buffer we never free fails at exit.  Leaks that are not
# ours go in tests/lsan.supp.  fast_unwind_on_malloc=0 records whole
# allocation stacks (CPython is built without frame pointers, so the fast
# unwinder stops inside libpython): the suppressions match the CPython
# function that allocated, not just PyUnicode_New, and a leak of ours still
# shows our frames.
ASAN_BASE = PYTHONPATH=$(CURDIR)/build/asan/$* PYTHONMALLOC=malloc \
	LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ASAN_ENV = $(ASAN_BASE) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_init_order=1
LSAN_ENV = $(ASAN_BASE) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_init_order=1:fast_unwind_on_malloc=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0
# What pytest runs under ASan on one CPython.
asan_tests = $(if $(filter $(ASAN_VERSION),$(1)),tests,tests/unit $(FAULT_TESTS))

test-asan-%: $(VENV_ROOT)/%/.stamp
	@echo "== building build/asan/$* (PYMEMTRACE_SANITIZE=1)"
	@$(call build_into,build/asan/$*,PYMEMTRACE_SANITIZE=1 PYMEMTRACE_WERROR=1 $(VENV_ROOT)/$*/bin/python,asan-$*)
	@$(ASAN_ENV) $(VENV_ROOT)/$*/bin/python -c 'import pymemtrace._native as n, sys; \
		sys.exit(0 if "/build/asan/" in n.__file__ else "wrong extension: " + n.__file__)'
	@echo "== pytest $(strip $(call asan_tests,$*)) on CPython $* under ASan + UBSan"
	$(ASAN_ENV) $(VENV_ROOT)/$*/bin/python -m pytest -p no:cacheprovider -q -m "not slow" $(PYTEST_ARGS) $(call asan_tests,$*)
	@echo "== tests/leakcheck.py on CPython $* under ASan with LeakSanitizer"
	$(LSAN_ENV) $(VENV_ROOT)/$*/bin/python tests/leakcheck.py

test-asan-first: test-asan-$(ASAN_VERSION)

test-asan-rest: $(addprefix test-asan-,$(ASAN_EXTRA_VERSIONS))
	@$(if $(strip $(ASAN_EXTRA_VERSIONS)),true,echo "== test-asan-rest: nothing to run (one CPython)")

test-asan: test-asan-first test-asan-rest  ## pytest + leak cases under ASan+UBSan+LSan (whole suite on the default CPython, tests/unit and tests/faults on the newest)
	@echo "== test-asan passed on: $(ASAN_VERSION) $(ASAN_EXTRA_VERSIONS)"

# ------------------------------------------------------ debug CPython (refs)
# Debian's debug interpreter counts every reference (sys.gettotalrefcount):
# the suite and tests/leakcheck.py run on an extension built for it in
# build/dbg/, from a venv over Debian's pytest and psutil that adds the
# setuptools the build needs (Debian's is too old for pyproject.toml) and
# the packaging it needs (Debian's would be found first).  The packages are
# installed when missing (as root).
DBG_PYTHON_NAME := python3.11d
DBG_PACKAGES := python3.11-dbg python3.11-dev python3.11-venv python3-pytest python3-psutil
DBG_PYTHON = $(shell command -v $(DBG_PYTHON_NAME) || command -v python3.11-dbg)
DBG_VENV := $(VENV_ROOT)/dbg
DBG_ENV = PYTHONPATH=$(CURDIR)/build/dbg

# Installs only what is missing; apt-get update only when the install fails.
dbg-deps:
	@installed=$$(dpkg-query -W -f='$${Status}\n' $(DBG_PACKAGES) 2>/dev/null | grep -c 'ok installed'); \
	[ "$$installed" = "$(words $(DBG_PACKAGES))" ] && exit 0; \
	if [ "$$(id -u)" != 0 ]; then echo "make test-dbg: run as root, or: sudo apt-get install -y $(DBG_PACKAGES)"; exit 1; fi; \
	$(call apt_notice,$(DBG_PACKAGES)); \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -qq $(DBG_PACKAGES) >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null && apt-get install -y -qq $(DBG_PACKAGES) >/dev/null; }

$(DBG_VENV)/.stamp: pyproject.toml | dbg-deps
	@echo "== creating $(DBG_VENV) ($(DBG_PYTHON_NAME) with Debian's pytest and psutil)"
	rm -rf $(DBG_VENV)
	$(DBG_PYTHON) -m venv --system-site-packages $(DBG_VENV)
	$(DBG_VENV)/bin/python -m pip install -q --disable-pip-version-check 'setuptools>=77' 'packaging>=24.2'
	touch $@

test-dbg: $(DBG_VENV)/.stamp  ## refcount leak check on Debian's debug CPython (build/dbg)
	@echo "== building build/dbg for $(DBG_PYTHON_NAME) (PYMEMTRACE_DEBUG=1)"
	@$(call build_into,build/dbg,PYMEMTRACE_DEBUG=1 PYMEMTRACE_WERROR=1 $(DBG_VENV)/bin/python,dbg)
	@$(DBG_ENV) $(DBG_VENV)/bin/python -c 'import pymemtrace._native as n, sys; \
		sys.exit(0 if "/build/dbg/" in n.__file__ and hasattr(sys, "gettotalrefcount") else "wrong build: " + n.__file__)'
	@echo "== pytest on $(DBG_PYTHON_NAME)"
	$(DBG_ENV) $(DBG_VENV)/bin/python -m pytest -p no:cacheprovider -q -m "not slow" $(PYTEST_ARGS) tests
	@echo "== tests/leakcheck.py on $(DBG_PYTHON_NAME)"
	$(DBG_ENV) $(DBG_VENV)/bin/python tests/leakcheck.py

# ------------------------------------------------------------------- style
RUFF_VERSION := 0.17.6
RUFF_VENV := $(VENV_ROOT)/tools
CLANG_FORMAT ?= clang-format
C_FILES = $(shell find src/pymemtrace/_c tests/c tests/fixtures -name '*.[ch]' | sort)

$(RUFF_VENV)/.stamp-$(RUFF_VERSION):
	rm -rf $(RUFF_VENV)
	$(call python_for,$(DEFAULT_VERSION)) -m venv $(RUFF_VENV)
	$(RUFF_VENV)/bin/python -m pip install -q --disable-pip-version-check "ruff==$(RUFF_VERSION)"
	touch $@

clang-format-deps:
	@command -v $(CLANG_FORMAT) >/dev/null || { [ "$$(id -u)" = 0 ] && { $(call apt_notice,clang-format); \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-format >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-format >/dev/null; }; }; }; } || \
		{ echo "clang-format missing: apt-get install clang-format"; exit 1; }

lint-c:  ## the C source lint alone (house rules; fast, no venv needed)
	python3 tests/unit/test_csource_lint.py

lint: $(RUFF_VENV)/.stamp-$(RUFF_VERSION) clang-format-deps  ## ruff, clang-format --dry-run, and the C source lint
	@echo "== ruff"
	$(RUFF_VENV)/bin/ruff check src tests benchmarks
	@echo "== clang-format"
	$(CLANG_FORMAT) --dry-run --Werror $(C_FILES)
	@echo "== C source lint"
	$(RUFF_VENV)/bin/python tests/unit/test_csource_lint.py
	@echo "lint: 3 passed (ruff, clang-format, C source lint)"

fmt: $(RUFF_VENV)/.stamp-$(RUFF_VERSION) clang-format-deps  ## rewrite C with clang-format and fix what ruff can
	$(CLANG_FORMAT) -i $(C_FILES)
	$(RUFF_VENV)/bin/ruff check --fix-only -q src tests benchmarks || true

clean:  ## remove builds and virtual environments
	rm -rf build $(VENV_ROOT) src/pymemtrace/*.so src/*.egg-info
