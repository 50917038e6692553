"""--trace shows selects and state transitions."""

import http.client


def test_trace_prints_transitions_and_selects(cli_server):
    server = cli_server("tests.apps.asgi_apps:hello", "--port", "0", "--trace")
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"Hello, world!"
    conn.close()
    server.stop()
    log = server.proc.stderr.read().decode()
    assert "idle -> running" in log
    assert "running -> idle" in log
    assert "select(timeout=" in log
