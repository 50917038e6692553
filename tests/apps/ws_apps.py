"""One tiny ASGI websocket app per behaviour the websocket tests exercise.

Apps that report what happened on the server side put it in ``EVENTS``
(``Recorder``), which the test reads from its own thread.
"""

import asyncio
import json
import queue


class Recorder:
    """A thread-safe list of what the apps saw, with a blocking ``get``."""

    def __init__(self):
        self._queue = queue.Queue()

    def put(self, item):
        self._queue.put(item)

    def get(self, timeout=10.0):
        return self._queue.get(timeout=timeout)

    def clear(self):
        while not self._queue.empty():
            self._queue.get_nowait()


EVENTS = Recorder()


async def _http_404(send):
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"9")]})
    await send({"type": "http.response.body", "body": b"not found"})


async def echo(scope, receive, send):
    """Accepts (with the first subprotocol offered) and echoes until the client leaves.

    Reports the disconnect message.  The text "close:CODE:REASON" makes it
    close instead; "scope" sends the scope back as JSON.
    """
    if scope["type"] == "http":
        await _http_404(send)
        return
    if scope["type"] != "websocket":
        return
    assert (await receive()) == {"type": "websocket.connect"}
    subprotocols = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None,
                "headers": [(b"x-accepted-by", b"ws_apps.echo")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            EVENTS.put(message)
            return
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            _, code, reason = text.split(":", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            EVENTS.put(await receive())
            return
        if text == "scope":
            doc = {key: value for key, value in scope.items()
                   if key not in ("headers", "raw_path", "query_string", "state", "asgi",
                                  "extensions")}
            doc["query_string"] = scope["query_string"].decode()
            doc["state"] = sorted(scope.get("state", {}))
            doc["extensions"] = sorted(scope["extensions"])
            doc["spec_version"] = scope["asgi"]["spec_version"]
            doc["headers"] = [[n.decode(), v.decode()] for n, v in scope["headers"]]
            await send({"type": "websocket.send", "text": json.dumps(doc)})
            continue
        await send({"type": "websocket.send", "text": text, "bytes": message.get("bytes")})


async def deny(scope, receive, send):
    """Closes before accepting: the client must get 403."""
    await receive()
    await send({"type": "websocket.close"})


async def denial_response(scope, receive, send):
    """Answers the handshake with a plain HTTP response (the ASGI extension)."""
    await receive()
    assert "websocket.http.response" in scope["extensions"]
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"12")]})
    await send({"type": "websocket.http.response.body", "body": b"go ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"away, you"})


async def raise_before_accept(scope, receive, send):
    await receive()
    raise RuntimeError("refusing to think about it")


async def return_before_accept(scope, receive, send):
    await receive()


async def raise_after_accept(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await receive()
    raise RuntimeError("the app fell over")


async def return_after_accept(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "bye"})


async def send_after_disconnect(scope, receive, send):
    """Waits for the client to leave, then sends: must raise an OSError."""
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass
    try:
        await send({"type": "websocket.send", "text": "too late"})
    except OSError as exc:
        EVENTS.put(("raised", type(exc).__name__))
        raise
    EVENTS.put(("did not raise",))


async def flood(scope, receive, send):
    """Sends ``count`` messages of ``size`` bytes as fast as send() lets it,
    reporting progress every 10 messages (for the slow-client test)."""
    await receive()
    await send({"type": "websocket.accept"})
    query = dict(part.split("=") for part in scope["query_string"].decode().split("&"))
    size, count = int(query["size"]), int(query["count"])
    payload = b"f" * size
    for number in range(1, count + 1):
        await send({"type": "websocket.send", "bytes": payload})
        if number % 10 == 0:
            EVENTS.put(("sent", number))
    EVENTS.put(("done", count))
    await receive()


class LazyReceiver:
    """Accepts, then waits for ``start`` (set from the test's thread) before receiving."""

    def __init__(self):
        self.loop = None
        self.start = None

    def begin(self):
        self.loop.call_soon_threadsafe(self.start.set)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return
        self.loop = asyncio.get_running_loop()
        self.start = asyncio.Event()
        await receive()
        await send({"type": "websocket.accept"})
        EVENTS.put("accepted")
        await self.start.wait()
        received = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                EVENTS.put(("received", received))
                return
            received += 1
            if message.get("text") == "last":
                EVENTS.put(("received", received))
                await send({"type": "websocket.send", "text": "got %d" % received})


async def lifespan_state(scope, receive, send):
    """Puts a value in the lifespan state; echoes like ``echo`` otherwise."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["answer"] = 42
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await echo(scope, receive, send)


async def plain_http(scope, receive, send):
    """Answers every scope type as HTTP would (for --ws none)."""
    if scope["type"] == "lifespan":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": scope["type"].encode()[:4]})

