"""The opening handshake (RFC 6455 §4) and permessage-deflate's offer
and answer (RFC 7692 §5 and §7.1), without I/O.

``read_handshake(request)`` checks an upgrade request and says what the
client asked for; a request that cannot be a handshake raises
``HandshakeError`` carrying the status (400, or 426 with the version we
speak) and the headers to answer with.  ``accept_headers()`` lists the
fields of the ``101 Switching Protocols`` answer once the application
accepts; the response writer serializes it as any other head.

Invariant: whatever a client puts in these header fields, the result is a
``Handshake`` or a ``HandshakeError``; nothing else is raised (a malformed
``Sec-WebSocket-Protocol`` must not crash a worker).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Iterable, List, Optional, Sequence, Tuple

from ..errors import HTTPError
from ..http11.events import Request
from ..http11.grammar import is_token
from .frames import PerMessageDeflate

# RFC 6455 §1.3: appended to the client's key before hashing.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Headers = List[Tuple[bytes, bytes]]


class HandshakeError(HTTPError):
    """An upgrade request that is not a valid handshake (400 by default)."""

    status, reason = 400, "Bad Request"
    headers: Headers = []


class UnsupportedVersion(HandshakeError):
    """RFC 6455 §4.4: answer 426 and name the version we speak."""

    status, reason = 426, "Upgrade Required"
    headers = [(b"sec-websocket-version", b"13"), (b"upgrade", b"websocket")]


class Handshake:
    """What a valid handshake request asked for."""

    __slots__ = ("key", "subprotocols", "extension_offers")

    def __init__(self, key: bytes, subprotocols: List[str],
                 extension_offers: List[Tuple[str, List[Tuple[str, Optional[str]]]]]) -> None:
        self.key = key
        self.subprotocols = subprotocols
        self.extension_offers = extension_offers


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())


def _elements(values: Iterable[bytes]) -> List[bytes]:
    """The comma-separated list elements of header values (RFC 9110 §5.6.1)."""
    elements = []
    for value in values:
        for element in value.split(b","):
            element = element.strip(b" \t")
            if element:
                elements.append(element)
    return elements


def upgrade_requested(headers: Sequence[Tuple[bytes, bytes]]) -> bool:
    """True if an ``Upgrade`` field lists ``websocket`` (in any case)."""
    for name, value in headers:
        if name == b"upgrade" and b"websocket" in [e.lower() for e in _elements((value,))]:
            return True
    return False


def read_handshake(request: Request) -> Handshake:
    """Check a request that asked to upgrade to websocket (RFC 6455 §4.2.1).

    Raises ``HandshakeError`` (400) for a handshake that is not GET on
    HTTP/1.1, has a body, lacks ``Connection: upgrade``, or has no valid
    key, and ``UnsupportedVersion`` (426) for a version other than 13.
    """
    if request.method != b"GET":
        raise HandshakeError("websocket handshake must be a GET")
    if request.http_version != "1.1":
        raise HandshakeError("websocket handshake needs HTTP/1.1")
    if request.has_body:
        # Its bytes would be taken for the first frames after the 101.
        raise HandshakeError("websocket handshake with a body")
    connection: List[bytes] = []
    keys: List[bytes] = []
    versions: List[bytes] = []
    protocols: List[bytes] = []
    extensions: List[bytes] = []
    for name, value in request.headers:
        if name == b"connection":
            connection.append(value)
        elif name == b"sec-websocket-key":
            keys.append(value)
        elif name == b"sec-websocket-version":
            versions.append(value)
        elif name == b"sec-websocket-protocol":
            protocols.append(value)
        elif name == b"sec-websocket-extensions":
            extensions.append(value)
    if b"upgrade" not in [e.lower() for e in _elements(connection)]:
        raise HandshakeError("websocket handshake without Connection: upgrade")
    if len(versions) != 1 or versions[0].strip(b" \t") != b"13":
        raise UnsupportedVersion("websocket version must be 13")
    if len(keys) != 1:
        raise HandshakeError("websocket handshake needs one Sec-WebSocket-Key")
    key = keys[0].strip(b" \t")
    try:
        # RFC 6455 §4.1: a base64-encoded 16-byte value.
        valid_key = len(key) == 24 and len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        raise HandshakeError("invalid Sec-WebSocket-Key")
    subprotocols = []
    for element in _elements(protocols):
        # RFC 6455 §4.1: each subprotocol is a token.
        if not is_token(element):
            raise HandshakeError("invalid Sec-WebSocket-Protocol")
        subprotocols.append(element.decode("ascii"))
    return Handshake(key, subprotocols, parse_extensions(extensions))


# -- Sec-WebSocket-Extensions -----------------------------------------------------------


def parse_extensions(values: Iterable[bytes]) -> List[Tuple[str, List[Tuple[str, Optional[str]]]]]:
    """The offers in ``Sec-WebSocket-Extensions`` fields (RFC 6455 §9.1).

    Each is ``(name, [(param, value or None), ...])``.  A malformed offer
    is skipped, not an error: declining an extension is always allowed.
    """
    offers = []
    for element in _elements(values):
        parts = [part.strip(b" \t") for part in element.split(b";")]
        name = parts[0]
        if not is_token(name):
            continue
        params: List[Tuple[str, Optional[str]]] = []
        for part in parts[1:]:
            param, equals, value = part.partition(b"=")
            param = param.strip(b" \t")
            value = value.strip(b" \t")
            if equals and len(value) >= 2 and value[:1] == b'"' and value[-1:] == b'"':
                value = value[1:-1]   # RFC 6455 §9.1: a quoted-string must hold a token
            if not is_token(param) or (equals and not is_token(value)):
                break
            params.append((param.decode("ascii").lower(),
                           value.decode("ascii") if equals else None))
        else:
            offers.append((name.decode("ascii").lower(), params))
    return offers


# zlib cannot make raw deflate with an 8-bit window (it silently uses 9),
# so an offer that insists on 8 is declined.
_MIN_WINDOW_BITS = 9
# The window we compress with unless the client asks for less: 4 KiB of
# history costs little memory and loses little compression on messages.
SERVER_WINDOW_BITS = 12


def negotiate_deflate(offers: Sequence[Tuple[str, List[Tuple[str, Optional[str]]]]]
                      ) -> Tuple[Optional[PerMessageDeflate], Optional[bytes]]:
    """Accept the first permessage-deflate offer we can honour (RFC 7692 §7.1).

    Returns the agreed ``PerMessageDeflate`` and the response's
    ``Sec-WebSocket-Extensions`` value, or ``(None, None)`` to decline.
    """
    for name, params in offers:
        if name != "permessage-deflate":
            continue
        agreed = _accept_offer(params)
        if agreed is not None:
            return agreed
    return None, None


def _accept_offer(params: List[Tuple[str, Optional[str]]]
                  ) -> Optional[Tuple[PerMessageDeflate, bytes]]:
    seen = set()
    server_no_context_takeover = client_no_context_takeover = False
    server_max_window_bits: Optional[int] = None
    client_max_window_bits: Optional[int] = None
    client_window_offered = False
    for param, value in params:
        if param in seen:
            return None   # RFC 7692 §7: a parameter appears at most once
        seen.add(param)
        if param == "server_no_context_takeover" and value is None:
            server_no_context_takeover = True
        elif param == "client_no_context_takeover" and value is None:
            client_no_context_takeover = True
        elif param == "server_max_window_bits":
            server_max_window_bits = _window_bits(value)
            if server_max_window_bits is None:
                return None
        elif param == "client_max_window_bits":
            client_window_offered = True
            if value is not None:
                client_max_window_bits = _window_bits(value)
                if client_max_window_bits is None:
                    return None
        else:
            return None   # an unknown parameter or a value where none belongs
    if server_max_window_bits is not None and server_max_window_bits < _MIN_WINDOW_BITS:
        return None
    answer = [b"permessage-deflate"]
    if server_no_context_takeover:
        answer.append(b"server_no_context_takeover")
    if client_no_context_takeover:
        answer.append(b"client_no_context_takeover")
    window_bits = min(server_max_window_bits or 15, SERVER_WINDOW_BITS)
    if server_max_window_bits is not None:
        # §7.1.2.1: the answer repeats it with the same or a smaller value.
        answer.append(b"server_max_window_bits=%d" % window_bits)
    inflate_bits = 15
    if client_window_offered and client_max_window_bits is not None:
        # §7.1.2.2: the client limits itself; we may inflate with less memory.
        inflate_bits = max(client_max_window_bits, _MIN_WINDOW_BITS)
        answer.append(b"client_max_window_bits=%d" % client_max_window_bits)
    deflate = PerMessageDeflate(server_no_context_takeover, client_no_context_takeover,
                                window_bits, inflate_bits)
    return deflate, b"; ".join(answer)


def _window_bits(value: Optional[str]) -> Optional[int]:
    # RFC 7692 §7.1.2: 1*DIGIT, 8..15, no leading zero.
    if value is None or not value.isdigit() or value[0] == "0" or len(value) > 2:
        return None
    bits = int(value)
    return bits if 8 <= bits <= 15 else None


# -- the answer --------------------------------------------------------------------------


def accept_headers(key: bytes, subprotocol: Optional[str], extensions: Optional[bytes],
                   headers: Iterable[Tuple[bytes, bytes]]) -> Headers:
    """The fields of the ``101 Switching Protocols`` answer (RFC 6455 §4.2.2).

    ``headers`` are the application's extra fields (the response writer
    checks them).  Raises ``ValueError`` for a subprotocol that is not a
    token, or an application field that the handshake sets itself.
    """
    fields = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
              (b"sec-websocket-accept", accept_key(key))]
    if subprotocol is not None:
        encoded = subprotocol.encode("ascii", "replace")
        if not is_token(encoded):
            raise ValueError("invalid subprotocol %r" % (subprotocol,))
        fields.append((b"sec-websocket-protocol", encoded))
    if extensions:
        fields.append((b"sec-websocket-extensions", extensions))
    for name, value in headers:
        if bytes(name).lower() in _HANDSHAKE_FIELDS:
            raise ValueError("the handshake sets %r itself" % (name,))
        fields.append((name, value))
    return fields


_HANDSHAKE_FIELDS = frozenset((b"upgrade", b"connection", b"sec-websocket-accept",
                               b"sec-websocket-protocol", b"sec-websocket-extensions"))
