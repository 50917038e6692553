# selectserver: the commands a developer and CI run.
#
#   make run           serve the demo app (standard library only, no venv needed)
#   make test          install what the tests need, run the whole suite on python3
#   make test-matrix   the suite on pyenv's CPython 3.9.x and 3.13.x and Debian's pypy3
#   make mutations     break the server on purpose, one way at a time: each must fail a test
#   make tutorial      run the tutorial's step servers and show what each does (docs/tutorial/)
#   make bench-setup   install the benchmark peers (see benchmarks/)
#   make bench         a quick comparison run; make bench-full for the full one
#   make zipapp        build dist/selectserver.pyz: the server in one file, for any Python 3.9+
#   make reload-bar    SIGHUP, --max-requests and SIGTERM under ab/wrk load: the failures (all 0)
#   make clean         remove virtualenvs and build leftovers
#
# Each interpreter gets its own virtualenv (.venv, .venv-3.9, .venv-3.13,
# .venv-pypy3) with the package installed editable and its `test` extra.  A
# stamp file in each, .venv*/.installed, records the interpreter and a hash of
# pyproject.toml: the venv is rebuilt when the interpreter changed and pip runs
# again only when pyproject.toml changed, so a second `make test` goes straight
# to pytest.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
PYTEST_ARGS ?= -q
# The oldest and newest CPython series we support, taken from pyenv.
MATRIX_CPYTHONS := 3.9 3.13
# Arguments for `make run`, e.g. make run ARGS='--port 8080'.
ARGS ?=
# Where `make zipapp` writes the one-file server.
ZIPAPP ?= dist/selectserver.pyz

# Programs the tests drive, as program:debian-package.  Add new ones here.
TEST_PROGRAMS := curl:curl ab:apache2-utils wrk:wrk openssl:openssl nginx:nginx-light chromium:chromium

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export DEBIAN_FRONTEND := noninteractive

# Shell functions shared by the recipes below (each recipe is one bash script).
define SHELL_LIBRARY
say() { printf 'make: %s\n' "$$*" >&2; }
die() { say "error: $$*"; exit 1; }

as_root() {
	if [ "$$(id -u)" = 0 ]; then "$$@"
	elif command -v sudo >/dev/null; then sudo "$$@"
	else die "need root or sudo to run: $$*"; fi
}

# apt_install PACKAGE...: Debian packages, with one apt-get update first.
apt_install() {
	command -v apt-get >/dev/null || die "no apt-get here; install by hand: $$*"
	say "installing $$*"
	if [ -z "$${apt_updated:-}" ]; then as_root apt-get update -qq; apt_updated=1; fi
	as_root apt-get install -y -qq --no-install-recommends "$$@" >/dev/null
}

# has_program NAME: on PATH or in an sbin directory (nginx lives in /usr/sbin).
has_program() {
	command -v "$$1" >/dev/null || [ -x "/usr/sbin/$$1" ] || [ -x "/sbin/$$1" ]
}

# pyenv_python SERIES: the newest CPython SERIES.x (e.g. 3.9 -> 3.9.18) that pyenv has.
pyenv_python() {
	local root version
	if command -v pyenv >/dev/null; then root=$$(pyenv root); else root=$${PYENV_ROOT:-$$HOME/.pyenv}; fi
	[ -d "$$root/versions" ] \
		|| die "pyenv not found (no 'pyenv' on PATH, no $$root/versions): test-matrix needs CPython $$1.x from pyenv"
	version=$$(ls "$$root/versions" | grep -E "^$${1//./\\.}\.[0-9]+$$" | sort -V | tail -n 1 || true)
	[ -n "$$version" ] || die "pyenv has no CPython $$1.x in $$root/versions: run 'pyenv install $$1'"
	[ -x "$$root/versions/$$version/bin/python3" ] || die "$$root/versions/$$version/bin/python3 is not executable"
	echo "$$root/versions/$$version/bin/python3"
}

# make_venv DIR PYTHON VENV_DEB: DIR is PYTHON's venv with `.[test]` installed.
# VENV_DEB is the Debian package that gives PYTHON its venv module, if it lacks one.
make_venv() {
	local dir=$$1 python=$$2 venv_deb=$$3 interpreter requirements
	interpreter=$$("$$python" -c 'import sys; print(sys.implementation.name, sys.version.split()[0], sys.executable)')
	requirements=$$(sha256sum pyproject.toml | cut -d' ' -f1)
	if [ ! -x "$$dir/bin/python" ] || [ "$$(sed -n 1p "$$dir/.installed" 2>/dev/null)" != "$$interpreter" ]; then
		say "creating $$dir for $$interpreter"
		rm -rf "$$dir"
		if ! "$$python" -m venv "$$dir" >/dev/null 2>&1; then
			rm -rf "$$dir"
			apt_install "$$venv_deb"
			"$$python" -m venv "$$dir"
		fi
		"$$dir/bin/python" -m pip install -q --upgrade pip
	elif [ "$$(sed -n 2p "$$dir/.installed")" = "$$requirements" ]; then
		return 0
	fi
	say "installing .[test] into $$dir"
	"$$dir/bin/python" -m pip install -q -e '.[test]'
	printf '%s\n%s\n' "$$interpreter" "$$requirements" > "$$dir/.installed"
}

