"""Starlette and FastAPI websocket endpoints, served for real, driven by
the websockets library: subprotocols, JSON, close codes both ways."""

import json

import pytest

from tests.conftest import requires

starlette = requires("starlette")
fastapi = requires("fastapi")
websockets = requires("websockets")

from contextlib import asynccontextmanager  # noqa: E402
from queue import Queue  # noqa: E402

from fastapi import FastAPI, WebSocket, WebSocketDisconnect  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.endpoints import WebSocketEndpoint  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402

from tests.integration.test_websocket import close_received, connect  # noqa: E402


def url(server, path):
    host, port = server.address[:2]
    return "ws://%s:%d%s" % (host, port, path)


def make_starlette(seen):
    @asynccontextmanager
    async def lifespan(app):
        yield {"room": "lobby"}

    async def chat(websocket):
        await websocket.accept(subprotocol="chat.v2")
        room = websocket.state.room
        try:
            while True:
                text = await websocket.receive_text()
                if text == "bye":
                    await websocket.close(code=4100, reason="see you")
                    return
                await websocket.send_text("%s: %s" % (room, text))
        except starlette.websockets.WebSocketDisconnect as exc:
            seen.put(("chat", exc.code, exc.reason))

    class Counter(WebSocketEndpoint):
        encoding = "json"

        async def on_receive(self, websocket, data):
            await websocket.send_json({"count": data["count"] + 1})

        async def on_disconnect(self, websocket, close_code):
            seen.put(("counter", close_code))

    async def refuse(websocket):
        await websocket.close(code=1008)

    async def binary(websocket):
        await websocket.accept()
        async for data in websocket.iter_bytes():
            await websocket.send_bytes(data[::-1])

    return Starlette(lifespan=lifespan, routes=[
        WebSocketRoute("/chat", chat),
        WebSocketRoute("/counter", Counter),
        WebSocketRoute("/refuse", refuse),
        WebSocketRoute("/binary", binary),
    ])


def make_fastapi(seen):
    app = FastAPI()

    @app.websocket("/items/{item_id}")
    async def items(websocket: WebSocket, item_id: int, q: str = ""):
        await websocket.accept()
        try:
            while True:
                data = await websocket.receive_json()
                await websocket.send_json({"item_id": item_id, "q": q, "echo": data})
        except WebSocketDisconnect as exc:
            seen.put(("items", exc.code, exc.reason))

    @app.websocket("/fail")
    async def fail(websocket: WebSocket):
        await websocket.accept()
        await websocket.receive_text()
        raise RuntimeError("endpoint failed")

    return app


@pytest.fixture
def seen():
    return Queue()


def test_starlette_subprotocol_state_and_close_codes(serve, seen):
    server = serve(make_starlette(seen))
    with connect(url(server, "/chat"), subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        ws.send("hello")
        assert ws.recv() == "lobby: hello"
        ws.close(4001, "client leaving")
    assert seen.get(timeout=5) == ("chat", 4001, "client leaving")

    with connect(url(server, "/chat"), subprotocols=["chat.v2"]) as ws:
        ws.send("bye")
        closed = close_received(ws)
    assert closed == (4100, "see you")


def test_starlette_json_endpoint(serve, seen):
    server = serve(make_starlette(seen))
    with connect(url(server, "/counter")) as ws:
        for count in range(3):
            ws.send('{"count": %d}' % count)
            assert json.loads(ws.recv()) == {"count": count + 1}
    assert seen.get(timeout=5) == ("counter", 1000)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_starlette_bytes(serve, seen, compression):
    server = serve(make_starlette(seen))
    with connect(url(server, "/binary"), compression=compression) as ws:
        ws.send(b"\x00\x01\x02" * 1000)
        assert ws.recv() == b"\x02\x01\x00" * 1000


def test_fastapi_json_with_path_and_query(serve, seen):
    server = serve(make_fastapi(seen))
    with connect(url(server, "/items/7?q=blue")) as ws:
        ws.send(json.dumps({"n": [1, 2, 3]}))
        assert json.loads(ws.recv()) == {"item_id": 7, "q": "blue", "echo": {"n": [1, 2, 3]}}
        ws.close(4200, "done here")
    assert seen.get(timeout=5) == ("items", 4200, "done here")


@pytest.mark.parametrize("make_app, path", [
    (make_starlette, "/refuse"),                 # close before accept
    (make_starlette, "/nowhere"),                # no such route
    (make_fastapi, "/items/not-a-number"),       # path parameter fails validation
])
def test_refused_handshakes_are_403(serve, seen, make_app, path):
    server = serve(make_app(seen))
    with pytest.raises(InvalidStatus) as refused:
        connect(url(server, path))
    assert refused.value.response.status_code == 403


@pytest.mark.expect_errors(r"^Exception in ASGI application \(websocket /fail\)")
def test_fastapi_endpoint_exception_closes_with_1011(serve, seen):
    server = serve(make_fastapi(seen))
    with connect(url(server, "/fail")) as ws:
        ws.send("go")
        closed = close_received(ws)
    assert closed[0] == 1011
