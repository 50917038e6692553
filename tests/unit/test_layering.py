"""Imports point one way (STYLE.md §1), and only into the standard library.

The package reads like a book: a module may import only modules of a lower
layer.  LAYERS below is STYLE.md's table as data, bottom first; every module
of ``selectserver/`` must have a place in it.  Two modules have a short list
of importers instead (ONLY_IMPORTED_BY): the loop and the task stepper.

Modules are named by their path under ``selectserver/`` without ``.py``
("http11/parser"); a package's ``__init__.py`` is "http11/__init__".  The
source is read with ``ast`` and never imported, so a module that does not
exist yet is simply not checked, and a broken one is still checked.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import sysconfig
from typing import Dict, Iterator, List, NamedTuple, Optional, Set

import pytest

PACKAGE = "selectserver"
PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), PACKAGE)

# Bottom first.  A module may import only from layers below its own.
# "pkg/*" places every module of a subpackage not named elsewhere.
LAYERS = [
    # 1. the event loop, and the coroutine stepper: nothing of ours below them
    {"loop", "task"},
    # 2. protocols without I/O, and the options (no I/O either)
    {"errors", "http11/grammar"},
    {"config"},
    {"http11/events"},
    {"http11/parser", "http11/writer", "websocket/frames"},
    {"http11/__init__", "websocket/handshake", "proxy"},
    # 3. one connection
    {"connection"},
    # 4. applications; the websocket cycle builds on the http one
    {"asgi", "lifespan", "wsgi/bridge", "wsgi/input", "wsgi/files", "wsgi/environ"},
    {"wsgi/cycle"},
    {"wsgi/pool"},
    {"wsgi/__init__"},
    {"websocket", "websocket/asgi", "websocket/*"},
    # 5. processes, with the worker's helpers below it
    {"sockets", "logs", "trace"},
    {"worker"},
    {"master"},
    # 6. the edges
    {"cli"},
    {"__init__", "__main__", "demo"},
]

RANK: Dict[str, int] = {module: rank for rank, layer in enumerate(LAYERS) for module in layer}


def rank_of(name: str) -> Optional[int]:
    """The layer of a module, by its own name or its subpackage's "pkg/*"; None if it has none."""
    if name in RANK:
        return RANK[name]
    package, _, _ = name.rpartition("/")
    return RANK.get(package + "/*") if package else None


# STYLE.md §2: protocol code has no socket, loop, clock, threads or logging.
SANS_IO = {"errors", "config", "http11/*", "websocket/frames", "websocket/handshake", "proxy"}
NOT_IN_SANS_IO = {"socket", "ssl", "select", "selectors", "asyncio", "threading",
                  "concurrent", "time", "logging"}


def is_sans_io(name: str) -> bool:
    package, _, _ = name.rpartition("/")
    return name in SANS_IO or (package + "/*") in SANS_IO


# Modules that only the listed modules may import, whatever their ranks: the
# loop is handed to everything else, and only the ASGI cycles step coroutines.
ONLY_IMPORTED_BY: Dict[str, Set[str]] = {
    "task": {"asgi", "lifespan", "websocket", "websocket/asgi", "trace"},
    "loop": {"worker", "trace", "cli"},
}

# Names that any module may import from the package's top: `__init__` is always
# loaded before any of its submodules, so this adds no dependency.
FREE_FROM_TOP = {"__version__"}


class Import(NamedTuple):
    target: str  # a module of ours ("http11/events") or a top-level outside name ("ssl")
    ours: bool
    line: int
    names: tuple  # for `from X import a, b`: ("a", "b")


def module_files() -> Dict[str, str]:
    """Every module of the package, by its name in LAYERS, to its path."""
    found = {}
    for directory, subdirectories, files in os.walk(PACKAGE_DIR):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(directory, file)
                name = os.path.relpath(path, PACKAGE_DIR)[: -len(".py")].replace(os.sep, "/")
                found[name] = path
    return found


