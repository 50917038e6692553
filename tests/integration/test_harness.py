"""What every integration test stands on: ServerThread says why a server did
not start, and a server that failed or did not stop fails its caller; the
errors a server process logs reach the test's ``server_errors``."""

import socket
import threading

import pytest

from selectserver import ServerThread
from selectserver.worker import AppLoadError, ServerStartError
from tests.integration.conftest import read_response
from tests.integration.processes import ServerProcess


@pytest.mark.expect_errors("^cannot import 'no_such_module:app': no module named 'no_such_module'$")
def test_start_says_why_the_app_did_not_load():
    with pytest.raises(ServerStartError, match="no module named 'no_such_module'") as failed:
        ServerThread("no_such_module:app").start()
    assert isinstance(failed.value.__cause__, AppLoadError)


@pytest.mark.expect_errors("^the app factory .* failed: ValueError: no configuration$",
                           r"^Traceback \(the app's frames\)")
def test_start_says_why_the_factory_failed():
    def factory():
        raise ValueError("no configuration")

    with pytest.raises(ServerStartError, match="no configuration"):
        ServerThread(factory, factory=True).start()


def test_a_factory_is_called():
    async def hello(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    with ServerThread(lambda: hello, factory=True) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[0] == 204


EXITING = threading.Event()


async def exits(scope, receive, send):
    if scope["type"] == "http":
        EXITING.set()
        raise SystemExit(7)


@pytest.mark.expect_errors(r"^Exception in ASGI application \(GET /\)\n(.*\n)*SystemExit: 7")
def test_stop_re_raises_what_ended_the_server():
    EXITING.clear()
    server = ServerThread(exits).start()
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert EXITING.wait(10)
        # SystemExit from an app ends the loop, as it ends asyncio.run().
        with pytest.raises(SystemExit):
            server.stop()
    server.stop()   # reported once


def test_stop_reports_a_thread_that_did_not_stop(serve):
    entered, release = threading.Event(), threading.Event()

    async def blocks_the_loop(scope, receive, send):
        if scope["type"] != "http":
            return
        entered.set()
        release.wait(30)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    server = serve(blocks_the_loop)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert entered.wait(10)
        with pytest.raises(RuntimeError, match="did not stop within"):
            server.stop(timeout_s=0.1)
        release.set()
        assert read_response(sock)[0] == 204
    server.stop()


@pytest.mark.expect_errors("^cannot import 'no_such_module:app'", r"^Worker \d+ failed to boot")
def test_the_error_lines_of_a_server_process_are_seen(server_errors, tmp_path):
    server = ServerProcess(["no_such_module:app", "--app-dir", str(tmp_path), "--port", "0"],
                           wait_listening=False)
    assert server.wait() == 3
    # What the fixture does after each test: the log format is the one the
    # server writes, whatever it is today.
    server_errors.add_log("the server", server.log())
    assert server_errors.matching("^cannot import 'no_such_module:app': no module named")
    assert server_errors.matching(r"^Worker \d+ failed to boot")
