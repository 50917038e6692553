"""The response writer: what the application says, as HTTP/1.1 bytes.

One ``ResponseWriter`` per request turns the status and headers an
application gives into a head, frames the body (Content-Length, chunked or
until close) and decides the one thing the connection needs to know after
the response: ``keep_alive``, whether another request may follow on it.

The writer never emits a byte the application got wrong: a bad status, a
header name that is not a token, or a CR, LF or NUL in a value raises
``errors.InvalidResponse`` before anything is returned.  It does no I/O and
keeps no clock; the caller passes the Date and Server lines in, cached once
a second.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Tuple

from ..errors import InvalidResponse
from .events import Request
from .grammar import FIELD_NAMES, OWS, REASON_PHRASES, lower_field_name

# RFC 9110 §15.2.1: sent by the connection before reading a body that the
# client announced with "Expect: 100-continue".
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
# We always answer as HTTP/1.1, also to 1.0 clients (RFC 9110 §6.2).
_STATUS_LINES = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, reason)
    for status, reason in REASON_PHRASES.items()
}

# The status lines of the codes whose response has a body (RFC 9110 §15:
# not 1xx, 204 or 304), for the usual response (region usual-response).
_STATUS_LINES_WITH_BODY = {
    status: line for status, line in _STATUS_LINES.items()
    if status >= 200 and status != 204 and status != 304
}

# How the body is delimited.
_NO_BODY = 0       # HEAD, 1xx, 204, 304: whatever the app sends is dropped
_LENGTH = 1        # Content-Length: bytes beyond it are dropped
_CHUNKED = 2       # RFC 9112 §7.1
_UNTIL_CLOSE = 3   # an HTTP/1.0 client without Content-Length: close ends it

# The app's fields the writer must read to frame and persist the response.
_SEMANTIC_FIELDS = frozenset(
    (b"content-length", b"transfer-encoding", b"connection", b"date", b"server"))

_MAX_CONTENT_LENGTH_DIGITS = 18


class ResponseWriter:
    """Serializes the response to one request.

    Call ``head()`` once, ``body()`` any number of times, ``end()`` once;
    out of order they raise ``InvalidResponse``.  Afterwards ``keep_alive``
    says whether the connection may read another request.
    """

    __slots__ = (
        "request",       # the Request being answered
        "status",        # int, once head() ran (0 before)
        "keep_alive",    # may the connection carry another request after this
        "bytes_sent",    # body bytes passed on (after dropping), for the access log
        "started",       # head() ran
        "finished",      # end() ran
        "_framing",      # one of _NO_BODY, _LENGTH, _CHUNKED, _UNTIL_CLOSE
        "_remaining",    # with _LENGTH: body bytes still owed
    )

    def __init__(self, request: Request) -> None:
        self.request = request
        self.status = 0
        self.keep_alive = request.keep_alive
        self.bytes_sent = 0
        self.started = False
        self.finished = False
        self._framing = _NO_BODY
        self._remaining = 0

    def answered(self, status: int, body_bytes: int) -> None:
        """The server sent a complete answer of its own instead (an error
        page with ``connection: close``): record it, for the access log."""
        self.status = status
        self.bytes_sent = body_bytes
        self.keep_alive = False
        self.started = self.finished = True

    def head(self, status: int, headers: Iterable[Tuple[bytes, bytes]],
             date_server: bytes) -> bytes:
        """The status line and header section, ending with the blank line.

        ``date_server`` is a block of complete field lines (normally
        ``date: ...`` and ``server: ...``); a line whose field the app sent
        itself is left out.  Only 101 may be sent among the 1xx codes: the
        connection sends 100 itself (``CONTINUE``), and other interim
        responses are not supported.
        """
        return self.respond(status, headers, date_server, b"", False)

    def respond(self, status: int, headers: Iterable[Tuple[bytes, bytes]],
                date_server: bytes, body: bytes, end: bool) -> bytes:
        """``head()`` and ``body(body)``, and ``end()`` if ``end``, as one bytes.

        The connection's way: the head and the first body piece leave in one
        write, and a response given in one piece is serialized in one call,
        its pieces joined once (-5,100 instructions per response against
        head(), body() and end() with two concatenations, callgrind,
        CPython 3.11).
        """
        if self.started:
            raise InvalidResponse("the response has already started")
        fields = tuple(headers) if headers.__class__ is list else headers

        # region: usual-response
        # The usual response, whole in one call: a status with a body (not
        # 1xx, 204 or 304) to a keep-alive HTTP/1.1 request other than HEAD,
        # with fields remembered as a plain shape (a Content-Length the body
        # matches; no Connection, Date or Server of the app's).  For it every
        # rule below comes out the same way: framing and body are allowed
        # (CONNECT's rule needs a request that is not keep-alive), framing is
        # Content-Length with all of it sent, keep-alive stays, and no
        # Connection line is added.  One status lookup and one shape lookup
        # replace the status checks, the unpacking, the framing and
        # keep-alive decisions and three stores (-2,000 instructions per
        # response, callgrind, CPython 3.11; test_writer_usual.py compares it
        # with the full rules).
        if end and self.keep_alive and status.__class__ is int and body.__class__ is bytes:
            status_line = _STATUS_LINES_WITH_BODY.get(status)
            request = self.request
            if (status_line is not None and request.http_version == "1.1"
                    and request.method != b"HEAD"):
                try:
                    shape = _SHAPES.get(fields)
                except TypeError:   # a list or a bytearray among the fields
                    shape = None
                if shape is not None and shape[5] == len(body):
                    self.status = status
                    self.bytes_sent = shape[5]
                    self._framing = _LENGTH
                    self.started = self.finished = True
                    return b"".join((status_line, date_server, shape[6], body))
        # endregion: usual-response

        status_line = _STATUS_LINES.get(status) if type(status) is int else None
        if status_line is None:
            status, status_line = _uncommon_status_line(status)
        if status < 200 and status != 101:
            raise InvalidResponse("interim response %d is not supported" % status)
        request = self.request
        # RFC 9110 §8.6 and RFC 9112 §6.1: no Content-Length or
        # Transfer-Encoding in a 1xx or 204.  HEAD and 304 keep the app's, which
        # describe the body a GET would have had.
        framing_allowed = status >= 200 and status != 204
        if not self.keep_alive and status < 300 and request.method == b"CONNECT":
            # RFC 9110 §9.3.6: a 2xx to CONNECT starts a tunnel, with no
            # framing fields and no body of ours.  (The parser made the
            # request's keep_alive False, so the connection closes after
            # it; tested first, it keeps the method out of the usual case.)
            framing_allowed = False
        body_allowed = framing_allowed and status != 304 and request.method != b"HEAD"

        # region: response-shape
        shape = None
        if body_allowed:   # what is remembered are the lines of a response with a body
            try:
                shape = _SHAPES.get(fields)
            except TypeError:   # a list or a bytearray among the fields: not hashable
                pass
        if shape is None:
            shape = _shape_of(fields, framing_allowed, body_allowed)
        lines, content_length, app_close, app_keep_alive, own_fields, _, _ = shape
        # endregion: response-shape

        if not body_allowed:
            framing = _NO_BODY
        elif content_length is not None:
            framing = _LENGTH
            self._remaining = content_length
        elif request.http_version == "1.1":
            framing = _CHUNKED
            lines += b"transfer-encoding: chunked\r\n"
        else:
            # RFC 9112 §6.3 (8): with neither, the body ends when we close.
            framing = _UNTIL_CLOSE
        self._framing = framing
        if own_fields:
            date_server = _without_own_fields(date_server, own_fields)

        # self.keep_alive: the request's wish, unless the connection said
        # before the head that this is its last response.
        keep_alive = (self.keep_alive and not app_close
                      and framing != _UNTIL_CLOSE and status != 101)
        if status != 101:
            # A 101 hands the connection to another protocol; its Connection
            # field ("upgrade") is the app's and must stay as it is.
            if not keep_alive and not app_close:
                lines += b"connection: close\r\n"  # RFC 9112 §9.6
            elif keep_alive and request.http_version == "1.0" and not app_keep_alive:
                lines += b"connection: keep-alive\r\n"  # RFC 9112 §9.3
        self.status = status
        self.keep_alive = keep_alive
        self.started = True

        if end and framing == _LENGTH and type(body) is bytes and len(body) == content_length:
            # The usual case, what body() and end() do for exactly the
            # announced bytes, inline (-4,500 instructions per response).
            self.bytes_sent = content_length
            self._remaining = 0
            self.finished = True
            return b"".join((status_line, date_server, lines, b"\r\n", body))
        pieces = [status_line, date_server, lines, b"\r\n"]
        if body:
            pieces.append(self.body(body))
        if end:
            pieces.append(self.end())
        return b"".join(pieces)

    def body(self, data: bytes) -> bytes:
        """``data`` framed for the wire; ``b""`` when there is nothing to send."""
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise InvalidResponse("body must be bytes, not %s" % type(data).__name__)
            data = bytes(data)
        size = self._account(len(data))
        if not size:
            return b""
        if self._framing == _CHUNKED:
            # RFC 9112 §7.1: chunk = chunk-size CRLF chunk-data CRLF
            return b"%x\r\n%s\r\n" % (size, data)
        return data if size == len(data) else data[:size]

    def file_body(self, count: int) -> int:
        """Account for ``count`` body bytes that the caller sends itself
        (``os.sendfile``); return how many of them to send.

        Raises ``InvalidResponse`` for a chunked response: a file's bytes
        cannot be sent as they are inside chunks.
        """
        if self._framing == _CHUNKED and self.started:
            raise InvalidResponse("a file body needs a content-length")
        return self._account(count)

    def _account(self, size: int) -> int:
        """How many of ``size`` body bytes may go out; counts them as sent."""
        if not self.started or self.finished:
            raise InvalidResponse("body sent outside of a response")
        framing = self._framing
        if framing == _NO_BODY:
            return 0
        if framing == _LENGTH:
            # Bytes beyond Content-Length would be read as the next response.
            size = min(size, self._remaining)
            self._remaining -= size
        self.bytes_sent += size
        return size

    def end(self) -> bytes:
        """The bytes that end the body: the last chunk, or ``b""``.

        A Content-Length body that got fewer bytes than announced cannot be
        ended: the connection must close, so ``keep_alive`` becomes False.
        """
        if not self.started or self.finished:
            raise InvalidResponse("end of a response that is not in progress")
        self.finished = True
        if self._framing == _CHUNKED:
            return b"0\r\n\r\n"  # last-chunk, no trailers, CRLF
        if self._framing == _LENGTH and self._remaining:
            self.keep_alive = False
        return b""


def error_response(status: int, date_server: bytes, detail: str = "") -> bytes:
    """A complete plain-text response the server sends on its own, with
    ``connection: close``: the answer to an ``HTTPError`` or an app failure."""
    reason = REASON_PHRASES.get(status, b"")
    body = b"%d %s\n" % (status, reason)
    if detail:
        body += detail.encode("utf-8", "replace") + b"\n"
    return b"".join((
        _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status,
        date_server,
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ))


# Response field lines already checked, (name, value) -> the line: an app
# sends the same Content-Type (and Cache-Control, Vary ...) with every
# response, and one dict lookup replaces the name lookup, the three searches
# of the value and four pieces of the join (-840 instructions per field,
# callgrind, CPython 3.11).  Only fields the writer does not interpret, given
# as tuples of bytes; bounded like the parser's field lines, long values
# (cookies, tokens) are not kept.
_CHECKED_LINES: Dict[Tuple[bytes, bytes], bytes] = {}
_CHECKED_LINES_MAX = 256
_CHECKED_VALUE_MAX_BYTES = 128


def _remember_line(name: bytes, value: bytes) -> bytes:
    """The line of a checked field, remembered when name and value are bytes."""
    line = b"".join((name, b": ", value, b"\r\n"))
    if type(name) is bytes and type(value) is bytes:
        if len(_CHECKED_LINES) >= _CHECKED_LINES_MAX:
            _CHECKED_LINES.clear()
        _CHECKED_LINES[(name, value)] = line
    return line


# Response shapes remembered, the app's header fields -> what they mean for
# a response with a body: an app answers with the same fields again and
# again (a Content-Type, a Content-Length for the same body), and checking
# them again says nothing new.  One dict lookup, keyed by the fields
# themselves, replaces the loop over them: the name lookups, the searches
# for CR, LF and NUL, reading Content-Length and Connection, and the join of
# their lines (-4,800 instructions per keep-alive hello, callgrind, CPython
# 3.11; a response whose fields differ every time pays about as much more,
# see RESULTS.md).  What depends on the request and the status (CONNECT,
# HTTP/1.0, keep-alive) is still decided per response; a response without a
# body (HEAD, 1xx, 204, 304), whose lines differ, takes the full check.
# Only fields given as tuples of two bytes, which cannot change once made,
# are a key; a shape is remembered once checked, so a wrong field raises
# every time.  Bounded like the checked lines: 256 shapes of at most 1 KiB.
#
# A shape is a tuple: (the field lines, Content-Length or None, the app's
# Connection says close, ... says keep-alive, the lowered names of the
# date_server lines the app replaces, and for the usual response: the
# Content-Length of a plain shape or -1, the lines and the blank line ending
# the head, or None).
_Shape = Tuple[bytes, Optional[int], bool, bool, Tuple[bytes, ...], int, Optional[bytes]]
_SHAPES: Dict[Tuple[Tuple[bytes, bytes], ...], _Shape] = {}
_SHAPES_MAX = 256
_SHAPE_MAX_BYTES = 1024


def _shape_of(fields: Iterable[Tuple[bytes, bytes]], framing_allowed: bool,
              body_allowed: bool) -> _Shape:
    """Check the app's header fields and read what framing needs of them.

    Raises ``InvalidResponse`` for a field HTTP cannot carry: a name that is
    not a token, a CR, LF or NUL in a value, a malformed or conflicting
    Content-Length, a Transfer-Encoding other than chunked, or both.  The
    shape of a response with a body is remembered when ``fields`` is a tuple
    of (bytes, bytes) tuples.
    """
    lines: List[bytes] = []
    content_length: Optional[int] = None
    semantic: Optional[List[Tuple[bytes, bytes]]] = None
    rememberable = body_allowed and fields.__class__ is tuple
    try:
        for field in fields:
            if field.__class__ is tuple:
                try:
                    line = _CHECKED_LINES.get(field)
                except TypeError:   # a bytearray in it: not hashable
                    line = None
                if line is not None:
                    lines.append(line)   # checked before: not a framing field
                    if field[0].__class__ is not bytes or field[1].__class__ is not bytes:
                        rememberable = False   # a memoryview, equal to the bytes
                    continue
            else:
                rememberable = False
            name, value = field
            try:
                lowered = FIELD_NAMES[name]
            except KeyError:
                lowered = lower_field_name(name)
                if lowered is None:
                    raise InvalidResponse("header name %r is not a token" % (name,)) from None
            if type(value) is not bytes:
                value = _bytes_value(name, value)
                rememberable = False
            elif name.__class__ is not bytes:
                rememberable = False
            if lowered not in _SEMANTIC_FIELDS:
                # RFC 9110 §5.5: a CR, LF or NUL would let the app end the
                # line, or the head, and write headers or a body of its own.
                # (An int operand makes "in" a plain memchr.)
                if 10 in value or 13 in value or 0 in value:
                    raise InvalidResponse(_bad_value(name))
                if field.__class__ is tuple and len(value) <= _CHECKED_VALUE_MAX_BYTES:
                    lines.append(_remember_line(name, value))
                    continue
            elif lowered == b"content-length":
                # All digits (checked here or by _content_length()), so
                # free of CR, LF and NUL.
                if (content_length is None and value.isdigit()
                        and len(value) <= _MAX_CONTENT_LENGTH_DIGITS):
                    content_length = int(value)   # the usual case, inline
                else:
                    content_length = _content_length(value, content_length)
                if not framing_allowed:
                    continue
            else:
                if 10 in value or 13 in value or 0 in value:   # as above
                    raise InvalidResponse(_bad_value(name))
                if semantic is None:
                    semantic = []
                semantic.append((lowered, value))
                if lowered == b"transfer-encoding" and (body_allowed or not framing_allowed):
                    continue  # framed by us, or not allowed at all
            # The four pieces, joined once below: cheaper than concatenating
            # them here (-540 instructions a field, callgrind, CPython 3.11).
            lines += (name, b": ", value, b"\r\n")
    except InvalidResponse:
        raise
    except (TypeError, ValueError) as exc:
        raise InvalidResponse("headers must be (bytes, bytes) pairs") from exc

    app_close = app_keep_alive = False
    own_fields: Tuple[bytes, ...] = ()
    if semantic is not None:
        app_close, app_keep_alive, own_fields = _read_semantic_fields(semantic, content_length)
    joined = b"".join(lines)
    if content_length is not None and not app_close and not own_fields:
        # Plain: what the usual response needs (region usual-response).
        shape = (joined, content_length, False, app_keep_alive, own_fields,
                 content_length, joined + b"\r\n")
    else:
        shape = (joined, content_length, app_close, app_keep_alive, own_fields, -1, None)
    if rememberable and len(joined) <= _SHAPE_MAX_BYTES:
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.clear()
        _SHAPES[fields] = shape
    return shape


def _bad_value(name: bytes) -> str:
    return "header %r has a CR, LF or NUL in its value" % (name,)


def _bytes_value(name: bytes, value: object) -> bytes:
    """A header value given as another bytes-like object, as bytes."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidResponse("header %r: the value must be bytes, not %s"
                              % (name, type(value).__name__))
    return bytes(value)