# run_suite DIR: the whole test suite in DIR's interpreter.
run_suite() {
	say "pytest on $$("$$1/bin/python" -c 'import platform; print(platform.python_implementation(), platform.python_version())') ($$1)"
	"$$1/bin/python" -m pytest $(PYTEST_ARGS) tests
}
endef

.PHONY: help run test test-matrix mutations system-deps tutorial bench-setup bench bench-full zipapp reload-bar clean

help:
	@sed -n '3,12s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

run:
	$(PYTHON) -m selectserver selectserver.demo:app $(ARGS)

# Standard library only, like `make run`: each step is started on port 0 and
# talked to with raw sockets (docs/tutorial/tour.py; tests/tutorial checks the same).
tutorial:
	$(PYTHON) docs/tutorial/tour.py

system-deps:
	@$(SHELL_LIBRARY)
	missing=()
	for pair in $(TEST_PROGRAMS); do
		has_program "$${pair%%:*}" || missing+=("$${pair#*:}")
	done
	if [ $${#missing[@]} -gt 0 ]; then apt_install "$${missing[@]}"; fi

test: system-deps
	@$(SHELL_LIBRARY)
	make_venv .venv "$(PYTHON)" python3-venv
	run_suite .venv

# Not part of `make test`: each mutation runs its tests on a scratch copy
# (tests/mutations/run.py says how); exits non-zero if one survived.
mutations: system-deps
	@$(SHELL_LIBRARY)
	make_venv .venv "$(PYTHON)" python3-venv
	.venv/bin/python tests/mutations/run.py

# Finds every interpreter first, so a missing one fails before anything runs;
# then runs all suites and fails at the end if any failed.
test-matrix: system-deps
	@$(SHELL_LIBRARY)
	pythons=()
	for series in $(MATRIX_CPYTHONS); do
		python=$$(pyenv_python "$$series")
		pythons+=("$$python")
	done
	has_program pypy3 || apt_install pypy3 pypy3-venv
	venvs=()
	for python in "$${pythons[@]}"; do
		series=$$("$$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
		make_venv ".venv-$$series" "$$python" "python$$series-venv"
		venvs+=(".venv-$$series")
	done
	make_venv .venv-pypy3 pypy3 pypy3-venv
	venvs+=(.venv-pypy3)
	failed=()
	for venv in "$${venvs[@]}"; do run_suite "$$venv" || failed+=("$$venv"); done
	if [ $${#failed[@]} -gt 0 ]; then die "the suite failed in: $${failed[*]}"; fi
	say "the suite passed in: $${venvs[*]}"

bench-setup:
	$(PYTHON) benchmarks/run.py --setup

bench:
	$(PYTHON) benchmarks/run.py --quick

bench-full:
	$(PYTHON) benchmarks/run.py --full

# The package and nothing else (no tests, no bytecode), zipped with the
# stdlib's zipapp module: `python3 selectserver.pyz app:app` on a machine
# that has only Python.
zipapp:
	@$(SHELL_LIBRARY)
	staging=$$(mktemp -d)
	trap 'rm -rf "$$staging"' EXIT
	"$(PYTHON)" -c 'import shutil, sys; shutil.copytree("selectserver", sys.argv[1] + "/selectserver", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))' "$$staging"
	mkdir -p "$$(dirname "$(ZIPAPP)")"
	"$(PYTHON)" -m zipapp "$$staging" --main selectserver.cli:main --python "/usr/bin/env python3" --compress --output "$(ZIPAPP)"
	say "built $(ZIPAPP) ($$(du -k "$(ZIPAPP)" | cut -f1) KiB): python3 $(ZIPAPP) module:app"

# Against --workers 2, ASGI and WSGI: ab -k -c 20 -n 200000 and wrk -t1 -c64 -d20s with a
# SIGHUP every 2 s, the same with --max-requests 1000, and SIGTERM under keep-alive clients
# and under wrk.  About 4 minutes; exits 1 if any count is not 0.  ARGS=--quick: a short run.
reload-bar: system-deps
	PYTHONPATH=$(CURDIR) $(PYTHON) benchmarks/reload_bar.py $(ARGS)

clean:
	rm -rf .venv .venv-* build dist *.egg-info .pytest_cache
	find . -name __pycache__ -type d -not -path './.git/*' -prune -exec rm -rf {} +
