"""The environ: a request as PEP 3333 describes it to the app.

Text is "bytes as latin-1 str", as PEP 3333 asks: the app gets exactly the
bytes the client sent, and decodes them as it sees fit.  This module reads
the parser's ``Request``, the connection's addresses, and what a trusted
proxy says of the client (``proxy``); it knows nothing of threads or of
the response.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple
from urllib.parse import unquote_to_bytes

from ..connection import Connection
from ..http11.events import Request, split_target
from ..proxy import FIELDS as PROXY_FIELDS, TrustedProxies, apply_to_environ

# Method tokens are decoded once, not per request.
_METHODS = {m.encode(): m for m in
            ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")}

_PROTOCOLS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1"}

# Header names become environ keys once; a client cannot grow this past the cap.
_ENVIRON_KEYS: Dict[bytes, Optional[str]] = {
    b"content-type": "CONTENT_TYPE",
    b"content-length": None,   # CONTENT_LENGTH comes from the parser's framing
}
_ENVIRON_KEYS_MAX = 512


# Request-targets seen before, per SCRIPT_NAME, as (PATH_INFO, QUERY_STRING,
# REQUEST_URI): clients ask for the same few paths again and again, and the
# split, the percent-decoding and three decodes cost 2.5k instructions a
# request; a lookup costs a tenth of that (benchmarks/RESULTS.md, "WSGI
# round two").  Cleared when full, so a client cannot grow it.
_TARGETS: Dict[Tuple[bytes, str], Tuple[str, str, str]] = {}
_TARGETS_MAX = 256
_TARGET_MAX_BYTES = 256

# Field lines seen before, as (environ key or None, text): the parser hands
# over the same (name, value) pair for a line it has seen (its field-line
# cache), so a repeated field costs one lookup instead of a name lookup
# and a decode.  None: the field does not become an environ key.
_FIELDS: Dict[Tuple[bytes, bytes], Tuple[Optional[str], str]] = {}
_FIELDS_MAX = 256
_FIELD_MAX_BYTES = 256


def build_environ(conn: Connection, request: Request, base: Dict[str, Any],
                  script_name: str) -> Dict[str, Any]:
    """The PEP 3333 environ for ``request``, without ``wsgi.input``.

    ``base`` holds the keys that do not change between requests.  Text is
    "bytes as latin-1 str" as PEP 3333 says; PATH_INFO is percent-decoded
    first, and loses ``script_name`` when it starts with it.
    """
    environ = _from_head(request, base, script_name)
    _add_connection(environ, conn)
    return environ


# region: heads-seen-before
class Environs:
    """``build_environ()`` for one app, with the part that comes from a
    request's head (the request line and the fields) remembered per head.

    Clients send the same head again and again (a keep-alive client asking
    for the same resource, polling, health checks, a load test): a head seen
    before costs a key, a lookup and a copy instead of some 16 dictionary
    stores and the lookups behind them, 720 -> 430 ns (timeit; CPython 3.11;
    benchmarks/RESULTS.md, "the WSGI environ and cycle, cheaper", issue 14).
    A head not seen before costs the key and the lookup more (about 120 ns).
    The copy is what the app gets: the template itself is never handed out.
    Bounded: small heads only, at most ``_HEADS_MAX``, cleared when full.

    With ``trusted`` proxies, a head that holds a proxy field has it applied
    (``proxy.apply_to_environ``) for a client that is one.  Whether a head
    holds one is known with the head: the usual head, without, costs a
    test of a flag instead of a view of the environ and a set operation
    (350 instructions; benchmarks/RESULTS.md, "WSGI, leaner", issue 14).
    """

    __slots__ = ("base", "script_name", "trusted", "_heads")

    def __init__(self, base: Dict[str, Any], script_name: str,
                 trusted: Optional[TrustedProxies] = None) -> None:
        self.base = base
        self.script_name = script_name
        self.trusted = trusted
        # head -> (its part of the environ, whether it holds a proxy field)
        self._heads: Dict[Tuple[Any, ...], Tuple[Dict[str, Any], bool]] = {}

    def build(self, conn: Connection, request: Request) -> Dict[str, Any]:
        """As ``build_environ(conn, request, base, script_name)``."""
        # The parser hands over the same (name, value) tuple for a field line
        # it has seen (its field-line cache): comparing keys is mostly identity.
        head = (request.target, request.method, request.http_version, tuple(request.headers))
        known = self._heads.get(head)
        if known is None:
            known = self._remember(head, request)
        template, proxied = known
        environ = template.copy()
        # A connection's keys are the same for each of its requests:
        # remembered per (scheme, local address, client address), they cost
        # a lookup and one update instead of a call, five stores and two
        # str() calls: 84 -> 51 bytecodes with build() (benchmarks/RESULTS.md,
        # "WSGI, leaner", issue 14).  The key holds the connection's own
        # address tuples: the lookup compares them by identity.
        keys = _CONNECTIONS.get((conn.server.scheme, conn.local, conn.client))
        if keys is not None:
            environ.update(keys)
        else:
            _add_connection(environ, conn)
        if proxied and self.trusted.trusts(conn.client):
            apply_to_environ(environ, request.headers, self.trusted)
        return environ

    def _remember(self, head: Tuple[Any, ...], request: Request
                  ) -> Tuple[Dict[str, Any], bool]:
        template = _from_head(request, self.base, self.script_name)
        # Room for the request: a dict's copy keeps the original's table
        # (CPython), and a template of 17 keys has room for 4 more, and the
        # 6 that every request adds (the connection's keys and wsgi.input)
        # made each copy grow a new table and move every key into it.  Adding those keys to the
        # template and taking them out again leaves it that room, which
        # its copies keep: 238 -> 197 ns for the copy, the connection's
        # keys and wsgi.input (timeit), WSGI hello -590 instructions per
        # request (callgrind, CPython 3.11; benchmarks/RESULTS.md, "the
        # hand-off, leaner", issue 14).  The keys and their order are
        # unchanged.
        room = [key for key in _ADDED_PER_REQUEST if key not in template]
        for key in room:
            template[key] = None
        for key in room:
            del template[key]
        known = (template, self.trusted is not None
                 and not template.keys().isdisjoint(PROXY_FIELD_KEYS))
        if (len(request.target) <= _TARGET_MAX_BYTES and len(request.headers) <= _HEAD_FIELDS_MAX
                and all(len(value) <= _FIELD_MAX_BYTES for _, value in request.headers)):
            heads = self._heads
            if len(heads) >= _HEADS_MAX:
                heads.clear()
            heads[head] = known
        return known
# endregion: heads-seen-before


_HEADS_MAX = 64
_HEAD_FIELDS_MAX = 32

# The connections whose keys are remembered, cleared when full: a worker
# serving more keep-alive connections than this at once pays the first
# way, plus a lookup, for some of their requests.
_CONNECTIONS: Dict[Tuple[str, Any, Any], Dict[str, str]] = {}
_CONNECTIONS_MAX = 512


def _from_head(request: Request, base: Dict[str, Any], script_name: str) -> Dict[str, Any]:
    """``base`` and what the request's head says: its line and its fields."""
    environ = base.copy()
    target = request.target
    paths = _TARGETS.get((target, script_name))
    if paths is None:
        paths = _paths_of(target, script_name)
    environ["PATH_INFO"], environ["QUERY_STRING"], uri = paths
    environ["RAW_URI"] = environ["REQUEST_URI"] = uri
    environ["REQUEST_METHOD"] = _METHODS.get(request.method) or request.method.decode("latin-1")
    environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(request.http_version) or "HTTP/" + request.http_version
    if request.content_length is not None and not request.chunked:
        environ["CONTENT_LENGTH"] = str(request.content_length)
    fields = _FIELDS
    for field in request.headers:
        known = fields.get(field)
        if known is None:
            known = _field_of(field)
        key, text = known
        if key is None:
            continue
        if key in environ:
            # RFC 9110 §5.3: repeated fields are one comma-separated list;
            # cookies are the exception (RFC 6265 §5.4 separates them with "; ").
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text
    return environ


