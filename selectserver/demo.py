"""The README's demo: ``python3 -m selectserver selectserver.demo:app``.

A plain ASGI 3 app with no framework, so it also shows what ASGI is:

* ``GET /``        an HTML page
* ``GET /json``    a JSON document
* ``POST /echo``   the request body, sent back
* ``GET /stream``  ten lines, one every 0.1 s (a streamed, chunked response)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, Dict

PAGE = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>selectserver</title></head>
<body>
<h1>Hello from selectserver</h1>
<p>An HTTP/1.1 server for ASGI and WSGI apps, written with the standard library only.</p>
<ul>
<li><a href="/json">/json</a>: a JSON document</li>
<li><a href="/stream">/stream</a>: a streamed response</li>
<li><code>curl -d hello http://127.0.0.1:8000/echo</code>: an echo</li>
</ul>
</body>
</html>
"""


async def app(scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/" and method in ("GET", "HEAD"):
        await respond(send, 200, b"text/html; charset=utf-8", PAGE)
    elif path == "/json":
        document = {"server": "selectserver", "path": path, "client": scope["client"],
                    "http_version": scope["http_version"]}
        await respond(send, 200, b"application/json", json.dumps(document).encode())
    elif path == "/echo" and method == "POST":
        body = b""
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more_body = message.get("more_body", False)
        await respond(send, 200, b"application/octet-stream", body)
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        for number in range(10):
            await send({"type": "http.response.body", "body": b"line %d\n" % number,
                        "more_body": True})
            await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b""})
    else:
        await respond(send, 404, b"text/plain; charset=utf-8", b"Not Found\n")


async def respond(send: Callable, status: int, content_type: bytes, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
