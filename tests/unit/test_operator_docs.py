"""Every option of --help is documented in README.md or docs/."""

from __future__ import annotations

import glob
import os

from selectserver.cli import build_parser

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def documentation() -> str:
    paths = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
    texts = []
    for path in paths:
        with open(path, encoding="utf-8") as file:
            texts.append(file.read())
    return "\n".join(texts)


def test_every_flag_in_help_is_documented():
    text = documentation()
    flags = [flag for action in build_parser()._actions for flag in action.option_strings
             if flag.startswith("--")]
    assert len(flags) > 60
    missing = [flag for flag in flags
               if not any(flag + end in text for end in ("`", " ", "/", ",", "=", ")"))]
    assert missing == []
