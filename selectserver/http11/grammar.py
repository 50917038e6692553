"""The HTTP/1.1 grammar as byte tables, to be checked against the RFCs.

Each rule of RFC 9110 and RFC 9112 that the parser and the writer enforce is
spelled here once, beside its ABNF.  A character class is a ``bytes`` of the
allowed octets, used as a *deletion table*: ``data.translate(None, TCHAR)``
deletes every allowed octet, so what is left is exactly what breaks the rule,
and an empty result means the data is valid.  That is one C-level pass in
CPython and in PyPy, with no regex and no per-byte Python loop.

This module knows no state and no I/O; its only mutable object is the bounded
cache of field names already proved to be tokens.
"""

from __future__ import annotations

import re
from typing import Dict, Optional

# RFC 5234 Appendix B.1 core rules.
DIGIT = b"0123456789"
ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
HEXDIG = DIGIT + b"ABCDEFabcdef"
VCHAR = bytes(range(0x21, 0x7F))       # visible characters, no SP, no DEL
OBS_TEXT = bytes(range(0x80, 0x100))   # RFC 9110 §5.5: obs-text = %x80-FF
OWS = b" \t"                           # RFC 9110 §5.6.3: OWS = *( SP / HTAB )

# RFC 9110 §5.6.2
#   token = 1*tchar
#   tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#           "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
TCHAR = b"!#$%&'*+-.^_`|~" + DIGIT + ALPHA

# RFC 9112 §3: request-line = method SP request-target SP HTTP-version.
# Every part is made of VCHARs (RFC 3986 allows no octet above 0x7E in a URI),
# so a valid request line holds VCHAR and SP only.
REQUEST_LINE_CHARS = VCHAR + b" "

# RFC 9110 §5.5
#   field-value   = *field-content
#   field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
#   field-vchar   = VCHAR / obs-text
# A field line is name ":" OWS value OWS, so a whole field line is made of
# these octets.  CR, LF, NUL and the other controls are what remain.
FIELD_LINE_CHARS = VCHAR + OBS_TEXT + b" \t"
# The same rule as a translation table, for a whole head without its CRLFs:
# each allowed octet maps to itself and each control octet to a space, so a
# head that translate() leaves unchanged holds no control octet.  A table and
# no deletion is translate()'s fast way: it does not build a 256-entry table
# per call (with joining the lines first, -740 instructions per request head
# against deleting the 32 controls and counting, callgrind, CPython 3.11).
FIELD_LINE_CHECK = bytes(octet if octet in FIELD_LINE_CHARS else 0x20 for octet in range(256))
# The same for a request line, which allows fewer octets (no HTAB, no
# obs-text): a line translate() leaves unchanged holds VCHAR and SP only.
REQUEST_LINE_CHECK = bytes(octet if octet in REQUEST_LINE_CHARS else 0x20
                           for octet in range(256))

# RFC 3986 §3.2.2, the uri-host of Host (RFC 9110 §7.2) and authority-form:
#   uri-host   = IP-literal / IPv4address / reg-name
#   reg-name   = *( unreserved / pct-encoded / sub-delims )
#   unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
#   sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="
# IPv4address is a reg-name as far as the octets go.  "%" is checked again for
# its two HEXDIGs in valid_host().
UNRESERVED = ALPHA + DIGIT + b"-._~"
SUB_DELIMS = b"!$&'()*+,;="
REG_NAME_CHARS = UNRESERVED + SUB_DELIMS + b"%"
#   IP-literal = "[" ( IPv6address / IPvFuture ) "]"
#   IPvFuture  = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
IPV6_CHARS = HEXDIG + b":."
IPV_FUTURE_CHARS = UNRESERVED + SUB_DELIMS + b":"

# RFC 9112 §7.1.1
#   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
#   chunk-ext-name = token
#   chunk-ext-val  = token / quoted-string
# RFC 9110 §5.6.4
#   quoted-string  = DQUOTE *( qdtext / quoted-pair ) DQUOTE
#   qdtext         = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
#   quoted-pair    = "\" ( HTAB / SP / VCHAR / obs-text )
# Extensions are rare and then short, so a regex (compiled once) is the
# clearest way to say this one.
_TOKEN_RE = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED_STRING_RE = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*" + _TOKEN_RE
    + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN_RE + rb"|" + _QUOTED_STRING_RE + rb"))?)*")