def imports_of(name: str, source: str, modules: Set[str]) -> Iterator[Import]:
    """The imports in ``source`` (module ``name``), resolved to our module names.

    ``modules`` holds the names that are modules of ours, existing or planned:
    it tells ``from . import wsgi`` (a module) from ``from . import run`` (a name).
    """
    parts = name.split("/")
    package_parts = parts[:-1]  # the package that holds this module (for __init__, itself)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _resolve(alias.name.split("."), (), node.lineno, modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = (node.module or "").split(".")
            else:
                if node.level - 1 > len(package_parts):
                    raise AssertionError("%s:%d: relative import beyond the package" % (name, node.lineno))
                kept = package_parts[: len(package_parts) - (node.level - 1)]
                base = [PACKAGE] + kept + (node.module.split(".") if node.module else [])
            names = tuple(alias.name for alias in node.names)
            if base[0] == PACKAGE:
                # `from . import logs, master`: each name that is a module is its own import.
                submodules = [n for n in names if "/".join(base[1:] + [n]) in modules
                              or "/".join(base[1:] + [n, "__init__"]) in modules]
                for submodule in submodules:
                    yield _resolve(base + [submodule], (), node.lineno, modules)
                rest = tuple(n for n in names if n not in submodules)
                if rest:
                    yield _resolve(base, rest, node.lineno, modules)
            else:
                yield _resolve(base, names, node.lineno, modules)


def _resolve(dotted: List[str], names: tuple, line: int, modules: Set[str]) -> Import:
    if dotted[0] != PACKAGE:
        return Import(dotted[0], False, line, names)
    path = "/".join(dotted[1:])
    if not path:
        return Import("__init__", True, line, names)
    if path not in modules and path + "/__init__" in modules:
        path += "/__init__"
    return Import(path, True, line, names)  # may be a module that does not exist


def violations(name: str, source: str, modules: Set[str]) -> List[str]:
    """Why each wrong-way import in ``source`` is wrong; empty when all are fine."""
    found = []
    for imported in imports_of(name, source, modules):
        if not imported.ours:
            continue
        where = "%s.py:%d imports %s" % (name, imported.line, imported.target)
        target = imported.target
        if target == "__init__" and imported.names and set(imported.names) <= FREE_FROM_TOP:
            continue
        if target == name:
            continue
        if target in ONLY_IMPORTED_BY and name not in ONLY_IMPORTED_BY[target]:
            found.append("%s: only %s may import %s" % (where, ", ".join(sorted(ONLY_IMPORTED_BY[target])), target))
        elif rank_of(target) is None:
            found.append("%s, which has no place in LAYERS" % where)
        elif rank_of(name) is not None and rank_of(target) >= rank_of(name):
            found.append("%s: %s is in layer %d, not below layer %d"
                         % (where, target, rank_of(target) + 1, rank_of(name) + 1))
    return found


def standard_library_names() -> Optional[frozenset]:
    return getattr(sys, "stdlib_module_names", None)  # Python 3.10+


def _stdlib_dirs() -> Set[str]:
    paths = sysconfig.get_paths()
    return {os.path.realpath(paths[key]) for key in ("stdlib", "platstdlib") if key in paths}


# Modules the standard library gained after 3.9, imported behind a version
# check (cli.py reads pyproject's table with tomllib on 3.11+).
LATER_STANDARD_LIBRARY = {"tomllib"}


def is_standard_library(top_level: str) -> bool:
    """Whether a top-level module name belongs to the standard library."""
    if top_level in LATER_STANDARD_LIBRARY:
        return True
    names = standard_library_names()
    if names is not None:
        return top_level in names
    # Python 3.9 (and PyPy 3.9): ask where the module lives.
    if top_level in sys.builtin_module_names or top_level == "__future__":
        return True
    spec = importlib.util.find_spec(top_level)
    if spec is None:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    location = spec.origin or next(iter(spec.submodule_search_locations or []), None)
    if location is None:
        return False
    location = os.path.realpath(location)
    return any(location.startswith(d + os.sep) for d in _stdlib_dirs()) and "-packages" not in location


MODULES = module_files()
KNOWN = set(MODULES) | set(RANK)


def _source(name: str) -> str:
    with open(MODULES[name], encoding="utf-8") as file:
        return file.read()


def test_the_table_names_each_module_once():
    seen: List[str] = [module for layer in LAYERS for module in layer]
    assert len(seen) == len(set(seen))
    assert set(ONLY_IMPORTED_BY) <= set(RANK)


