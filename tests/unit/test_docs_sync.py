"""docs/ cannot drift: every generated block matches the source it comes from.

``docs/sync.py`` draws state diagrams from their tables and quotes marked
regions of the code; this test runs its check, and tests the two renderers
on small inputs so that a broken renderer cannot pass the check by accident.
"""

from __future__ import annotations

import enum
import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_sync():
    spec = importlib.util.spec_from_file_location("docs_sync", os.path.join(ROOT, "docs", "sync.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_sync"] = module
    spec.loader.exec_module(module)
    return module


sync = load_sync()


class Light(enum.Enum):
    RED = 1
    GREEN = 2


RED, GREEN = Light.RED, Light.GREEN
NEXT_STATES = {RED: {GREEN}, GREEN: {RED}}
BY_EVENT = {(RED, "go"): GREEN, (GREEN, "stop"): RED}


def test_every_generated_block_in_docs_matches_its_source():
    stale = sync.sync(check=True)
    assert stale == {}, "run: python docs/sync.py"


def test_a_table_of_next_states_becomes_a_mermaid_diagram():
    text = sync.render(f"diagram {__name__}:NEXT_STATES")
    assert text.splitlines() == [
        "```mermaid", "stateDiagram-v2", "    RED --> GREEN", "    GREEN --> RED", "```"]


def test_a_table_of_events_labels_each_move():
    text = sync.render(f"diagram {__name__}:BY_EVENT")
    assert "    RED --> GREEN: go" in text.splitlines()
    assert "    GREEN --> RED: stop" in text.splitlines()


def test_a_changed_table_makes_its_block_stale():
    page = (f"<!-- sync: diagram {__name__}:NEXT_STATES -->\n"
            + sync.render(f"diagram {__name__}:NEXT_STATES") + "<!-- /sync -->\n")
    assert sync.sync_text(page) == (page, [])
    NEXT_STATES[GREEN] = {RED, GREEN}
    try:
        _, changed = sync.sync_text(page)
    finally:
        NEXT_STATES[GREEN] = {RED}
    assert changed == [f"diagram {__name__}:NEXT_STATES"]


def test_a_quote_copies_the_marked_region(tmp_path, monkeypatch):
    source = tmp_path / "mod.py"
    source.write_text("x = 0\n    # region: two\n    y = 1\n    z = 2\n    # endregion: two\n")
    monkeypatch.setattr(sync, "ROOT", tmp_path)
    assert sync.render("quote mod.py#two") == "```python\n# mod.py\ny = 1\nz = 2\n```\n"


def test_a_region_marked_twice_or_never_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "mod.py").write_text("# region: a\n# endregion: a\n# region: a\n# endregion: a\n")
    monkeypatch.setattr(sync, "ROOT", tmp_path)
    with pytest.raises(sync.SyncError):
        sync.render("quote mod.py#a")
    with pytest.raises(sync.SyncError):
        sync.render("quote mod.py#missing")


BY_STATE_AND_EVENT = {RED: {"go": GREEN}, GREEN: {"stop": RED}}


def test_a_table_of_states_to_events_labels_each_move():
    assert sync.render(f"diagram {__name__}:BY_STATE_AND_EVENT").splitlines()[2:4] == [
        "    RED --> GREEN: go", "    GREEN --> RED: stop"]


class Lamp:
    """Not listed: only methods and properties are."""

    def switch(self, on: bool, *, dim: float = 1.0) -> None:
        """Turn it on or off.

        Not this line: only the first paragraph is shown.
        """

    @property
    def lit(self) -> bool:
        """Whether it shines (`a | b` is escaped)."""
        return True

    def _wire(self) -> None:
        """Internal: not listed."""


class Undocumented:
    def mystery(self) -> None:
        pass


def test_an_api_table_lists_public_methods_with_their_summary():
    assert sync.render(f"api {__name__}:Lamp").splitlines() == [
        "| method | what it does |",
        "|---|---|",
        "| `switch(on, *, dim=1.0)` | Turn it on or off. |",
        "| `lit` (property) | Whether it shines (`a \\| b` is escaped). |",
    ]


def test_a_public_method_without_a_docstring_is_an_error():
    with pytest.raises(sync.SyncError, match="mystery"):
        sync.render(f"api {__name__}:Undocumented")
