"""The tutorial's map of selectserver names only real things.

docs/tutorial/step7_selectserver.md (and the exercises) name modules,
classes, functions and constants as ``selectserver.module.Name.attribute``;
each must exist, so a rename in the package fails here until the chapter
follows it.
"""

import importlib
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = ["docs/tutorial/step7_selectserver.md", "docs/tutorial/exercises.md", "docs/kernel.md"]
NAME = re.compile(r"`(selectserver(?:\.\w+)+)`")


def named(page):
    path = os.path.join(ROOT, page)
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return sorted(set(NAME.findall(file.read())))


def resolve(dotted):
    """Import the longest module prefix of ``dotted``, then walk attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)   # AttributeError: a stale name
        return target
    raise ImportError(dotted)


@pytest.mark.parametrize("page", PAGES)
def test_every_name_a_chapter_gives_exists(page):
    names = named(page)
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert missing == [], "%s names what selectserver no longer has" % page


def test_the_map_names_something():
    assert len(named(PAGES[0])) > 30
