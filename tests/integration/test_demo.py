"""The README's demo app, served by the CLI, seen by http.client and a real browser."""

import http.client
import json
import subprocess
import tempfile

import pytest

from tests.integration.test_websocket_chromium import CHROMIUM_FLAGS


@pytest.fixture
def demo(cli_server):
    return cli_server("selectserver.demo:app", "--port", "0")


def fetch(server, method, path, body=None):
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    conn.request(method, path, body=body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_demo_endpoints(demo):
    response, page = fetch(demo, "GET", "/")
    assert response.status == 200
    assert b"<h1>Hello from selectserver</h1>" in page
    response, document = fetch(demo, "GET", "/json")
    assert json.loads(document)["server"] == "selectserver"
    response, echoed = fetch(demo, "POST", "/echo", body=b"ping" * 1000)
    assert echoed == b"ping" * 1000
    response, streamed = fetch(demo, "GET", "/stream")
    assert response.getheader("transfer-encoding") == "chunked"
    assert streamed.splitlines() == [b"line %d" % i for i in range(10)]
    response, _ = fetch(demo, "GET", "/missing")
    assert response.status == 404


@pytest.mark.requires_program("chromium")
def test_a_headless_browser_renders_the_demo_page(demo):
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            ["chromium", *CHROMIUM_FLAGS, "--user-data-dir=" + profile, "--dump-dom", demo.url + "/"],
            capture_output=True, timeout=60)
    assert b"<h1>Hello from selectserver</h1>" in result.stdout, result.stderr[-2000:]