def _uncommon_status_line(status: object) -> Tuple[int, bytes]:
    """Validate a status that is not a plain int with a known reason phrase."""
    if isinstance(status, bool) or not isinstance(status, int):
        raise InvalidResponse("status must be an int, not %r" % (status,))
    status = int(status)  # an IntEnum such as http.HTTPStatus
    if not 100 <= status <= 999:
        # RFC 9110 §15: status-code = 3DIGIT
        raise InvalidResponse("status %d is not three digits" % status)
    # An empty reason phrase is valid (RFC 9112 §4); clients ignore it.
    return status, _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status


def _content_length(value: bytes, previous: Optional[int]) -> int:
    """The app's Content-Length (RFC 9110 §8.6: 1*DIGIT), which must agree
    with an earlier one."""
    if not value.isdigit() or len(value) > _MAX_CONTENT_LENGTH_DIGITS:
        raise InvalidResponse("invalid content-length %r" % (value,))
    length = int(value)
    if previous is not None and length != previous:
        raise InvalidResponse("two different content-length values")
    return length


def _read_semantic_fields(
    semantic: List[Tuple[bytes, bytes]], content_length: Optional[int]
) -> Tuple[bool, bool, Tuple[bytes, ...]]:
    """Read the app's other framing and persistence fields.

    Returns (close, keep_alive, own_fields), the last the lowered names of
    the Date and Server fields the app sent itself.
    """
    chunked = close = keep_alive = False
    own_fields = []
    for name, value in semantic:
        if name == b"transfer-encoding":
            if value.lower().strip(OWS) != b"chunked":
                # We could not frame the body under another coding.  A
                # "chunked" is taken as a request for what we do anyway
                # without a Content-Length; the line itself is ours to write.
                raise InvalidResponse("transfer-encoding other than chunked")
            chunked = True
        elif name == b"connection":
            tokens = [t.strip(OWS) for t in value.lower().split(b",")]
            close = close or b"close" in tokens
            keep_alive = keep_alive or b"keep-alive" in tokens
        else:
            own_fields.append(name)
    if chunked and content_length is not None:
        # RFC 9112 §6.2: never both.
        raise InvalidResponse("both content-length and transfer-encoding")
    return close, keep_alive, tuple(own_fields)


