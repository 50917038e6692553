"""The request parser: bytes in, events out, and no I/O.

The connection ``feed()``s whatever ``recv()`` returned and asks
``next_event()`` what it now knows: a ``Request`` head, body ``Data``, the
``EndOfMessage``, or ``NEED_DATA``.  One request is handed out at a time;
after its end the parser says ``PAUSED`` until ``next_request()``, so
pipelined requests wait in the buffer.

The parser is strict wherever leniency lets two parties disagree about where
a message ends (request smuggling): one framing per message, exact CRLFs,
exact numbers.  Every fault a client can cause is an ``errors.HTTPError``
with the status to answer; after one, the parser raises it again forever.

Its invariant: the work done is linear in the bytes received, whatever way
they are split, and the buffer never grows past a limit by more than one
``feed()``, provided the caller calls ``next_event()`` after each feed.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Union

from ..errors import (
    BadRequest,
    ContentTooLarge,
    ExpectationFailed,
    HeaderFieldsTooLarge,
    HTTPError,
    NotImplementedCoding,
    URITooLong,
    VersionNotSupported,
)
from .events import (
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    Data,
    EndOfMessage,
    Headers,
    Request,
)
from .grammar import (
    CHUNK_EXT,
    FIELD_LINE_CHARS,
    FIELD_LINE_CHECK,
    FIELD_NAMES,
    OWS,
    REQUEST_LINE_CHECK,
    TCHAR,
    is_hex,
    lower_field_name,
    valid_host,
)

Event = Union[Request, Data, EndOfMessage, object]


class Limits:
    """Size limits on what a client may send (``max_body_bytes=None``: no limit).

    ``max_header_bytes`` counts the whole head, request line and final blank
    line included; ``max_request_line_bytes`` the request line without its
    CRLF.  The trailer section of a chunked body obeys the same two header
    limits.
    """

    __slots__ = ("max_request_line_bytes", "max_header_bytes", "max_header_count",
                 "max_body_bytes")

    def __init__(
        self,
        max_request_line_bytes: int = 8192,
        max_header_bytes: int = 65536,
        max_header_count: int = 100,
        max_body_bytes: Optional[int] = None,
    ) -> None:
        for name, value in (("max_request_line_bytes", max_request_line_bytes),
                            ("max_header_bytes", max_header_bytes),
                            ("max_header_count", max_header_count)):
            if type(value) is not int or value < 1:
                raise ValueError("%s must be a positive int, not %r" % (name, value))
        if max_body_bytes is not None and (type(max_body_bytes) is not int
                                           or max_body_bytes < 0):
            raise ValueError("max_body_bytes must be None or an int >= 0")
        self.max_request_line_bytes = max_request_line_bytes
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.max_body_bytes = max_body_bytes

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Limits):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return "Limits(%s)" % ", ".join(
            "%s=%r" % (n, getattr(self, n)) for n in self.__slots__)


_DEFAULT_LIMITS = Limits()
_new_object = object.__new__   # see _read_head(), "usual-framing", and _read_length_body()

# Where the parser is within the current message.
_HEAD = 0           # waiting for a request head
_LENGTH_BODY = 1    # a Content-Length body, _remaining bytes to go
_CHUNK_SIZE = 2     # waiting for a chunk-size line
_CHUNK_DATA = 3     # inside a chunk, _remaining bytes to go
_CHUNK_CRLF = 4     # waiting for the CRLF that ends a chunk's data
_TRAILERS = 5       # after the last chunk, waiting for the trailer section
_END = 6            # the body is complete; EndOfMessage not yet returned
_PAUSED = 7         # EndOfMessage returned; waiting for next_request()
_FAILED = 8         # an HTTPError was raised; it is raised again

# region: states
# The moves between those states and what makes each (docs/http11.md draws
# this table).  The parser sets _state directly, for speed; the table stays
# true because tests/unit/test_parser_states.py parses the whole corpus and
# fails on a move missing here, or on a move here that never happens.
STATE_NAMES = {_HEAD: "HEAD", _LENGTH_BODY: "LENGTH_BODY", _CHUNK_SIZE: "CHUNK_SIZE",
               _CHUNK_DATA: "CHUNK_DATA", _CHUNK_CRLF: "CHUNK_CRLF", _TRAILERS: "TRAILERS",
               _END: "END", _PAUSED: "PAUSED", _FAILED: "FAILED"}
TRANSITIONS = {
    "HEAD": {"head, no body": "END", "head, Content-Length": "LENGTH_BODY",
             "head, chunked": "CHUNK_SIZE", "error": "FAILED"},
    "LENGTH_BODY": {"its last byte": "END", "take_body()": "PAUSED"},
    "CHUNK_SIZE": {"size > 0": "CHUNK_DATA", "size 0": "TRAILERS", "error": "FAILED"},
    "CHUNK_DATA": {"its last byte": "CHUNK_CRLF"},
    "CHUNK_CRLF": {"CRLF": "CHUNK_SIZE", "error": "FAILED"},
    "TRAILERS": {"empty line": "END", "error": "FAILED"},
    "END": {"EndOfMessage": "PAUSED", "next_request()": "HEAD"},
    "PAUSED": {"next_request()": "HEAD"},
}
# endregion: states

_KNOWN_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}

# The methods of RFC 9110 §9.3 and PATCH (RFC 5789), known to be tokens: a
# set lookup is cheaper than translate().  Other tokens take the slow way.
_COMMON_METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH"))

# The fields the parser interprets while it reads the head (RFC 9112 §6 for
# framing, RFC 9110 §7.2 Host, §7.6.1 Connection, §10.1.1 Expect).
_SEMANTIC_FIELDS = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade"))

# The first bytes of a request are judged as they arrive: up to the first
# space they must be a method (a token).  A TLS ClientHello or other garbage
# so gets its 400 at once, not after max_request_line_bytes.  Only this many
# are looked at, so the check costs the same for any method.
_PREFIX_BYTES = 16

# Larger numbers than these are not a body anyone can send us; refusing them
# early keeps int() away from attacker-sized digit strings.
_MAX_CONTENT_LENGTH_DIGITS = 18
_MAX_CHUNK_SIZE_DIGITS = 16
_MAX_CHUNK_LINE_BYTES = 4096


class RequestParser:
    """Turns the bytes of HTTP/1.1 requests into events, one request at a time."""

    __slots__ = (
        "limits",
        # Bytes received and not yet handed out as events: body bytes of the
        # current request, their chunk framing, and bytes of pipelined
        # requests after it.  The connection reads it for backpressure (stop
        # reading above a high-water mark) and to know whether part of a head
        # is here.  A count kept where the buffer changes (feed, _read_head,
        # _consume, ...), not a property: reading a property calls Python code
        # (the connection reads it twice per keep-alive request: -1,300
        # instructions per request of A, +130 of D, which pays the count for
        # each pipelined head; callgrind, CPython 3.11, benchmarks/RESULTS.md).
        "buffered_bytes",
        "_buffer",          # bytes or bytearray holding received bytes
        "_offset",          # where the bytes not yet consumed start in _buffer
        "_state",           # one of the module's _HEAD ... _FAILED
        "_searched",        # bytes after _offset already searched for a terminator
        "_line_searched",   # same, for the request line's CRLF (-1: found)
        "_remaining",       # body or chunk bytes still to come
        "_body_received",   # body bytes so far, for max_body_bytes
        "_end_event",       # the EndOfMessage to return in state _END
        "_error",           # the HTTPError raised in state _FAILED
    )

    def __init__(self, limits: Optional[Limits] = None) -> None:
        self.limits = limits or _DEFAULT_LIMITS
        self.buffered_bytes = 0
        self._buffer: Union[bytes, bytearray] = b""
        self._offset = 0
        self._state = _HEAD
        self._searched = 0
        self._line_searched = 0
        self._remaining = 0
        self._body_received = 0
        self._end_event = END_OF_MESSAGE
        self._error: Optional[HTTPError] = None

    # -- what the connection asks ------------------------------------------

    @property
    def body_complete(self) -> bool:
        """Every byte of the current request's body has been received.

        True from the ``Request`` on when the request has no body, when the
        rest of a Content-Length body is buffered, or once the parser has
        read the last chunk and the trailers; and after ``EndOfMessage``.
        Chunked bodies are judged by what ``next_event()`` has parsed, not by
        what ``feed()`` has buffered since.
        """
        state = self._state
        if state == _LENGTH_BODY:
            return self.buffered_bytes >= self._remaining
        return state == _END or state == _PAUSED

    # -- feeding and stepping ----------------------------------------------

    def feed(self, data: bytes) -> None:
        """Append received bytes.  Never raises for size: next_event() does."""
        if not data or self._state == _FAILED:
            return
        buffer = self._buffer
        if not buffer:
            # The usual case, a whole request per recv(): keep the bytes
            # object itself, no copy.  (_offset is 0: an emptied buffer is
            # always replaced by b"", see _consume().)
            self._buffer = data if type(data) is bytes else bytes(data)
            self.buffered_bytes = len(data)
            return
        if type(buffer) is bytes:
            buffer = bytearray(memoryview(buffer)[self._offset:])
        elif self._offset:
            # O(1) in CPython (bytearray moves its start), a memmove in PyPy;
            # either way at most once per feed.
            del buffer[:self._offset]
        buffer += data
        self._buffer = buffer
        self._offset = 0
        self.buffered_bytes = len(buffer)

    def next_event(self) -> Event:
        """The next event, ``NEED_DATA`` or ``PAUSED``.

        Raises an ``errors.HTTPError`` subclass for anything the client got
        wrong, and the same one again on every later call.
        """
        try:
            state = self._state
            if state == _HEAD:
                # An empty buffer is the usual state after a response:
                # answered without a call.
                return self._read_head() if self._buffer else NEED_DATA
            if state == _END:
                self._state = _PAUSED
                return self._end_event
            if state == _LENGTH_BODY:
                return self._read_length_body()
            if state == _PAUSED:
                return PAUSED
            if state == _FAILED:
                raise self._error  # type: ignore[misc]
            return self._read_chunked_body()
        except HTTPError as exc:
            self._state = _FAILED
            self._error = exc
            # The bytes cannot be trusted any more; do not keep them.
            self._buffer = b""
            self._offset = 0
            self.buffered_bytes = 0
            raise

    def next_request(self, skip_body: bool = True) -> bool:
        """End the current message and let the parser read the next request.

        The connection's way after a response: a body the application did
        not read is skipped when all of it is buffered (``skip_body``).
        Returns False when the message cannot be ended here -- its body is
        not all here, is malformed, or may not be read (``skip_body`` False:
        the client waits for 100 Continue before it sends the body) -- and
        the connection must then close.  (What it skipped before it found
        out stays skipped: the parser is not used again.)
        """
        state = self._state
        if state != _END and state != _PAUSED:
            # Some body is left (the usual case, a request without one, is
            # the test above: one call per request instead of five).
            if not skip_body or state == _HEAD or state == _FAILED:
                return False
            try:
                while self._state != _PAUSED:
                    if self.next_event() is NEED_DATA:
                        return False
            except HTTPError:
                return False
        self._state = _HEAD
        self._end_event = END_OF_MESSAGE
        return True

    def take_body(self) -> Optional[bytes]:
        """The rest of the current Content-Length body in one piece, when
        all of it is buffered; the message is then over, as after its
        ``EndOfMessage`` (``PAUSED`` until ``next_request()``).

        Returns None, changing nothing, for anything else: part of the body
        still to come, a chunked body, no body left to hand out.  What the
        ``Data`` and ``EndOfMessage`` events would have said, in one call
        instead of two ``next_event()`` (a small POST comes whole with its
        head; WSGI E -6,600 instructions per request with the connection's
        side, callgrind, CPython 3.11).  The bytes are copied once, as
        ``next_event()`` copies them; a body received alone is not copied.
        """
        remaining = self._remaining
        available = self.buffered_bytes
        if self._state != _LENGTH_BODY or available < remaining:
            return None
        # _read_length_body()'s slicing of a body that is all here, written
        # out: taking its Data instead (one call and one event more) measured
        # +1,900 instructions per request of E (callgrind, CPython 3.11).
        buffer, start = self._buffer, self._offset
        if available > remaining:
            # What follows the body is the next request.
            end = start + remaining
            data = buffer[start:end] if type(buffer) is bytes else _slice(buffer, start, end)
            self._offset = end
            self.buffered_bytes = available - remaining
        else:
            data = (buffer[start:] if type(buffer) is bytes
                    else _slice(buffer, start, start + available))
            self._buffer = b""
            self._offset = 0
            self.buffered_bytes = 0
        self._remaining = 0
        self._state = _PAUSED
        return data

    def take_unparsed(self) -> bytes:
        """Remove and return every byte not yet handed out as an event.

        For a protocol upgrade: after the ``Request`` of a bodyless upgrade
        request, these are the first bytes of the new protocol.
        """
        unparsed = bytes(self._buffer[self._offset:])
        self._buffer = b""
        self._offset = 0
        self.buffered_bytes = 0
        self._searched = 0
        self._line_searched = 0
        return unparsed

    # -- the head ------------------------------------------------------------

    def _read_head(self) -> Event:
        buffer, start = self._buffer, self._offset
        if buffer[start] == 13 and buffer.startswith(b"\r\n", start):  # 13: CR
            self._skip_empty_lines(buffer, start)
            buffer, start = self._buffer, self._offset
        end = buffer.find(b"\r\n\r\n", start + self._searched)
        if end < 0:
            return self._incomplete_head(buffer, start)

        limits = self.limits
        if end + 4 - start > limits.max_header_bytes:
            self._raise_head_limit(buffer, start, end)
        head = buffer[start:end] if type(buffer) is bytes else _slice(buffer, start, end)
        rest = len(buffer) - end - 4   # pipelined requests, or the body
        if rest:
            self._offset = end + 4
        else:
            self._buffer = b""
            self._offset = 0
        self.buffered_bytes = rest
        if self._line_searched:
            # The head came in more than one feed: _incomplete_head() ran,
            # and left both counts set (it always sets _line_searched).  From
            # one feed both are still 0, and are not written again.
            self._searched = 0
            self._line_searched = 0

        # region: known-heads
        # A client that sends the same request line with the same field
        # block again (a keep-alive client asking for the same resource,
        # polling, a health check) sends a head seen before: kept once its
        # line passed every check below (origin-form only) and its block
        # is known, it is one lookup, with no partition and no second
        # lookup; its method, target and version are the same objects each
        # time, whose hashes the apps' own caches then find already made
        # (_TARGETS in asgi.py and wsgi/environ.py).  Only the limits of
        # this parser are checked again.  Against the request line's own
        # lookup that came before: -1,710 instructions per request of A,
        # -1,470 of a WSGI hello; against neither, -4,480 of A (callgrind,
        # CPython 3.11; benchmarks/RESULTS.md, "known heads").
        seen = _HEADS.get(head) if len(head) <= _HEAD_MAX_BYTES else None
        if seen is not None:
            method, target, http_version, line_bytes, known = seen
            if line_bytes > limits.max_request_line_bytes:
                self._raise_head_limit(buffer, start, end)
            fields, semantic, framing = known
            lines = None
            field_count = len(fields)
            origin_form, authority = True, None
        # endregion: known-heads
        else:
            request_line, _, block = head.partition(b"\r\n")
            if len(request_line) > limits.max_request_line_bytes:
                self._raise_head_limit(buffer, start, end)
            # region: known-field-blocks
            # A client sends the same field lines with every request on a
            # connection, and often on every connection.  A field block seen
            # before, every line of it free of control octets and well formed
            # (they are kept only then), needs none of that checked again: its
            # parsed fields are one dict lookup away, and only the request line
            # is checked for octets, by one table that also refuses HTAB and
            # obs-text (the general path's second check).  A request line that
            # fails it goes the general way, which says what is wrong.
            # -6,100 instructions per request of A, -6,800 of E (the parser
            # alone, callgrind, CPython 3.11).
            known = (_FIELD_BLOCKS.get(block) if len(block) <= _FIELD_BLOCK_MAX_BYTES
                     else None)
            if known is not None and request_line.translate(REQUEST_LINE_CHECK) == request_line:
                fields, semantic, framing = known
                lines = None
                field_count = len(fields)
            else:
                # region: control-octets
                lines = head.split(b"\r\n")
                # Without the CRLFs between lines the head may hold no control
                # octet at all: a CTL, a bare CR or LF.  Checked before the
                # request line is read, so that the answer does not depend on
                # how the head was split into feeds (see _incomplete_head).
                field_count = len(lines) - 1   # checked against the limit below
                octets = b"".join(lines)
                if octets.translate(FIELD_LINE_CHECK) != octets:
                    raise BadRequest(_octet_error(lines))
                # endregion: control-octets
                # The line has no CTL but maybe HTAB (checked above); what else
                # REQUEST_LINE_CHARS excludes is obs-text.  Cheaper than translate().
                if 9 in request_line or not request_line.isascii():
                    raise BadRequest("invalid octet in the request line")
            # endregion: known-field-blocks
            try:
                method, target, version = request_line.split(b" ")
            except ValueError:   # not three parts; unpacking tests it for free
                raise BadRequest("the request line is not method SP target SP version") from None
            if method not in _COMMON_METHODS and (not method or method.translate(None, TCHAR)):
                raise BadRequest("the method is not a token")
            # A comparison, not a dict lookup: the version is a new bytes object
            # each time, and hashing it cost more than this test (callgrind).
            http_version = ("1.1" if version == b"HTTP/1.1"
                            else _KNOWN_VERSIONS.get(version) or _parse_version(version))
            if 35 in target:  # "#"
                # RFC 9112 §3.2: no form of request-target has a fragment; a
                # client strips it, and parts after "#" mean nothing to us.
                raise BadRequest("fragment in the request target")
            origin_form = target[:1] == b"/" and method != b"CONNECT"
            if origin_form:
                authority = None
                if lines is None and len(head) <= _HEAD_MAX_BYTES:
                    # A known block behind a good line: the head is kept.
                    if len(_HEADS) >= _HEADS_MAX:
                        _HEADS.clear()
                    _HEADS[head] = (method, target, http_version, len(request_line), known)
            else:
                authority = _check_target_form(method, target)
        if field_count > limits.max_header_count:
            raise HeaderFieldsTooLarge("more than %d header fields" % limits.max_header_count)

        if lines is None:
            # Each Request its own list: apps may change theirs.  [*fields]
            # builds it without a call (-250 instructions against list()).
            headers = [*fields]
        else:
            del lines[0]   # the field lines remain; cheaper than a copy without it
            headers, semantic = _parse_field_lines(lines)
            framing = _usual_framing(semantic)
            if len(block) <= _FIELD_BLOCK_MAX_BYTES:
                if len(_FIELD_BLOCKS) >= _FIELD_BLOCKS_MAX:
                    _FIELD_BLOCKS.clear()
                _FIELD_BLOCKS[block] = (tuple(headers), semantic, framing)
        if origin_form and framing is not None:
            # region: usual-framing
            # The usual requests: a valid Host alone (a GET), with a
            # Connection field of one option (browsers, ab, a client closing
            # after one request), or with a Content-Length of plain digits (a
            # POST).  _request() would find no fault in them, and frame them
            # as _usual_framing() says; it is not called (-1,900 instructions
            # per request against _request(), callgrind, CPython 3.11).  With
            # a known block, _usual_framing() is not called either: only the
            # version and the body limit are left (-490 instructions per
            # request of A, -4,000 of E, the parser alone).
            keep_alive, content_length = framing
            if keep_alive is None:
                keep_alive = http_version == "1.1"   # RFC 9112 §9.3, no Connection field
            if content_length:
                max_body_bytes = limits.max_body_bytes
                if max_body_bytes is not None and content_length > max_body_bytes:
                    # What _request() raises here, the one fault it could find.
                    raise ContentTooLarge("body larger than %d bytes" % max_body_bytes)
                self._state = _LENGTH_BODY
                self._remaining = content_length
            else:
                self._state = _END
            # A Request without Expect, chunked body or Upgrade, its slots
            # filled here: CPython 3.11 enters a class's Python __init__ from
            # C, in a new run of the evaluation loop, and even a helper
            # function costs a frame (-840 instructions per request against
            # Request(...), the parser alone).  test_parser_shortcuts.py
            # holds it to what Request(...) makes.
            request = _new_object(Request)
            request.method = method
            request.target = target
            request.http_version = http_version
            request.headers = headers
            request.keep_alive = keep_alive
            request.expect_continue = False
            request.content_length = content_length
            request.chunked = False
            request.upgrade = False
            return request
            # endregion: usual-framing
        request = self._request(method, target, http_version, headers, semantic, authority)
        if request.chunked:
            self._state = _CHUNK_SIZE
            self._body_received = 0
        elif request.content_length:
            self._state = _LENGTH_BODY
            self._remaining = request.content_length
        else:
            self._state = _END
        return request

    def _skip_empty_lines(self, buffer: Union[bytes, bytearray], start: int) -> None:
        # RFC 9112 §2.2: a server SHOULD ignore at least one empty line
        # received before the request line.  We ignore any number: they are
        # consumed as they come, so they cost no memory.
        while buffer.startswith(b"\r\n", start):
            start += 2
        self._consume(start)
        self._searched = 0
        self._line_searched = 0

    def _incomplete_head(self, buffer: Union[bytes, bytearray], start: int) -> Event:
        """Check what can be checked of a head whose end has not arrived.

        The answer must not depend on how the bytes were split into feeds,
        so each check looks only at the bytes before the point where a limit
        is certainly broken, and _raise_head_limit() repeats them in the
        same order for a head that arrived whole.
        """
        received = len(buffer) - start
        if self._searched <= _PREFIX_BYTES:
            if received == 1 and buffer[start] == 13:
                return NEED_DATA  # maybe the first half of an empty line
            _check_method_prefix(buffer, start)
        limits = self.limits
        line_limit = limits.max_request_line_bytes + 2    # with its CRLF
        if self._line_searched >= 0:
            line_end = buffer.find(b"\r\n", start + max(0, self._line_searched - 1),
                                   start + line_limit)
            self._line_searched = -1 if line_end >= 0 else received
        # Until the request line ends, its limit is the one that applies.
        bound = limits.max_header_bytes + 1 if self._line_searched < 0 else line_limit
        _check_no_bare_lf(buffer, start, start + max(0, self._searched - 1), start + bound)
        self._searched = max(0, received - 3)
        if self._line_searched >= 0:
            if received >= line_limit:
                raise URITooLong("request line longer than %d bytes"
                                 % limits.max_request_line_bytes)
        elif received > limits.max_header_bytes:
            raise HeaderFieldsTooLarge("head larger than %d bytes" % limits.max_header_bytes)
        return NEED_DATA

    def _raise_head_limit(self, buffer: Union[bytes, bytearray], start: int, end: int) -> None:
        """A complete head broke a size limit: raise what _incomplete_head()
        would have raised had the same bytes come one at a time."""
        limits = self.limits
        _check_method_prefix(buffer, start)
        line_limit = limits.max_request_line_bytes + 2
        if buffer.find(b"\r\n", start, start + line_limit) < 0:
            _check_no_bare_lf(buffer, start, start, start + line_limit)
            raise URITooLong("request line longer than %d bytes"
                             % limits.max_request_line_bytes)
        _check_no_bare_lf(buffer, start, start, start + limits.max_header_bytes + 1)
        raise HeaderFieldsTooLarge("head larger than %d bytes" % limits.max_header_bytes)

    def _request(self, method: bytes, target: bytes, http_version: str,
                 headers: Headers, semantic: Headers,
                 authority: Optional[bytes] = None) -> Request:
        """Build the Request, applying the rules of the fields that frame it.

        ``authority`` is that of an absolute-form target: it becomes the
        Host field the Request carries.
        """
        host_seen = False
        content_length: Optional[int] = None
        # A Content-Length sent more than once, as a list, or with leading
        # zeros is handed on as one field with the plain number.
        normalize_length = False
        # Repeated list fields are one list (RFC 9110 §5.3): join, read once.
        transfer_encoding: Optional[bytes] = None
        connection: Optional[bytes] = None
        expect: Optional[bytes] = None
        upgrade = False
        for name, value in semantic:
            if name == b"host":
                if host_seen:
                    raise BadRequest("several Host fields")  # RFC 9112 §3.2
                host_seen = True
                if value not in _VALID_HOSTS and not _remember_host(value):
                    raise BadRequest("invalid Host")  # RFC 9112 §3.2
            elif name == b"content-length":
                if (value.isdigit() and len(value) <= _MAX_CONTENT_LENGTH_DIGITS
                        and (value[0] != 48 or len(value) == 1)):  # 48: "0"
                    length = int(value)   # the usual case, a plain number
                else:
                    length = _parse_content_length(value)
                    normalize_length = True
                if content_length is not None:
                    if length != content_length:
                        # RFC 9112 §6.3 (5): differing lengths are unrecoverable.
                        raise BadRequest("conflicting Content-Length values")
                    normalize_length = True
                content_length = length
            elif name == b"connection":
                connection = value if connection is None else connection + b"," + value
            elif name == b"transfer-encoding":
                transfer_encoding = (value if transfer_encoding is None
                                     else transfer_encoding + b"," + value)
            elif name == b"expect":
                expect = value if expect is None else expect + b"," + value
            else:
                upgrade = True   # RFC 9110 §7.8; the protocol is the caller's business

        if not host_seen and http_version == "1.1":
            raise BadRequest("HTTP/1.1 request without Host")  # RFC 9112 §3.2
        if transfer_encoding is not None:
            if http_version == "1.0":
                # RFC 9112 §6.1: Transfer-Encoding in a 1.0 message means the
                # framing is faulty, whatever else it says; refuse it.
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
            if content_length is not None:
                # RFC 9112 §6.1: two framings is how requests are smuggled.
                raise BadRequest("both Transfer-Encoding and Content-Length")
            _check_transfer_codings(_list_elements(transfer_encoding))
        elif content_length is not None:
            max_body_bytes = self.limits.max_body_bytes
            if max_body_bytes is not None and content_length > max_body_bytes:
                raise ContentTooLarge("body larger than %d bytes" % max_body_bytes)
        expect_continue = False
        if expect is not None:
            expectations = _list_elements(expect)
            if expectations.count(b"100-continue") != len(expectations):
                raise ExpectationFailed("only 100-continue is supported")  # RFC 9110 §10.1.1
            # RFC 9110 §10.1.1: a server MUST ignore 100-continue from HTTP/1.0.
            expect_continue = bool(expectations) and http_version == "1.1"

        # RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only on "keep-alive".
        keep_alive = http_version == "1.1"
        if connection is not None:
            options = _list_elements(connection)
            if b"close" in options:
                keep_alive = False
            elif not keep_alive:
                keep_alive = b"keep-alive" in options
        if method == b"CONNECT":
            # RFC 9110 §9.3.6: a 2xx answer turns the connection into a
            # tunnel, and the bytes after the request are the tunnel's, not
            # requests.  We never tunnel, and do not read them as requests
            # after another answer either: a client that sent them at once
            # meant them for the tunnel.  The connection ends with the answer.
            keep_alive = False
        if normalize_length:
            headers = _one_content_length(headers, content_length)  # type: ignore[arg-type]
        if authority is not None:
            # RFC 9112 §3.2.2: the authority of an absolute-form target
            # replaces the Host field (the field was still checked above).
            headers = _host_replaced(headers, authority)
        return Request(method, target, http_version, headers, keep_alive,
                       expect_continue, content_length, transfer_encoding is not None, upgrade)

    # -- the body ------------------------------------------------------------

    def _read_length_body(self) -> Event:
        # What _take() and _consume() do, written out for the two cases: the
        # usual body, sent with its head or after it, is one call here
        # instead of four (-2,600 instructions per request of E, the parser
        # alone, callgrind, CPython 3.11).
        available = self.buffered_bytes
        if not available:
            return NEED_DATA
        buffer, start, remaining = self._buffer, self._offset, self._remaining
        if available > remaining:
            # The body ends inside the buffer; what follows is the next request.
            end = start + remaining
            data = buffer[start:end] if type(buffer) is bytes else _slice(buffer, start, end)
            self._offset = end
            self.buffered_bytes = available - remaining
            self._remaining = 0
            self._state = _END
        else:
            # Every buffered byte is body: all of them go, and the buffer
            # with them.  A slice, not a call to _slice(): -700 per request
            # of E; and a bytes object received as the body alone is not
            # copied (bytes[0:] is the object itself).
            data = (buffer[start:] if type(buffer) is bytes
                    else _slice(buffer, start, start + available))
            self._buffer = b""
            self._offset = 0
            self.buffered_bytes = 0
            self._remaining = remaining = remaining - available
            if not remaining:
                self._state = _END
        # The Data's slot filled here, as the usual Request's in _read_head()
        # and for the same reason: no __init__ entered from C (-480 per
        # request of E, the parser alone).
        event = _new_object(Data)
        event.data = data
        return event

    def _read_chunked_body(self) -> Event:
        """Return all chunk data buffered now, across chunks, as one Data.

        Data is handed out as it arrives, not a chunk at a time, so a large
        chunk streams and never has to fit in the buffer.
        """
        pieces = []
        while True:
            state = self._state
            if state == _CHUNK_DATA:
                available = self.buffered_bytes
                if not available:
                    break
                size = min(available, self._remaining)
                pieces.append(self._take(size))
                self._remaining -= size
                if not self._remaining:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_SIZE:
                if not self._read_chunk_size():
                    break
            elif state == _CHUNK_CRLF:
                # RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
                ending = self._buffer[self._offset:self._offset + 2]
                if ending != b"\r\n":
                    if ending == b"\r" or not ending:
                        break
                    raise BadRequest("chunk data not followed by CRLF")
                self._consume(self._offset + 2)
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                if not self._read_trailers():
                    break
            else:  # _END
                break
        if pieces:
            return Data(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        if self._state == _END:
            self._state = _PAUSED
            return self._end_event
        return NEED_DATA

    def _read_chunk_size(self) -> bool:
        """Parse one chunk-size line; False if it has not fully arrived."""
        buffer, start = self._buffer, self._offset
        line_end = buffer.find(b"\r\n", start + self._searched)
        if line_end < 0:
            received = len(buffer) - start
            if buffer.find(b"\n", start + self._searched) >= 0:
                raise BadRequest("bare LF line ending")
            if received >= _MAX_CHUNK_LINE_BYTES + 2:
                raise BadRequest("chunk-size line too long")
            self._searched = max(0, received - 1)
            return False
        if line_end - start > _MAX_CHUNK_LINE_BYTES:
            raise BadRequest("chunk-size line too long")
        line = _slice(buffer, start, line_end)
        self._consume(line_end + 2)
        self._searched = 0
        size_hex, semicolon, extension = line.partition(b";")
        if semicolon:
            # RFC 9112 §7.1.1: BWS before ";" is allowed; the extensions
            # are checked and ignored.
            size_hex = size_hex.rstrip(OWS)
            if not CHUNK_EXT.fullmatch(line, len(size_hex)):
                raise BadRequest("invalid chunk extension")
        if not is_hex(size_hex) or len(size_hex) > _MAX_CHUNK_SIZE_DIGITS:
            raise BadRequest("invalid chunk size")
        size = int(size_hex, 16)
        if size == 0:
            self._state = _TRAILERS
            return True
        self._body_received += size
        max_body_bytes = self.limits.max_body_bytes
        if max_body_bytes is not None and self._body_received > max_body_bytes:
            raise ContentTooLarge("body larger than %d bytes" % max_body_bytes)
        self._remaining = size
        self._state = _CHUNK_DATA
        return True

    def _read_trailers(self) -> bool:
        """Parse the trailer section; False if it has not fully arrived."""
        # RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ), then CRLF.
        buffer, start = self._buffer, self._offset
        if buffer.startswith(b"\r\n", start):
            self._consume(start + 2)
            self._state = _END
            return True
        end = buffer.find(b"\r\n\r\n", start + self._searched)
        limits = self.limits
        if end < 0 or end + 4 - start > limits.max_header_bytes:
            # As for the head: the same answer however the bytes were split.
            searched = max(0, self._searched - 1) if end < 0 else 0
            _check_no_bare_lf(buffer, start, start + searched, start + limits.max_header_bytes + 1)
            received = len(buffer) - start
            if end >= 0 or received > limits.max_header_bytes:
                raise HeaderFieldsTooLarge("trailers larger than %d bytes"
                                           % limits.max_header_bytes)
            self._searched = max(0, received - 3)
            return False
        section = _slice(buffer, start, end)
        self._consume(end + 4)
        self._searched = 0
        lines = section.split(b"\r\n")
        if len(section.translate(None, FIELD_LINE_CHARS)) != 2 * (len(lines) - 1):
            raise BadRequest(_octet_error(lines))
        if len(lines) > limits.max_header_count:
            raise HeaderFieldsTooLarge("more than %d trailer fields" % limits.max_header_count)
        # Trailers are handed over as sent; none of them frames anything.
        self._end_event = EndOfMessage(_parse_field_lines(lines)[0])
        self._state = _END
        return True

    # -- the buffer ----------------------------------------------------------

    def _take(self, size: int) -> bytes:
        """Consume and return the next ``size`` bytes (``size`` <= buffered)."""
        start = self._offset
        data = _slice(self._buffer, start, start + size)
        self._consume(start + size)
        return data

    def _consume(self, offset: int) -> None:
        """Mark the bytes before ``offset`` as used; drop the buffer when empty."""
        rest = len(self._buffer) - offset
        if rest > 0:
            self._offset = offset
            self.buffered_bytes = rest
        else:
            self._buffer = b""
            self._offset = 0
            self.buffered_bytes = 0


def _slice(buffer: Union[bytes, bytearray], start: int, end: int) -> bytes:
    """``buffer[start:end]`` as bytes, copied once."""
    if type(buffer) is bytes:
        return buffer[start:end]
    return bytes(memoryview(buffer)[start:end])


def _parse_field_lines(lines: List[bytes]) -> Tuple[Headers, Headers]:
    """RFC 9112 §5: field-line = field-name ":" OWS field-value OWS.

    Returns all fields, lowercased names, and separately those the parser
    interprets.  The octets were checked by the caller.
    """
    headers: Headers = []
    semantic: Headers = []
    for line in lines:
        field = _FIELD_LINES.get(line)
        if field is None:
            field = _parse_field_line(line)
        headers.append(field)
        if field[0] in _SEMANTIC_FIELDS:
            semantic.append(field)
    return headers, semantic


# Field blocks (a head's lines after the request line, without the last
# CRLF) already parsed, mapped to their fields, those the parser interprets,
# and what _usual_framing() says of these; see _read_head(),
# "known-field-blocks".  Bounded like _FIELD_LINES; a block longer than a
# usual one (cookies) is not looked up, so that hashing it does not cost
# more than it could save.
_Block = Tuple[Tuple[Tuple[bytes, bytes], ...], Headers,
               Optional[Tuple[Optional[bool], Optional[int]]]]
_FIELD_BLOCKS: Dict[bytes, _Block] = {}
_FIELD_BLOCKS_MAX = 64
_FIELD_BLOCK_MAX_BYTES = 1024

# Heads (without the last CRLF) whose request line, in origin-form, passed
# every check and whose field block is known, mapped to their (method,
# target, version, request line's length, the block's entry); see
# _read_head(), "known-heads".  Bounded like _FIELD_BLOCKS.
_HEADS: Dict[bytes, Tuple[bytes, bytes, str, int, _Block]] = {}
_HEADS_MAX = 256
_HEAD_MAX_BYTES = 1536

# Field lines already parsed, mapped to their (lowercased name, value): a
# client sends the same Host, User-Agent and Accept lines on every request,
# and one dict lookup replaces partition(), the name lookup and strip()
# (-5,200 instructions per request of three fields, callgrind, CPython 3.11).
# Bounded like grammar.FIELD_NAMES; long lines (cookies, tokens) are not kept.
_FIELD_LINES: Dict[bytes, Tuple[bytes, bytes]] = {}
_FIELD_LINES_MAX = 256
_FIELD_LINE_MAX_BYTES = 256


def _parse_field_line(line: bytes) -> Tuple[bytes, bytes]:
    """One field line as (lowercased name, value), remembered if short."""
    name, colon, value = line.partition(b":")
    try:
        lowered = FIELD_NAMES[name]
    except KeyError:
        lowered = lower_field_name(name)
        if lowered is None:
            raise BadRequest(_field_line_error(line)) from None
    if not colon:
        raise BadRequest(_field_line_error(line))
    field = (lowered, value.strip(b" \t"))   # OWS
    if len(line) <= _FIELD_LINE_MAX_BYTES:
        if len(_FIELD_LINES) >= _FIELD_LINES_MAX:
            _FIELD_LINES.clear()
        _FIELD_LINES[line] = field
    return field


def _check_method_prefix(buffer: Union[bytes, bytearray], start: int) -> None:
    """Refuse at once a request whose first bytes cannot start a method."""
    method = bytes(buffer[start:start + _PREFIX_BYTES]).partition(b" ")[0]
    if method.translate(None, TCHAR) or (not method and len(buffer) > start):
        raise BadRequest("the request does not start with a method")


def _parse_version(version: bytes) -> str:
    """The served version of an uncommon HTTP-version, or raise.

    RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT.  A higher 1.x minor
    is served as 1.1 (RFC 9110 §6.2); another major, well-formed or as a bare
    "HTTP/2", is 505; anything else is not HTTP and is 400.
    """
    number = version[5:] if version[:5] == b"HTTP/" else b""
    major, dot, minor = number.partition(b".")
    if len(major) != 1 or not major.isdigit() or (dot and (len(minor) != 1
                                                          or not minor.isdigit())):
        raise BadRequest("invalid HTTP version")
    if major != b"1":
        raise VersionNotSupported("HTTP/%s is not supported" % major.decode())
    if not dot:
        raise BadRequest("invalid HTTP version")
    return "1.1"


def _check_target_form(method: bytes, target: bytes) -> Optional[bytes]:
    """RFC 9112 §3.2: the request-target forms other than origin-form.

    Returns the authority of an absolute-form target, None for the others.
    """
    if method == b"CONNECT":
        # §3.2.3: authority-form, and only for CONNECT.
        if target[:1] == b":" or not valid_host(target, port_required=True):
            raise BadRequest("CONNECT needs a host:port target")
        return None
    if target == b"*":
        # §3.2.4: asterisk-form, only for a server-wide OPTIONS.
        if method != b"OPTIONS":
            raise BadRequest("only OPTIONS may target *")
        return None
    # §3.2.2: absolute-form.  We are an origin server for http and https
    # only (RFC 9110 §4.2), whose URIs are scheme "://" authority
    # path-abempty [ "?" query ]; any other target (an authority-form
    # outside CONNECT, "example.com:443", included) is not one of ours.
    scheme, separator, rest = target.partition(b"://")
    if not separator or scheme.lower() not in _SCHEMES:
        raise BadRequest("invalid request target")
    authority = rest
    for delimiter in (b"/", b"?"):
        authority = authority.partition(delimiter)[0]
    # RFC 9110 §4.2.1: an http URI with an empty host MUST be rejected;
    # §4.2.4: userinfo ("user@") is an error (valid_host refuses "@").
    if not authority or authority[:1] == b":" or not valid_host(authority):
        raise BadRequest("invalid authority in the request target")
    return authority


_SCHEMES = frozenset((b"http", b"https"))


def _host_replaced(headers: Headers, authority: bytes) -> Headers:
    """``headers`` with ``authority`` as the value of their Host field, which
    is added at the end if there was none (HTTP/1.0 may leave it out)."""
    replaced: Headers = []
    found = False
    for name, value in headers:
        if name == b"host":
            value = authority
            found = True
        replaced.append((name, value))
    if not found:
        replaced.append((b"host", authority))
    return replaced


def _one_content_length(headers: Headers, length: int) -> Headers:
    """``headers`` with their Content-Length fields as one, the plain number,
    where the first was (WSGI's CONTENT_LENGTH is that number too)."""
    normalized: Headers = []
    seen = False
    for name, value in headers:
        if name == b"content-length":
            if seen:
                continue
            seen = True
            value = b"%d" % length
        normalized.append((name, value))
    return normalized


def _parse_content_length(value: bytes) -> int:
    """RFC 9110 §8.6: Content-Length = 1*DIGIT; no sign, space or hex.

    A list of identical values (from a proxy that merged two fields) is
    accepted, as RFC 9110 §8.6 allows, and so are leading zeros (1*DIGIT).
    A value of more than 18 significant digits is a 413: no body that long
    can be sent, and int() never sees an attacker-sized string.
    """
    lengths = set()
    for element in value.split(b","):
        element = element.strip(OWS)
        if not element.isdigit():   # bytes: ASCII digits only
            raise BadRequest("invalid Content-Length")
        significant = element.lstrip(b"0")
        if len(significant) > _MAX_CONTENT_LENGTH_DIGITS:
            raise ContentTooLarge("Content-Length has more than %d digits"
                                  % _MAX_CONTENT_LENGTH_DIGITS)
        lengths.add(int(significant) if significant else 0)
    if len(lengths) > 1:
        raise BadRequest("conflicting Content-Length values")
    return lengths.pop()


def _list_elements(value: bytes) -> List[bytes]:
    """RFC 9110 §5.6.1: a #list, lowercased, with empty elements dropped."""
    if 44 not in value:  # no ","
        return [value.lower()] if value else []  # already OWS-stripped
    elements = [e.strip(OWS) for e in value.lower().split(b",")]
    return [e for e in elements if e]


# A Connection field of one option, as clients spell it, and the persistence
# it means whatever the HTTP version (RFC 9112 §9.3: "close" ends an HTTP/1.1
# connection, "keep-alive" keeps an HTTP/1.0 one).
_CONNECTION_OPTIONS = {b"close": False, b"Close": False, b"keep-alive": True, b"Keep-Alive": True}


def _usual_framing(semantic: Headers) -> Optional[Tuple[Optional[bool], Optional[int]]]:
    """``(keep_alive, content_length)`` as ``_request()`` would find them from
    the usual sets of interpreted fields: a valid Host alone, or with a
    Connection field of one usual option, or with a Content-Length of plain
    digits (no sign, list or leading zero).  ``keep_alive`` None: the default
    of the request's version.

    None for any other set, and for every fault (``_request()`` decides and
    answers).  The answer depends on the fields alone, so a known field block
    keeps it; the version and the body limit are the caller's.
    """
    if len(semantic) == 1:
        name, value = semantic[0]
        if name == b"host" and (value in _VALID_HOSTS or _remember_host(value)):
            return _BY_VERSION
        return None
    if len(semantic) != 2:
        return None
    (first, first_value), (second, second_value) = semantic
    if first == b"host":
        host, name, value = first_value, second, second_value
    elif second == b"host":
        host, name, value = second_value, first, first_value
    else:
        return None
    if host not in _VALID_HOSTS and not _remember_host(host):
        return None
    if name == b"connection":
        keep_alive = _CONNECTION_OPTIONS.get(value)
        return None if keep_alive is None else (keep_alive, None)
    if (name != b"content-length" or not value.isdigit()
            or len(value) > _MAX_CONTENT_LENGTH_DIGITS or (value[0] == 48 and len(value) > 1)):
        return None   # 48: "0"
    return None, int(value)


# No Connection field and no body: persistence by the version (RFC 9112 §9.3).
_BY_VERSION: Tuple[Optional[bool], Optional[int]] = (None, None)


# Host values already proved valid: a server sees the same few on every
# request.  Bounded like grammar.FIELD_NAMES.
_VALID_HOSTS = set()
_VALID_HOSTS_MAX = 64
_HOST_MAX_BYTES = 256


def _remember_host(value: bytes) -> bool:
    """valid_host(value), remembering a short valid one."""
    if not valid_host(value):
        return False
    if len(value) <= _HOST_MAX_BYTES:
        if len(_VALID_HOSTS) >= _VALID_HOSTS_MAX:
            _VALID_HOSTS.clear()
        _VALID_HOSTS.add(value)
    return True


def _check_transfer_codings(codings: List[bytes]) -> None:
    """Accept exactly one final ``chunked``; we decode no other coding."""
    if not codings or codings[-1] != b"chunked":
        # RFC 9112 §6.3 (4): without a final chunked the length cannot be
        # known; MUST answer 400 and close.
        raise BadRequest("Transfer-Encoding does not end with chunked")
    if b"chunked" in codings[:-1]:
        # RFC 9112 §6.1: chunked MUST NOT be applied more than once.
        raise BadRequest("chunked applied more than once")
    if len(codings) > 1:
        # RFC 9112 §6.1: a server SHOULD answer 501 to a coding it does not
        # understand, and we decode none but chunked.
        raise NotImplementedCoding("unsupported transfer coding %r"
                                   % codings[0].decode("latin-1"))


def _check_no_bare_lf(buffer: Union[bytes, bytearray], start: int, begin: int, end: int) -> None:
    """Refuse an LF without its CR in ``buffer[begin:end]`` of a section
    that starts at ``start``.

    RFC 9112 §2.2 lets a recipient accept a bare LF as a line terminator; we
    do not: two parsers that disagree on where lines end can be made to
    disagree on where messages end.  Looking for it before the head is
    complete answers such a client with 400 at once, instead of leaving it
    waiting for a CRLF CRLF that will never come.  Every LF is part of a
    CRLF exactly when the two counts agree.
    """
    line_feeds = buffer.count(b"\n", begin, end)
    if line_feeds and line_feeds != buffer.count(b"\r\n", max(start, begin - 1), end):
        raise BadRequest("bare LF line ending")


def _octet_error(lines: List[bytes]) -> str:
    for line in lines:
        if b"\n" in line:
            return "bare LF line ending"
        if b"\r" in line:
            return "bare CR in the head"
    return "control character in the head"


def _field_line_error(line: bytes) -> str:
    if line[:1] in (b" ", b"\t"):
        # RFC 9112 §5.2: a server MUST reject obs-fold (or replace it); we reject.
        return "obsolete line folding"
    name = line.partition(b":")[0]
    if b":" not in line:
        return "header line without a colon"
    if name[-1:] in (b" ", b"\t"):
        # RFC 9112 §5.1: whitespace before the colon MUST be rejected.
        return "whitespace between field name and colon"
    return "invalid field name"

