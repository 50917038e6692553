"""Real clients: curl, ab, wrk and httpx against a real server."""

import asyncio
import re
import subprocess

import pytest

from tests.apps import asgi_apps
from tests.conftest import requires
from tests.integration.conftest import run_client

httpx = requires("httpx")


def run(*command, timeout=60):
    return subprocess.run(command, capture_output=True, timeout=timeout, check=False)


@pytest.mark.requires_program("curl")
def test_curl_verbose_shows_our_framing(serve):
    server = serve(asgi_apps.chunked_hello)
    result = run("curl", "-sv", "--http1.1", server.url + "/")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, world!"
    log = result.stderr.decode()
    assert "< HTTP/1.1 200 OK" in log
    assert re.search(r"< transfer-encoding: chunked", log, re.I)
    assert re.search(r"< server: selectserver", log, re.I)


@pytest.mark.requires_program("curl")
def test_curl_keeps_the_connection_for_several_urls(serve):
    server = serve(asgi_apps.hello)
    result = run("curl", "-sv", "--http1.1", server.url + "/a", server.url + "/b")
    assert result.stdout == b"Hello, world!" * 2
    assert "Re-using existing connection" in result.stderr.decode() or \
        "Reusing existing" in result.stderr.decode()


@pytest.mark.requires_program("curl")
def test_curl_upload_with_expect_continue(serve, tmp_path):
    server = serve(asgi_apps.count_body)
    payload = tmp_path / "payload"
    payload.write_bytes(b"p" * 3_000_000)
    result = run("curl", "-sv", "--http1.1", "-H", "Expect: 100-continue",
                 "--data-binary", "@%s" % payload, server.url + "/")
    assert result.stdout == b"3000000"
    assert "HTTP/1.1 100 Continue" in result.stderr.decode()


@pytest.mark.requires_program("ab")
@pytest.mark.parametrize("keep_alive", [False, True])
def test_ab_has_no_failures(serve, keep_alive):
    server = serve(asgi_apps.hello)
    args = ["ab", "-n", "2000", "-c", "20"] + (["-k"] if keep_alive else []) + [server.url + "/"]
    result = run(*args)
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    assert re.search(r"Complete requests:\s+2000", output)
    assert re.search(r"Failed requests:\s+0", output)
    assert "Non-2xx" not in output
    if keep_alive:
        assert re.search(r"Keep-Alive requests:\s+2000", output)


@pytest.mark.requires_program("wrk")
def test_wrk_short_run_has_no_errors(serve):
    server = serve(asgi_apps.hello)
    result = run("wrk", "-t1", "-c32", "-d2s", server.url + "/")
    output = result.stdout.decode()
    assert result.returncode == 0, output
    assert "Socket errors" not in output
    assert "Non-2xx" not in output
    assert int(re.search(r"(\d+) requests in", output).group(1)) > 0


def test_httpx_sync_and_async(serve):
    server = serve(asgi_apps.echo)
    with httpx.Client(base_url=server.url) as client:
        for i in range(3):
            response = client.post("/x", content=b"n%d" % i)
            assert response.content == b"n%d" % i

    async def main():
        async with httpx.AsyncClient(base_url=server.url) as client:
            responses = await asyncio.gather(*[client.post("/y", content=b"%d" % i) for i in range(20)])
        return [r.content for r in responses]

    assert run_client(main()) == [b"%d" % i for i in range(20)]


def test_httpx_streaming_upload(serve):
    server = serve(asgi_apps.count_body)

    def chunks():
        for _ in range(64):
            yield b"z" * 65536

    with httpx.Client(base_url=server.url) as client:
        response = client.post("/", content=chunks())
    assert response.content == str(64 * 65536).encode()


async def httpx_app(scope, receive, send):
    """An app that calls another local server with httpx.AsyncClient."""
    port = int(scope["query_string"].decode().split("=")[1])
    async with httpx.AsyncClient() as client:
        upstream = await client.get("http://127.0.0.1:%d/" % port)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"upstream said: " + upstream.content})


def test_httpx_async_client_inside_an_app(serve):
    upstream = serve(asgi_apps.hello)
    server = serve(httpx_app)
    response = httpx.get(server.url + "/?port=%d" % upstream.address[1])
    assert response.text == "upstream said: Hello, world!"
