"""Starlette and FastAPI apps, served for real."""

import asyncio
import json
import threading

import pytest

from tests.conftest import requires

httpx = requires("httpx")
starlette = requires("starlette")
fastapi = requires("fastapi")

from contextlib import asynccontextmanager  # noqa: E402

from fastapi import FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.background import BackgroundTask  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.middleware.base import BaseHTTPMiddleware  # noqa: E402
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

BACKGROUND_DONE = threading.Event()


def make_starlette():
    @asynccontextmanager
    async def lifespan(app):
        yield {"greeting": "hi from lifespan"}

    async def home(request):
        return PlainTextResponse("home")

    async def state(request):
        return JSONResponse({"greeting": request.state.greeting})

    async def echo(request):
        body = await request.body()
        return PlainTextResponse(body, media_type="application/octet-stream")

    async def stream(request):
        async def numbers():
            for i in range(5):
                yield "%d\n" % i
                await asyncio.sleep(0.001)
        return StreamingResponse(numbers(), media_type="text/plain")

    async def background(request):
        return PlainTextResponse("queued", background=BackgroundTask(BACKGROUND_DONE.set))

    async def boom(request):
        raise RuntimeError("starlette endpoint failed")

    class AddHeader(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            response = await call_next(request)
            response.headers["x-middleware"] = "yes"
            return response

    return Starlette(
        routes=[Route("/", home), Route("/state", state), Route("/echo", echo, methods=["POST"]),
                Route("/stream", stream), Route("/background", background), Route("/boom", boom)],
        middleware=[Middleware(AddHeader)],
        lifespan=lifespan,
    )


def make_fastapi():
    app = FastAPI()

    class Item(BaseModel):
        name: str
        price: float

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: str = ""):
        return {"item_id": item_id, "q": q}

    @app.post("/items")
    async def create_item(item: Item):
        return {"name": item.name, "price_with_tax": round(item.price * 1.2, 2)}

    @app.get("/sync")
    def sync_endpoint():
        # FastAPI runs this on a worker thread (anyio.to_thread).
        return {"thread": threading.current_thread().name != "selectserver"}

    @app.get("/missing")
    async def missing():
        raise HTTPException(status_code=404, detail="nope")

    @app.get("/timeout")
    async def with_timeout():
        try:
            await asyncio.wait_for(asyncio.sleep(10), timeout=0.01)
        except asyncio.TimeoutError:
            return {"timed_out": True}

    return app


@pytest.fixture
def starlette_server(serve):
    return serve(make_starlette(), lifespan="on")


def test_starlette_routes_middleware_and_lifespan_state(starlette_server):
    with httpx.Client(base_url=starlette_server.url) as client:
        response = client.get("/")
        assert (response.status_code, response.text) == (200, "home")
        assert response.headers["x-middleware"] == "yes"
        assert client.get("/state").json() == {"greeting": "hi from lifespan"}
        assert client.post("/echo", content=b"abc" * 1000).content == b"abc" * 1000
        assert client.get("/stream").text == "0\n1\n2\n3\n4\n"


@pytest.mark.expect_errors(r"^Exception in ASGI application \(GET /boom\)")
def test_starlette_background_task_and_errors(starlette_server):
    BACKGROUND_DONE.clear()
    with httpx.Client(base_url=starlette_server.url) as client:
        assert client.get("/background").text == "queued"
        assert BACKGROUND_DONE.wait(5)
        assert client.get("/boom").status_code == 500
        assert client.get("/").status_code == 200


def test_fastapi(serve):
    server = serve(make_fastapi())
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/items/5", params={"q": "x"}).json() == {"item_id": 5, "q": "x"}
        assert client.post("/items", json={"name": "a", "price": 10}).json() == \
            {"name": "a", "price_with_tax": 12.0}
        assert client.post("/items", json={"name": "a"}).status_code == 422
        assert client.get("/sync").json() == {"thread": True}
        assert client.get("/missing").status_code == 404
        assert client.get("/timeout").json() == {"timed_out": True}
        assert client.get("/docs").status_code == 200
        assert json.loads(client.get("/openapi.json").text)["openapi"].startswith("3.")