def _add_connection(environ: Dict[str, Any], conn: Connection) -> None:
    """What the connection says: the scheme and both addresses; remembered
    for the connection's next requests (``Environs.build``)."""
    scheme = conn.server.scheme
    environ["wsgi.url_scheme"] = scheme
    local = conn.local
    client = conn.client
    if local is not None:
        environ["SERVER_NAME"] = local[0]
        environ["SERVER_PORT"] = str(local[1])
    else:
        _server_from_host(environ)   # from this request's Host: not remembered
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
        if local is not None:
            connections = _CONNECTIONS
            if len(connections) >= _CONNECTIONS_MAX:
                connections.clear()
            connections[(scheme, local, client)] = {
                key: environ[key] for key in _CONNECTION_KEYS}


_CONNECTION_KEYS = ("wsgi.url_scheme", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR",
                    "REMOTE_PORT")
# What a request's environ gets after the copy of its head's template.
_ADDED_PER_REQUEST = _CONNECTION_KEYS + ("wsgi.input",)


def _paths_of(target: bytes, script_name: str) -> Tuple[str, str, str]:
    """(PATH_INFO, QUERY_STRING, REQUEST_URI) of ``target``, remembered."""
    raw_path, query = split_target(target)
    if b"%" in raw_path:
        raw_path = unquote_to_bytes(raw_path)
    path = raw_path.decode("latin-1")
    if script_name and path.startswith(script_name) and (
            len(path) == len(script_name) or path[len(script_name)] == "/"):
        path = path[len(script_name):]
    paths = (path, query.decode("latin-1"), target.decode("latin-1"))
    if len(target) <= _TARGET_MAX_BYTES:
        if len(_TARGETS) >= _TARGETS_MAX:
            _TARGETS.clear()
        _TARGETS[(target, script_name)] = paths
    return paths


