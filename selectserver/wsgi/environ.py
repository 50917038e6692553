"""The environ: a request as PEP 3333 describes it to the app.

Text is "bytes as latin-1 str", as PEP 3333 asks: the app gets exactly the
bytes the client sent, and decodes them as it sees fit.  This module reads
the parser's ``Request`` and the connection's addresses; it knows nothing
of threads or of the response.
"""

from __future__ import annotations

from typing import Any, Dict, Optional
from urllib.parse import unquote_to_bytes

from ..connection import Connection
from ..http11.events import Request, split_target

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


def build_environ(conn: Connection, request: Request, base: Dict[str, Any],
                  script_name: str) -> Dict[str, Any]:
    """The PEP 3333 environ for ``request``, without ``wsgi.input``.

    ``base`` holds the keys that do not change between requests.  Text is
    "bytes as latin-1 str" as PEP 3333 says; PATH_INFO is percent-decoded
    first, and loses ``script_name`` when it starts with it.
    """
    environ = base.copy()
    raw_path, query = split_target(request.target)
    if b"%" in raw_path:
        raw_path = unquote_to_bytes(raw_path)
    path = raw_path.decode("latin-1")
    if script_name and path.startswith(script_name) and (
            len(path) == len(script_name) or path[len(script_name)] == "/"):
        path = path[len(script_name):]
    environ["REQUEST_METHOD"] = _METHODS.get(request.method) or request.method.decode("latin-1")
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["RAW_URI"] = environ["REQUEST_URI"] = request.target.decode("latin-1")
    environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(request.http_version) or "HTTP/" + request.http_version
    environ["wsgi.url_scheme"] = conn.server.scheme
    local = conn.local
    if local is not None:
        environ["SERVER_NAME"] = local[0]
        environ["SERVER_PORT"] = str(local[1])
    client = conn.client
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    if request.content_length is not None and not request.chunked:
        environ["CONTENT_LENGTH"] = str(request.content_length)
    keys = _ENVIRON_KEYS
    for name, value in request.headers:
        key = keys.get(name, "")
        if key == "":
            if b"_" in name:
                # "x_user" would reach the app as HTTP_X_USER, like "x-user":
                # a client could spoof a header a proxy vouches for.
                continue
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            if len(keys) < _ENVIRON_KEYS_MAX:
                keys[name] = key
        elif key is None:
            continue
        text = value.decode("latin-1")
        if key in environ:
            # RFC 9110 §5.3: repeated fields are one comma-separated list;
            # cookies are the exception (RFC 6265 §5.4 separates them with "; ").
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text
    if local is None:
        _server_from_host(environ)
    return environ


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
