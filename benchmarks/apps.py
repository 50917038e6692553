"""The scenario apps, served unchanged by every server in the benchmark.

Each app does the least its scenario needs, so that the numbers measure the server: no routing,
no framework, responses built once at import. ASGI apps answer the lifespan protocol (every peer
speaks it) and reject other scope types; WSGI apps follow PEP 3333 to the letter.

    scenario              ASGI                WSGI
    A/B/D/F hello         asgi_hello          wsgi_hello
    C 1 MiB response      asgi_mib            wsgi_mib
    E POST echo           asgi_echo           wsgi_echo
    G 50 KB static file   asgi_static         wsgi_static
    1 GiB upload          asgi_upload         wsgi_upload
    1 GiB download        asgi_download       wsgi_download
    websocket echo        asgi_websocket_echo -

Upload and download read the size from the query string (`?bytes=N`), so that the runner can
choose it. The static file is created next to this module's output folder on first import.
"""
from __future__ import annotations

import asyncio
import os
import time

HELLO_BODY = b"Hello, world!"
MIB_BODY = b"x" * (1 << 20)
STATIC_SIZE = 50_000
STATIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "static-50k.bin")
DOWNLOAD_CHUNK = 256 * 1024
_DOWNLOAD_CHUNK_BODY = b"d" * DOWNLOAD_CHUNK
FILE_CHUNK = 64 * 1024


def _ensure_static_file() -> None:
    """Write the 50 KB file once; a temporary name and a rename keep concurrent imports safe."""
    if os.path.exists(STATIC_PATH) and os.path.getsize(STATIC_PATH) == STATIC_SIZE:
        return
    os.makedirs(os.path.dirname(STATIC_PATH), exist_ok=True)
    temporary = "%s.%d.tmp" % (STATIC_PATH, os.getpid())
    with open(temporary, "wb") as f:
        f.write(bytes(i % 251 for i in range(STATIC_SIZE)))
    os.replace(temporary, STATIC_PATH)


_ensure_static_file()


def _query_bytes(query_string: bytes | str, default: int) -> int:
    """The `bytes=N` parameter of a query string, or `default`."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    for part in query_string.split("&"):
        name, _, value = part.partition("=")
        if name == "bytes" and value.isdigit():
            return int(value)
    return default


# ---------------------------------------------------------------- ASGI

def _asgi_headers(content_type: bytes, length: int) -> list:
    return [(b"content-type", content_type), (b"content-length", str(length).encode())]


HELLO_HEADERS = _asgi_headers(b"text/plain", len(HELLO_BODY))
MIB_HEADERS = _asgi_headers(b"application/octet-stream", len(MIB_BODY))
STATIC_HEADERS = _asgi_headers(b"application/octet-stream", STATIC_SIZE)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _asgi_http(handler):
    """Wrap an http handler into an ASGI 3 app that also answers lifespan."""
    async def app(scope, receive, send):
        if scope["type"] == "http":
            await handler(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)
        else:
            raise RuntimeError("unsupported scope type %r" % scope["type"])
    app.__name__ = handler.__name__
    app.__doc__ = handler.__doc__
    return app


@_asgi_http
async def asgi_hello(scope, receive, send):
    """13 bytes of text: scenarios A, B, D and the scaling runs."""
    await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
    await send({"type": "http.response.body", "body": HELLO_BODY})


# Scenario O: each request waits this long (a database call, say), so
# requests really are in flight together and --limit-concurrency matters.
WORK_S = 0.01


@_asgi_http
async def asgi_work(scope, receive, send):
    """13 bytes of text after `asyncio.sleep(WORK_S)`: scenario O (overload)."""
    await asyncio.sleep(WORK_S)
    await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
    await send({"type": "http.response.body", "body": HELLO_BODY})


@_asgi_http
async def asgi_mib(scope, receive, send):
    """1 MiB in one body message: scenario C."""
    await send({"type": "http.response.start", "status": 200, "headers": MIB_HEADERS})
    await send({"type": "http.response.body", "body": MIB_BODY})


@_asgi_http
async def asgi_echo(scope, receive, send):
    """The request body, returned whole: scenario E."""
    chunks = []
    more_body = True
    while more_body:
        message = await receive()
        chunks.append(message.get("body", b""))
        more_body = message.get("more_body", False)
    body = b"".join(chunks)
    await send({"type": "http.response.start", "status": 200,
                "headers": _asgi_headers(b"application/octet-stream", len(body))})
    await send({"type": "http.response.body", "body": body})


@_asgi_http
async def asgi_static(scope, receive, send):
    """The 50 KB file: by `http.response.pathsend` when offered, else read and streamed."""
    await send({"type": "http.response.start", "status": 200, "headers": STATIC_HEADERS})
    if "http.response.pathsend" in (scope.get("extensions") or {}):
        await send({"type": "http.response.pathsend", "path": STATIC_PATH})
        return
    with open(STATIC_PATH, "rb") as f:
        chunk = f.read(FILE_CHUNK)
        while chunk:
            following = f.read(FILE_CHUNK)
            await send({"type": "http.response.body", "body": chunk,
                        "more_body": bool(following)})
            chunk = following


@_asgi_http
async def asgi_upload(scope, receive, send):
    """Reads and drops the request body; answers with the byte count."""
    received = 0
    more_body = True
    while more_body:
        message = await receive()
        received += len(message.get("body", b""))
        more_body = message.get("more_body", False)
    body = str(received).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": _asgi_headers(b"text/plain", len(body))})
    await send({"type": "http.response.body", "body": body})


@_asgi_http
async def asgi_download(scope, receive, send):
    """Streams `?bytes=N` bytes (default 1 GiB) in 256 KiB body messages."""
    remaining = _query_bytes(scope.get("query_string", b""), 1 << 30)
    await send({"type": "http.response.start", "status": 200,
                "headers": _asgi_headers(b"application/octet-stream", remaining)})
    while remaining > DOWNLOAD_CHUNK:
        await send({"type": "http.response.body", "body": _DOWNLOAD_CHUNK_BODY,
                    "more_body": True})
        remaining -= DOWNLOAD_CHUNK
    await send({"type": "http.response.body", "body": _DOWNLOAD_CHUNK_BODY[:remaining]})


async def asgi_websocket_echo(scope, receive, send):
    """Accepts a websocket and echoes every message until the client disconnects."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "websocket":
        await asgi_hello(scope, receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message.get("text") or ""})
        elif message["type"] == "websocket.disconnect":
            return