def _without_own_fields(date_server: bytes, own_fields: Tuple[bytes, ...]) -> bytes:
    """``date_server`` without the lines of the fields the app sent itself."""
    return b"".join(
        line + b"\r\n" for line in date_server.split(b"\r\n")
        if line and (lower_field_name(line.partition(b":")[0]) not in own_fields))


# -- rules for servers that build a head from text (WSGI) -----------------------------

def status_has_body(status: int) -> bool:
    """Can a response with ``status`` have content at all?

    RFC 9110 §15.2, §15.3.5, §15.4.5: never a 1xx, 204 or 304, so a server
    that knows the size of what the app gave must not announce it there.
    """
    return status >= 200 and status != 204 and status != 304


def response_has_body(status: int, method: bytes) -> bool:
    """``status_has_body``, and not the answer to HEAD (RFC 9110 §9.3.2)."""
    return status >= 200 and status != 204 and status != 304 and method != b"HEAD"


def status_code(status_text: str) -> int:
    """The code of a status line's text such as ``"200 OK"``.

    RFC 9112 §4: status-code SP reason-phrase, three digits first.  Raises
    ``InvalidResponse`` for anything else, or a CR, LF or NUL that would end
    the line; ``TypeError`` for what is not a str.
    """
    if status_text.__class__ is not str:
        raise TypeError("status must be a str such as '200 OK', not %r" % (status_text,))
    code = status_text[:3]
    if not (code.isdigit() and code.isascii()) or (len(status_text) > 3 and status_text[3] != " "):
        raise InvalidResponse("invalid status %r" % (status_text,))
    if not status_text.isprintable() and _LINE_BREAKERS.search(status_text):
        raise InvalidResponse("CR, LF or NUL in status %r" % (status_text,))
    return int(code)


def check_field_text(name: str, value: str) -> None:
    """Raise ``InvalidResponse`` if a header given as text could end its line.

    RFC 9110 §5.5: no CR, LF or NUL in a field.  ``isprintable()`` is the
    fast way to say "no control characters"; only text that fails it (a
    tab, say) is searched.  The writer checks the encoded head again (names
    must be tokens); this lets the app learn of it where it can react.
    """
    text = name + value
    if not text.isprintable() and _LINE_BREAKERS.search(text):
        raise InvalidResponse("CR, LF or NUL in header %r" % (name,))


_LINE_BREAKERS = re.compile(r"[\r\n\0]")
