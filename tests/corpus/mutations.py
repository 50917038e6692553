"""Seeded mutations of corpus requests, for the fuzz tests.

Each mutation is small and aimed where parsers go wrong: line endings,
separators, digits, the framing fields.  The same seed gives the same
inputs on every interpreter, so a failure can be replayed.
"""

from __future__ import annotations

import random
from typing import Callable, List

# Octets that mean something to an HTTP/1.1 parser.
INTERESTING = b"\r\n\t :;,=\"\\0123456789aAfFxX-+_.*/?%[]@\x00\x01\x0b\x0c\x1b\x7f\x80\xff"

# Field lines that probe framing and smuggling rules.
TRICKY_FIELDS = [
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: CHUNKED",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, identity",
    b"Transfer-Encoding: , chunked",
    b"Transfer-Encoding : chunked",
    b"Transfer-Encoding:\tchunked",
    b" Transfer-Encoding: chunked",
    b"Content-Length: 0",
    b"Content-Length: 5",
    b"Content-Length: 5, 5",
    b"Content-Length: 5, 6",
    b"Content-Length: +5",
    b"Content-Length: 99999999999999999999",
    b"Content-Length:",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: upgrade",
    b"Upgrade: websocket",
    b"Expect: 100-continue",
    b"Expect: nothing",
    b"Host: example.com",
    b"Host: [::1]:80",
    b"Host:",
    b"X-Empty:",
    b"X-Latin: caf\xe9",
]


def _delete(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + data[i + 1:]


def _insert(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + bytes([rng.choice(INTERESTING)]) + data[i:]


def _replace(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + bytes([rng.choice(INTERESTING)]) + data[i + 1:]


def _random_byte(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]


def _duplicate(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.randrange(1, 40))
    return data[:j] + data[i:j] + data[j:]


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data))]


def _swap_lines(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\r\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"\r\n".join(lines)


def _add_field(rng: random.Random, data: bytes) -> bytes:
    line_end = data.find(b"\r\n")
    if line_end < 0:
        return data
    return data[:line_end + 2] + rng.choice(TRICKY_FIELDS) + b"\r\n" + data[line_end + 2:]


def _line_ending(rng: random.Random, data: bytes) -> bytes:
    old, new = rng.choice([(b"\r\n", b"\n"), (b"\r\n", b"\r"), (b"\r\n", b"\r\r\n"),
                           (b"\r\n", b"\n\r"), (b" ", b"  "), (b" ", b"\t"), (b":", b" :")])
    count = data.count(old)
    if not count:
        return data
    nth = rng.randrange(count)
    index = -1
    for _ in range(nth + 1):
        index = data.find(old, index + 1)
    return data[:index] + new + data[index + len(old):]


def _case(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.randrange(1, 20))
    return data[:i] + data[i:j].swapcase() + data[j:]


MUTATIONS: List[Callable[[random.Random, bytes], bytes]] = [
    _delete, _insert, _replace, _random_byte, _duplicate, _truncate, _swap_lines,
    _add_field, _add_field, _line_ending, _line_ending, _case,
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """``data`` with one to three random mutations."""
    for _ in range(rng.randrange(1, 4)):
        if data:
            data = rng.choice(MUTATIONS)(rng, data)
    return data


def random_split(rng: random.Random, data: bytes) -> List[bytes]:
    """``data`` cut into one to four feeds at random offsets."""
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(0, 4)))
    pieces, start = [], 0
    for cut in cuts + [len(data)]:
        pieces.append(data[start:cut])
        start = cut
    return [piece for piece in pieces if piece]
