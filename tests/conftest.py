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

A server's failure is the test's failure: every test fails on an ERROR
record from the ``selectserver`` or ``asyncio`` loggers (an app that raised,
a bug of ours in a loop callback) unless it declares the error expected::

    @pytest.mark.expect_errors(r"Exception in ASGI application")
    def test_a_failing_app(serve): ...

    def test_maybe(serve, server_errors):
        server_errors.expect(r"invalid response")      # regex, searched
        ...
        assert server_errors.matching(r"invalid response")

The server process fixtures feed their logs' error lines to the same check.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import sys
import threading
from types import ModuleType
from typing import Dict, Iterable, List, Optional, Tuple

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
    config.addinivalue_line(
        "markers",
        "expect_errors(*patterns): ERROR records (and server log lines) matching one of these "
        "regexes do not fail the test; any other one does",
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


# -- a server's failure is the test's failure ------------------------------------------

# Loggers whose ERROR records mean the server failed: ours, and asyncio's,
# where call_exception_handler reports a bug of ours in a loop callback.
# The children are listed too: logs.configure() turns their propagation off.
WATCHED_LOGGERS = ("selectserver", "selectserver.error", "selectserver.access",
                   "selectserver.trace", "asyncio")

# A log line of a server process, as logs.configure() formats it with or
# without the time and pid ("ERROR:     ..." or "[time] [pid] [ERROR] ...");
# what it matches is left out when the line is matched against patterns.
LOG_LINE = re.compile(r"^(?:\[[^]]*\] )*\[?(TRACE|DEBUG|INFO|WARNING|ERROR|CRITICAL)\]?:? +")
# ... and the lines among them that mean the same as an ERROR record.
ERROR_LINE = re.compile(LOG_LINE.pattern.replace("TRACE|DEBUG|INFO|WARNING|", "")
                        + "|^Traceback \\(most recent call last\\)")


def describe_record(record: logging.LogRecord) -> str:
    """The message of ``record`` with its traceback, as the check matches it."""
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text


class ServerErrors(logging.Handler):
    """The ERROR records and error log lines seen during one test, and those it expects."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        super().__init__(logging.ERROR)
        self.records: List[logging.LogRecord] = []
        self.lines: List[Tuple[str, str]] = []
        self.patterns: List["re.Pattern[str]"] = [re.compile(p) for p in patterns]
        self._ids = set()
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        # One record can reach this handler twice (a child logger and its parent).
        with self._guard:
            if id(record) not in self._ids:
                self._ids.add(id(record))
                self.records.append(record)

    def expect(self, *patterns: str) -> None:
        """Errors matching any of these regexes are part of the test, not failures."""
        self.patterns.extend(re.compile(p) for p in patterns)

    def add_log(self, source: str, log: str) -> None:
        """Take the error lines of a server process's ``log`` (its stderr).

        An error is its line without the level (``ERROR:     could not
        import ...`` is matched as ``could not import ...``) and the lines
        that follow up to the next log line, such as a traceback.
        """
        lines = log.splitlines()
        index = 0
        while index < len(lines):
            line = lines[index]
            index += 1
            if not ERROR_LINE.search(line):
                continue
            start = index
            while index < len(lines) and not LOG_LINE.match(lines[index]):
                index += 1
            text = "\n".join([LOG_LINE.sub("", line)] + lines[start:index])
            with self._guard:
                self.lines.append((source, text))

    def texts(self) -> List[str]:
        """Every error seen so far, as the patterns are matched against it."""
        with self._guard:
            return [describe_record(record) for record in self.records] + [text for _, text in self.lines]

    def matching(self, pattern: str) -> List[str]:
        """The errors seen so far that match ``pattern``."""
        return [text for text in self.texts() if re.search(pattern, text)]

    def unexpected(self) -> List[str]:
        """The errors no pattern expects, each named by where it came from."""
        with self._guard:
            seen = ([("in this process", describe_record(record)) for record in self.records]
                    + list(self.lines))
        return ["%s: %s" % (source, text) for source, text in seen
                if not any(pattern.search(text) for pattern in self.patterns)]


# The loggers a server configures for its process (logs.configure(): own
# handlers, no propagation).  A test that runs a server in-process, such as
# selectserver.run(), would otherwise leave them so for every later test,
# and caplog would see nothing.
CONFIGURED_LOGGERS = ("selectserver", "selectserver.error", "selectserver.access", "selectserver.trace")


@pytest.fixture(autouse=True)
def isolated_logging():
    """Each test starts with the selectserver loggers as the one before found them."""
    loggers = [logging.getLogger(name) for name in CONFIGURED_LOGGERS]
    saved = [(logger.level, logger.propagate, logger.disabled, list(logger.handlers)) for logger in loggers]
    yield
    for logger, (level, propagate, disabled, handlers) in zip(loggers, saved):
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled
        logger.handlers[:] = handlers


@pytest.fixture(autouse=True)
def server_errors(request):
    """Fails the test on an unexpected server error; ``.expect(regex)`` declares one."""
    patterns = [p for marker in request.node.iter_markers("expect_errors") for p in marker.args]
    errors = ServerErrors(patterns)
    loggers = [logging.getLogger(name) for name in WATCHED_LOGGERS]
    for logger in loggers:
        logger.addHandler(errors)
    try:
        yield errors
    finally:
        for logger in loggers:
            logger.removeHandler(errors)
    # Torn down after every fixture that runs a server, so what a server
    # logs while it stops is seen too.
    unexpected = errors.unexpected()
    if unexpected:
        pytest.fail("the server logged %d unexpected error(s):\n\n%s\n\n(declare an expected "
                    "one with @pytest.mark.expect_errors(regex) or server_errors.expect(regex))"
                    % (len(unexpected), "\n\n".join(unexpected)), pytrace=False)