# ---------------------------------------------------------------- WSGI

def _wsgi_headers(content_type: str, length: int) -> list:
    return [("Content-Type", content_type), ("Content-Length", str(length))]


WSGI_HELLO_HEADERS = _wsgi_headers("text/plain", len(HELLO_BODY))
WSGI_MIB_HEADERS = _wsgi_headers("application/octet-stream", len(MIB_BODY))
WSGI_STATIC_HEADERS = _wsgi_headers("application/octet-stream", STATIC_SIZE)


def wsgi_hello(environ, start_response):
    """13 bytes of text: scenarios F, B, D and the scaling runs."""
    start_response("200 OK", list(WSGI_HELLO_HEADERS))
    return [HELLO_BODY]


def wsgi_work(environ, start_response):
    """13 bytes of text after `time.sleep(WORK_S)` on the thread: scenario O (overload)."""
    time.sleep(WORK_S)
    start_response("200 OK", list(WSGI_HELLO_HEADERS))
    return [HELLO_BODY]


def wsgi_mib(environ, start_response):
    """1 MiB in one body item: scenario C."""
    start_response("200 OK", list(WSGI_MIB_HEADERS))
    return [MIB_BODY]


def _read_input(environ):
    """The request body in chunks; wsgi.input is only read up to CONTENT_LENGTH (PEP 3333)."""
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    while remaining > 0:
        chunk = stream.read(min(remaining, FILE_CHUNK))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


def wsgi_echo(environ, start_response):
    """The request body, returned whole: scenario E."""
    body = b"".join(_read_input(environ))
    start_response("200 OK", _wsgi_headers("application/octet-stream", len(body)))
    return [body]


def wsgi_static(environ, start_response):
    """The 50 KB file, by `wsgi.file_wrapper` when offered, else read in chunks."""
    start_response("200 OK", list(WSGI_STATIC_HEADERS))
    f = open(STATIC_PATH, "rb")
    file_wrapper = environ.get("wsgi.file_wrapper")
    if file_wrapper is not None:
        return file_wrapper(f, FILE_CHUNK)
    return _iterate_file(f)


def _iterate_file(f):
    with f:
        chunk = f.read(FILE_CHUNK)
        while chunk:
            yield chunk
            chunk = f.read(FILE_CHUNK)


def wsgi_upload(environ, start_response):
    """Reads and drops the request body; answers with the byte count."""
    received = 0
    for chunk in _read_input(environ):
        received += len(chunk)
    body = str(received).encode()
    start_response("200 OK", _wsgi_headers("text/plain", len(body)))
    return [body]


def wsgi_download(environ, start_response):
    """Streams `?bytes=N` bytes (default 1 GiB) in 256 KiB items."""
    size = _query_bytes(environ.get("QUERY_STRING", ""), 1 << 30)
    start_response("200 OK", _wsgi_headers("application/octet-stream", size))
    return _stream(size)


def _stream(remaining: int):
    while remaining > DOWNLOAD_CHUNK:
        yield _DOWNLOAD_CHUNK_BODY
        remaining -= DOWNLOAD_CHUNK
    yield _DOWNLOAD_CHUNK_BODY[:remaining]
