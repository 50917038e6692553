"""Matching an excerpt a page shows against real output.

The excerpt's lines must appear in the output in order and next to each
other, except where a line ``...`` stands for any lines.  Every number
matches any number (ports, pids, file descriptors, timings differ from run
to run), and leading blanks do not count.
"""

import re


def line_pattern(line):
    # Leading blanks vary with the width of a timestamp; they do not count.
    return re.compile(re.sub(r"\\?\d+", r"\\d+", re.escape(line.strip())) + r"$")


def find_excerpt(excerpt, output):
    """The index in ``output`` after the excerpt, or raise AssertionError."""
    groups, group = [], []
    for line in excerpt:
        if line.strip() == "...":
            groups.append(group)
            group = []
        else:
            group.append(line_pattern(line))
    groups.append(group)
    start = 0
    for group in groups:
        if not group:
            continue
        for index in range(start, len(output) - len(group) + 1):
            if all(pattern.match(output[index + k].strip()) for k, pattern in enumerate(group)):
                start = index + len(group)
                break
        else:
            raise AssertionError("not found in order:\n%s\nin:\n%s" % (
                "\n".join(p.pattern for p in group), "\n".join(output)))
    return start