def is_token(data: bytes) -> bool:
    """RFC 9110 §5.6.2: one or more tchar."""
    return bool(data) and not data.translate(None, TCHAR)


def is_hex(data: bytes) -> bool:
    """1*HEXDIG, the chunk-size of RFC 9112 §7.1."""
    return bool(data) and not data.translate(None, HEXDIG)


def valid_host(value: bytes, port_required: bool = False) -> bool:
    """RFC 9110 §7.2: Host = uri-host [ ":" port ], port = *DIGIT.

    An empty Host is valid: a client sends one when the target URI has no
    authority.  With ``port_required`` this is the authority-form of CONNECT
    (RFC 9112 §3.2.3), where the port must be present and not empty.
    """
    if value[:1] == b"[":
        close = value.find(b"]")
        if close < 0:
            return False
        literal, rest = value[1:close], value[close + 1:]
        if literal[:1] in (b"v", b"V"):
            version, dot, address = literal[1:].partition(b".")
            if not (is_hex(version) and dot and address
                    and not address.translate(None, IPV_FUTURE_CHARS)):
                return False
        elif not literal or literal.translate(None, IPV6_CHARS):
            return False
    else:
        host, colon, port = value.partition(b":")
        rest = colon + port
        if host.translate(None, REG_NAME_CHARS):
            return False
        if b"%" in host and not _valid_percent_escapes(host):
            return False
    if not rest:
        return not port_required
    if rest[:1] != b":":
        return False
    port = rest[1:]
    return port.isdigit() if port_required else not port.translate(None, DIGIT)


def _valid_percent_escapes(data: bytes) -> bool:
    """RFC 3986 §2.1: pct-encoded = "%" HEXDIG HEXDIG."""
    parts = data.split(b"%")
    return all(len(part) >= 2 and is_hex(part[:2]) for part in parts[1:])


# Field names that passed is_token(), mapped to their lowercase form.  Both
# the parser and the writer see the same few names on every message, so one
# dict lookup replaces a translate() and a lower().  Bounded: a client that
# sends many distinct names empties it, and long names are never kept.
FIELD_NAMES: Dict[bytes, bytes] = {}
_FIELD_NAMES_MAX = 512
_FIELD_NAME_MAX_BYTES = 64


def lower_field_name(name: bytes) -> Optional[bytes]:
    """``name`` lowercased if it is a token, else None (also for non-bytes).

    Callers try ``FIELD_NAMES.get(name)`` first; this is the slow path, which
    also remembers the answer.
    """
    if type(name) is not bytes or not is_token(name):
        return None
    lowered = name.lower()
    if len(name) <= _FIELD_NAME_MAX_BYTES:
        if len(FIELD_NAMES) >= _FIELD_NAMES_MAX:
            FIELD_NAMES.clear()
        FIELD_NAMES[name] = lowered
    return lowered


# RFC 9110 §15: the reason phrases of the registered status codes (and a few
# widely used ones registered elsewhere: 103 RFC 8297, 429/431/511 RFC 6585,
# 451 RFC 7725).  A reason phrase is for humans; clients ignore it.
REASON_PHRASES = {
    100: b"Continue",
    101: b"Switching Protocols",
    103: b"Early Hints",
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    203: b"Non-Authoritative Information",
    204: b"No Content",
    205: b"Reset Content",
    206: b"Partial Content",
    207: b"Multi-Status",
    208: b"Already Reported",
    226: b"IM Used",
    300: b"Multiple Choices",
    301: b"Moved Permanently",
    302: b"Found",
    303: b"See Other",
    304: b"Not Modified",
    305: b"Use Proxy",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    402: b"Payment Required",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    406: b"Not Acceptable",
    407: b"Proxy Authentication Required",
    408: b"Request Timeout",
    409: b"Conflict",
    410: b"Gone",
    411: b"Length Required",
    412: b"Precondition Failed",
    413: b"Content Too Large",
    414: b"URI Too Long",
    415: b"Unsupported Media Type",
    416: b"Range Not Satisfiable",
    417: b"Expectation Failed",
    421: b"Misdirected Request",
    422: b"Unprocessable Content",
    423: b"Locked",
    424: b"Failed Dependency",
    425: b"Too Early",
    426: b"Upgrade Required",
    428: b"Precondition Required",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    451: b"Unavailable For Legal Reasons",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
    506: b"Variant Also Negotiates",
    507: b"Insufficient Storage",
    508: b"Loop Detected",
    511: b"Network Authentication Required",
}
