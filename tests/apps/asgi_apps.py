"""One tiny ASGI app per behaviour the integration tests exercise."""

import asyncio
import json
import threading


async def _respond(send, status=200, body=b"", headers=None, content_type=b"text/plain"):
    headers = list(headers or [(b"content-type", content_type)])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive):
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def chunked_hello(scope, receive, send):
    """No content-length: the server must frame it (chunked on 1.1)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"Hello, ", "more_body": True})
    await send({"type": "http.response.body", "body": b"world!"})


async def echo(scope, receive, send):
    """Echoes the body; reports method, path and query in headers."""
    if scope["type"] != "http":
        return
    body = await _read_body(receive)
    if body is None:
        return
    await _respond(send, 200, body, headers=[
        (b"content-length", str(len(body)).encode()),
        (b"x-method", scope["method"].encode()),
        (b"x-path", scope["path"].encode("utf-8", "surrogateescape")),
        (b"x-query", scope["query_string"]),
    ])


async def scope_json(scope, receive, send):
    """The scope (minus non-JSON bits) as JSON."""
    if scope["type"] != "http":
        return
    await _read_body(receive)
    doc = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string",
                                                      "state", "extensions", "asgi")}
    doc["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
    doc["raw_path"] = scope["raw_path"].decode("latin-1")
    doc["query_string"] = scope["query_string"].decode("latin-1")
    doc["asgi"] = scope["asgi"]
    doc["state"] = dict(scope.get("state", {}))
    doc["current_task"] = asyncio.current_task() is not None
    await _respond(send, 200, json.dumps(doc).encode(), content_type=b"application/json")


async def stream(scope, receive, send):
    """Ten chunks with a loop turn between them."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(10):
        await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})


async def big(scope, receive, send):
    """A response of ?n bytes (default 4 MiB), sent in 64 KiB pieces."""
    query = scope["query_string"].decode()
    size = int(query[2:]) if query.startswith("n=") else 4 * 1024 * 1024
    piece = b"x" * 65536
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(size).encode())]})
    sent = 0
    while sent < size:
        part = piece[: min(len(piece), size - sent)]
        sent += len(part)
        await send({"type": "http.response.body", "body": part, "more_body": sent < size})


async def count_body(scope, receive, send):
    """Reads the body without keeping it; answers with its length."""
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        total += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await _respond(send, 200, str(total).encode())


async def ignore_body(scope, receive, send):
    """Answers without reading the request body."""
    await _respond(send, 200, b"ignored", headers=[(b"content-length", b"7")])


async def raises_before_start(scope, receive, send):
    if scope["type"] != "http":
        return
    raise RuntimeError("app failed before the response")


async def raises_after_start(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("app failed mid-body")


async def returns_without_response(scope, receive, send):
    return None


async def returns_mid_body(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
    await send({"type": "http.response.body", "body": b"short", "more_body": True})


async def bad_header(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"x-evil", b"a\r\nset-cookie: injected=1")]})
    await send({"type": "http.response.body", "body": b"never sent"})


async def sleepy(scope, receive, send):
    """asyncio.sleep, a task and run_in_executor inside a request."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.01)
    task = asyncio.ensure_future(asyncio.sleep(0, result=b"task"))
    from_thread = await loop.run_in_executor(None, lambda: b"thread")
    fut = loop.create_future()
    loop.call_later(0.001, fut.set_result, b"later")
    body = b" ".join([await task, from_thread, await fut])
    await _respond(send, 200, body)


async def wait_disconnect(scope, receive, send):
    """Streams until http.disconnect arrives; records it."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"started\n", "more_body": True})
    message = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()
    EVENTS.append("disconnected")
    try:
        await send({"type": "http.response.body", "body": b"too late", "more_body": True})
    except OSError:
        EVENTS.append("send raised OSError")
    DISCONNECT_SEEN.set()


EVENTS = []
DISCONNECT_SEEN = threading.Event()


def lifespan_app(state_value="ready"):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    scope["state"]["value"] = state_value
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await scope_json(scope, receive, send)
    return app


async def failing_lifespan(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await hello(scope, receive, send)


async def outbound(scope, receive, send):
    """Opens a connection to another local server (?port=N) and relays its answer."""
    port = int(scope["query_string"].decode().split("=")[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    await _respond(send, 200, data.split(b"\r\n\r\n", 1)[1])
