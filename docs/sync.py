"""Keep docs/ true to the code: regenerate the blocks that come from source.

A chapter in docs/ may hold generated blocks between two HTML comments::

    <!-- sync: diagram selectserver.connection:TRANSITIONS -->
    ...generated, never edited by hand...
    <!-- /sync -->

Three kinds of directive exist:

* ``diagram MODULE:NAME`` draws the state table ``NAME`` of ``MODULE`` as a
  Mermaid state diagram.  A table is ``{state: {next_state, ...}}``,
  ``{state: {event: next_state}}`` or ``{(state, event): next_state}``;
  enum members are shown by name.
* ``quote PATH#REGION`` copies the lines of ``PATH`` (relative to the repo)
  between ``# region: REGION`` and ``# endregion: REGION``, dedented.
* ``api MODULE:CLASS`` lists the public methods and properties ``CLASS``
  defines itself, in source order, each with the first line of its
  docstring; ``api MODULE`` lists the module's public functions.

``python docs/sync.py`` rewrites every block; ``python docs/sync.py --check``
changes nothing and exits 1 naming each block that no longer matches its
source.  ``tests/unit/test_docs_sync.py`` runs the check, so a chapter cannot
drift from the code it describes.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

BLOCK = re.compile(r"(<!-- sync: (?P<directive>[^>]*?) -->\n)(?P<body>.*?)(<!-- /sync -->)", re.S)


class SyncError(Exception):
    """A directive that cannot be rendered (unknown table, missing region)."""


def _name(state: Any) -> str:
    if isinstance(state, enum.Enum):
        return state.name
    if state is None:
        return "[*]"
    return str(state)


def _edges(table: Any) -> Iterator[Tuple[str, str, str]]:
    """(source, target, label) for each allowed move of a state table."""
    if not isinstance(table, dict):
        raise SyncError(f"not a state table: {type(table).__name__}")
    for key, value in table.items():
        if isinstance(key, tuple):
            state, event = key
            yield _name(state), _name(value), _name(event)
        elif isinstance(value, dict):
            for event, target in value.items():
                yield _name(key), _name(target), _name(event)
        else:
            for target in sorted(value, key=_name):
                yield _name(key), _name(target), ""


def render_diagram(spec: str) -> str:
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    try:
        table = getattr(module, attribute)
    except AttributeError:
        raise SyncError(f"{module_name} has no {attribute}") from None
    lines = ["```mermaid", "stateDiagram-v2"]
    for source, target, label in _edges(table):
        lines.append(f"    {source} --> {target}" + (f": {label}" if label else ""))
    lines.append("```")
    return "\n".join(lines) + "\n"


def render_quote(spec: str) -> str:
    path, _, region = spec.partition("#")
    source = (ROOT / path).read_text().splitlines()
    start = f"# region: {region}"
    end = f"# endregion: {region}"
    starts = [i for i, line in enumerate(source) if line.strip() == start]
    ends = [i for i, line in enumerate(source) if line.strip() == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise SyncError(f"{path}: region {region!r} must be marked exactly once")
    body = textwrap.dedent("\n".join(source[starts[0] + 1:ends[0]]))
    language = "python" if path.endswith(".py") else ""
    return f"```{language}\n# {path}\n{body}\n```\n"


def _signature(function: Any) -> str:
    """``(sock, conn, events)``: the parameters a caller passes, no annotations."""
    signature = inspect.signature(function)
    parameters = [p.replace(annotation=inspect.Parameter.empty)
                  for p in signature.parameters.values() if p.name != "self"]
    return str(signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty))


def _summary(thing: Any) -> str:
    """The first line of a docstring, in Markdown, ready for a table cell."""
    doc = inspect.getdoc(thing)
    if not doc:
        raise SyncError(f"{getattr(thing, '__qualname__', thing)} has no docstring to list")
    return doc.split("\n\n")[0].replace("\n", " ").replace("``", "`").replace("|", "\\|")


def render_api(spec: str) -> str:
    module_name, _, class_name = spec.partition(":")
    module = importlib.import_module(module_name)
    if class_name:
        owner = getattr(module, class_name, None)
        if not inspect.isclass(owner):
            raise SyncError(f"{module_name} has no class {class_name}")
        members = [(name, value) for name, value in vars(owner).items()
                   if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property))]
        heading = "method"
    else:
        members = [(name, value) for name, value in vars(module).items()
                   if not name.startswith("_") and inspect.isfunction(value)
                   and value.__module__ == module_name]
        members.sort(key=lambda item: item[1].__code__.co_firstlineno)
        heading = "function"
    if not members:
        raise SyncError(f"{spec} has nothing public to list")
    lines = [f"| {heading} | what it does |", "|---|---|"]
    for name, value in members:
        if isinstance(value, property):
            lines.append(f"| `{name}` (property) | {_summary(value.fget)} |")
        else:
            lines.append(f"| `{name}{_signature(value)}` | {_summary(value)} |")
    return "\n".join(lines) + "\n"


RENDERERS = {"diagram": render_diagram, "quote": render_quote, "api": render_api}


def render(directive: str) -> str:
    kind, _, spec = directive.strip().partition(" ")
    if kind not in RENDERERS:
        raise SyncError(f"unknown directive {directive!r}")
    return RENDERERS[kind](spec.strip())


def sync_text(text: str) -> Tuple[str, List[str]]:
    """The text with every block regenerated, and the directives that changed."""
    changed: List[str] = []

    def replace(match: "re.Match[str]") -> str:
        body = render(match.group("directive"))
        if body != match.group("body"):
            changed.append(match.group("directive"))
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, text), changed


def sync(check: bool) -> Dict[Path, List[str]]:
    """Regenerate (or only compare, with ``check``) every chapter's blocks."""
    stale: Dict[Path, List[str]] = {}
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        new_text, changed = sync_text(text)
        if changed:
            stale[page] = changed
            if not check:
                page.write_text(new_text)
    return stale


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    stale = sync(args.check)
    for page, directives in stale.items():
        verb = "stale" if args.check else "updated"
        for directive in directives:
            print(f"{page.relative_to(ROOT)}: {verb}: {directive}")
    if args.check and stale:
        print("run: python docs/sync.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
