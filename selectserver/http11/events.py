"""The events the request parser hands out.

A request arrives as one ``Request`` (the head), zero or more ``Data``
events (the body, already de-chunked) and one ``END_OF_MESSAGE``.  When
the parser cannot say more without more bytes it returns ``NEED_DATA``;
after ``END_OF_MESSAGE`` it returns ``PAUSED`` until the connection calls
``next_request()``, so that pipelined requests are answered one at a time,
in order.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

Headers = List[Tuple[bytes, bytes]]


class Request:
    """A parsed request head.  Everything in it has been validated."""

    __slots__ = (
        "method",           # bytes, e.g. b"GET" (case-sensitive token)
        "target",           # bytes, the request-target as sent
        "http_version",     # str: "1.0" or "1.1" (a higher 1.x is served as 1.1)
        "headers",          # list of (lowercased name, value) bytes pairs, in order;
                            # Host is an absolute-form target's authority, and an
                            # accepted Content-Length is one field, a plain number
        "keep_alive",       # bool: may another request follow on the connection, as
                            # far as this one says (RFC 9112 §9.3; never after CONNECT)
        "expect_continue",  # bool: "Expect: 100-continue" was sent
        "content_length",   # int or None
        "chunked",          # bool
        "upgrade",          # bool: an Upgrade field was sent (RFC 9110 §7.8)
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: Headers,
        keep_alive: bool = True,
        expect_continue: bool = False,
        content_length: Optional[int] = None,
        chunked: bool = False,
        upgrade: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.content_length = content_length
        self.chunked = chunked
        self.upgrade = upgrade

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return "Request(%r, %r, %r, %r)" % (
            self.method, self.target, self.http_version, self.headers)


def split_target(target: bytes) -> Tuple[bytes, bytes]:
    """``(raw_path, query_string)`` of a request-target the parser accepted.

    An absolute-form target gives the path and query after its authority
    (whose Host field the parser set); the asterisk-form and CONNECT's
    authority-form have no path and are given as they are.
    """
    if target[:1] == b"/":
        if 63 not in target:   # "?"
            # The usual target, a path without a query: one search instead
            # of partition() and its three new objects (-400 instructions per
            # request, callgrind, CPython 3.11).
            return target, b""
        path, _, query = target.partition(b"?")
        return path, query
    scheme, separator, rest = target.partition(b"://")
    if not separator:
        return target, b""   # "*" or CONNECT's host:port
    # RFC 3986 §3.2: the authority ends at the first "/" or "?".
    slash, question = rest.find(b"/"), rest.find(b"?")
    if question >= 0 and (slash < 0 or question < slash):
        path, query = b"/", rest[question + 1:]
    elif slash >= 0:
        path, _, query = rest[slash:].partition(b"?")
    else:
        path, query = b"/", b""   # RFC 9112 §3.2.2 "http://a" means "/"
    return path, query


class Data:
    """A piece of request body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Data) and other.data == self.data

    def __repr__(self) -> str:
        return "Data(%r)" % (self.data,)


class EndOfMessage:
    """The body is complete.  ``trailers`` holds chunked trailer fields."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: Optional[Headers] = None) -> None:
        self.trailers = trailers or []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndOfMessage) and other.trailers == self.trailers

    def __repr__(self) -> str:
        return "EndOfMessage(%r)" % (self.trailers,) if self.trailers else "END_OF_MESSAGE"


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END_OF_MESSAGE = EndOfMessage()
NEED_DATA = _Sentinel("NEED_DATA")
PAUSED = _Sentinel("PAUSED")
