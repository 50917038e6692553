"""What every test may lean on: markers and the rule for optional things.

The test extra (``pip install -e '.[test]'``, done by ``make test``) and the
system programs the Makefile installs are *required*: a test that needs one
and cannot find it fails, saying how to install it.  The one exception is a
package that has no release for the running interpreter; those are listed in
``UNSUPPORTED`` below, and only there do their tests skip.

Three ways to say what a test needs::

    @pytest.mark.requires("fastapi")            # marker; or pytestmark = ...
    def test_fastapi_app(serve): ...

    def test_flask(require):
        flask = require("flask")                # fixture: returns the module

    from tests.conftest import requires         # module level, at import
    django = requires("django")

and ``@pytest.mark.requires_program("wrk")`` / the ``program`` fixture
(``program("nginx")`` returns its path) for system programs.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from types import ModuleType
from typing import Dict, List, Optional, Tuple

import pytest

# Interpreters on which a test extra cannot be installed, by top-level module
# name, as (sys.implementation.name, "major.minor").  Each entry must match an
# environment marker on that package in pyproject.toml's `test` extra, so that
# `make test-matrix` still installs everything else.
#
# None today.  pydantic >= 2.12 has no PyPy 3.9 wheel (and its source build
# needs Rust crates we cannot fetch), so pyproject.toml pins pydantic < 2.12
# there; FastAPI then installs and is tested on every interpreter.
UNSUPPORTED: Dict[str, List[Tuple[str, str]]] = {
    # "fastapi": [("pypy", "3.9")],
}

# Where Debian keeps programs that a non-root PATH may lack (nginx).
SYSTEM_BIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")

INSTALL_HINT = "run `make test`, which installs the test extra and system programs"


def interpreter() -> Tuple[str, str]:
    """The running interpreter as UNSUPPORTED spells it, e.g. ("cpython", "3.13")."""
    return sys.implementation.name, "%d.%d" % sys.version_info[:2]


def unsupported_here(module: str) -> bool:
    """Whether ``module`` is known to have no installable release on this interpreter."""
    return interpreter() in UNSUPPORTED.get(module.partition(".")[0], ())


def requires(module: str) -> ModuleType:
    """Import ``module``; skip if UNSUPPORTED says it cannot exist here, else fail.

    Usable at a test module's top level (skips or fails the whole module) and
    inside tests and fixtures.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if unsupported_here(module):
            implementation, version = interpreter()
            pytest.skip(
                "%s has no release for %s %s" % (module, implementation, version),
                allow_module_level=True,
            )
        pytest.fail("cannot import %s (%s): %s" % (module, exc, INSTALL_HINT), pytrace=False)


def find_program(name: str) -> Optional[str]:
    """The path of a system program, looking past PATH into the sbin directories."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SYSTEM_BIN_DIRS:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def requires_program(name: str) -> str:
    """The path of a system program the tests use; fails if it is not installed."""
    path = find_program(name)
    if path is None:
        pytest.fail("program %s not found: %s" % (name, INSTALL_HINT), pytrace=False)
    return path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*modules): the test imports these test-extra modules; it skips only "
        "where tests/conftest.py:UNSUPPORTED says they cannot be installed, else fails",
    )
    config.addinivalue_line(
        "markers",
        "requires_program(*names): the test runs these system programs (make test installs them)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before fixtures run, so a server fixture never imports a missing framework.
    for marker in item.iter_markers("requires"):
        for module in marker.args:
            requires(module)
    for marker in item.iter_markers("requires_program"):
        for name in marker.args:
            requires_program(name)


@pytest.fixture
def require():
    """``require("flask")`` inside a test: the module, or a skip/fail as ``requires`` says."""
    return requires


@pytest.fixture
def program():
    """``program("nginx")`` inside a test: the program's path, or a failure."""
    return requires_program