def environ_key(name: bytes) -> str:
    """The environ key of a field name (PEP 3333, after CGI): HTTP_X_USER for x-user."""
    return "HTTP_" + name.decode("latin-1").upper().replace("-", "_")


# The proxy fields (proxy.resolve) as build_environ names them: a head that
# holds none (the usual one) is not read again for them.
PROXY_FIELD_KEYS = frozenset(environ_key(name) for name in PROXY_FIELDS)


def _field_of(field: Tuple[bytes, bytes]) -> Tuple[Optional[str], str]:
    """(environ key or None, text) of one field line, remembered."""
    name, value = field
    keys = _ENVIRON_KEYS
    key = keys.get(name, "")
    if key == "":
        if b"_" in name:
            # "x_user" would reach the app as HTTP_X_USER, like "x-user":
            # a client could spoof a header a proxy vouches for.
            key = None
        else:
            key = environ_key(name)
            if len(keys) < _ENVIRON_KEYS_MAX:
                keys[name] = key
    known = (key, value.decode("latin-1"))
    if len(value) <= _FIELD_MAX_BYTES:
        if len(_FIELDS) >= _FIELDS_MAX:
            _FIELDS.clear()
        _FIELDS[field] = known
    return known


def _server_from_host(environ: Dict[str, Any]) -> None:
    """SERVER_NAME/SERVER_PORT for a Unix socket: from Host, as PEP 3333 rebuilds URLs."""
    host = environ.get("HTTP_HOST", "")
    default_port = "443" if environ["wsgi.url_scheme"] == "https" else "80"
    name, colon, port = host.rpartition(":")
    if not colon or "]" in port:
        name, port = host, default_port
    environ["SERVER_NAME"] = name or "localhost"
    environ["SERVER_PORT"] = port or default_port


def script_name_of(root_path: str) -> str:
    """``--root-path`` as SCRIPT_NAME: latin-1 text of its UTF-8, no trailing slash."""
    return root_path.rstrip("/").encode("utf-8").decode("latin-1")