def test_every_module_has_a_place():
    assert MODULES, "no modules found under %s" % PACKAGE_DIR
    homeless = sorted(name for name in MODULES if rank_of(name) is None)
    assert not homeless, "add these modules to LAYERS in %s (and to STYLE.md §1): %s" % (__file__, homeless)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    assert violations(name, _source(name), KNOWN) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_the_standard_library(name):
    outside = sorted({
        "%s (line %d)" % (imported.target, imported.line)
        for imported in imports_of(name, _source(name), KNOWN)
        if not imported.ours and not is_standard_library(imported.target)
    })
    assert outside == [], "%s.py imports from outside the standard library" % name


@pytest.mark.parametrize("name", sorted(name for name in MODULES if is_sans_io(name)))
def test_protocol_code_does_no_io(name):
    io = sorted({
        "%s (line %d)" % (imported.target, imported.line)
        for imported in imports_of(name, _source(name), KNOWN)
        if not imported.ours and imported.target in NOT_IN_SANS_IO
    })
    assert io == [], "%s.py is sans-IO (STYLE.md §2) but imports these" % name


# The checker itself, on made-up sources.

FAKE_MODULES = set(RANK)


@pytest.mark.parametrize("name, source, expected", [
    ("http11/parser", "from ..errors import BadRequest\nfrom .events import Data", ["errors", "http11/events"]),
    ("connection", "from .http11.parser import RequestParser", ["http11/parser"]),
    ("connection", "from .http11 import parser, writer", ["http11/parser", "http11/writer"]),
    ("worker", "from . import loop as loop_module", ["loop"]),
    ("cli", "from . import __version__, logs", ["logs", "__init__"]),
    ("master", "import selectserver.worker\nfrom selectserver import sockets", ["worker", "sockets"]),
    ("http11/__init__", "from .parser import RequestParser", ["http11/parser"]),
    ("asgi", "import asyncio\nfrom urllib.parse import unquote", ["asyncio", "urllib"]),
])
def test_imports_are_resolved(name, source, expected):
    assert [i.target for i in imports_of(name, source, FAKE_MODULES)] == expected


@pytest.mark.parametrize("name, source, complaint", [
    ("http11/parser", "from ..connection import Connection", "not below"),
    ("http11/parser", "from .writer import ResponseWriter", "not below"),
    ("connection", "from .loop import EventLoop", "only cli, trace, worker may import loop"),
    ("wsgi/cycle", "from ..task import AppTask", "only asgi, lifespan, trace, websocket, websocket/asgi may import task"),
    ("loop", "from .errors import HTTPError", "not below"),
    ("errors", "import selectserver", "not below"),
    ("worker", "from .mystery import thing", "no place in LAYERS"),
    ("websocket/frames", "from ..connection import Connection", "not below"),
    ("websocket/handshake", "from ..connection import Connection", "not below"),
    ("websocket/other", "from ..worker import Worker", "not below"),
])
def test_wrong_way_imports_are_caught(name, source, complaint):
    found = violations(name, source, FAKE_MODULES)
    assert len(found) == 1 and complaint in found[0], found


@pytest.mark.parametrize("source", [
    "from .errors import HTTPError\nfrom .http11.events import Request\nfrom .http11.writer import error_response",
    "from . import __version__",
])
def test_right_way_imports_pass(source):
    assert violations("connection", source, FAKE_MODULES) == []


def test_subpackages_take_their_layer_from_a_wildcard():
    assert rank_of("websocket/other") == RANK["websocket/*"]
    assert rank_of("websocket/handshake") < rank_of("websocket/other")
    assert rank_of("http11/nothing") is None
    assert is_sans_io("http11/anything") and is_sans_io("websocket/frames")
    assert not is_sans_io("websocket/asgi") and not is_sans_io("connection")


def test_standard_library_is_told_from_the_rest():
    assert is_standard_library("asyncio") and is_standard_library("selectors") and is_standard_library("sys")
    assert is_standard_library("__future__") and is_standard_library("urllib")
    assert not is_standard_library("pytest") and not is_standard_library("no_such_module_anywhere")
