"""Booting as an operator sees it: what the log says, in which order, and
what a failed boot prints (one line first, the app's frames only)."""

from __future__ import annotations

import os
import sys

import pytest

import selectserver
from selectserver import master
from selectserver.config import Config, ConfigError
from selectserver.worker import ServerThread

from .processes import ServerProcess, app_dir, get, start, wait_until, write_app  # noqa: F401

forks = pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks")


def write(directory, name, text):
    with open(os.path.join(str(directory), name), "w") as file:
        file.write(text)


def failed_boot(directory, *args):
    server = ServerProcess([*args, "--app-dir", str(directory), "--port", "0"], wait_listening=False)
    code = server.wait()
    # The reader thread closes the pipe once it has read it all.
    wait_until(lambda: server.proc.stderr.closed, message="the end of the log")
    return code, server.log()


@pytest.mark.expect_errors("^cannot import 'brokenapp:app': ModuleNotFoundError",
                           r"^Traceback \(the app's frames\)", r"^Worker \d+ failed to boot")
@forks
def test_import_error_in_the_app_is_one_line_and_its_own_frames(tmp_path):
    write(tmp_path, "brokenapp.py", "import os\nimport brokenhelper\napp = None\n")
    write(tmp_path, "brokenhelper.py", "x = 1\nimport no_such_dependency\n")
    code, log = failed_boot(tmp_path, "brokenapp:app")
    assert code == 3
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert "cannot import 'brokenapp:app': ModuleNotFoundError: No module named " \
           "'no_such_dependency'" in errors[0]
    assert "importlib" not in log and os.sep + "selectserver" + os.sep not in log
    assert 'brokenapp.py", line 2' in log and 'brokenhelper.py", line 2' in log
    assert "Listening" not in log
    # master line, the reason, 2 frames (2 lines each) under a heading,
    # the master's verdict, Stopped.
    assert len(log.splitlines()) <= 10, log


@pytest.mark.expect_errors("^cannot import 'brokenapp:app': ModuleNotFoundError",
                           r"^Traceback \(the app's frames\)", r"^Worker \d+ failed to boot")
@forks
def test_import_error_with_several_workers_is_told_once(tmp_path):
    write(tmp_path, "brokenapp.py", "import no_such_dependency\napp = None\n")
    code, log = failed_boot(tmp_path, "brokenapp:app", "--workers", "4")
    assert code == 3
    assert log.count("cannot import 'brokenapp:app'") == 1, log
    assert log.count("failed to boot") == 1, log


@pytest.mark.expect_errors("^cannot import '(nosuchmodule|emptyapp):app'", r"^Worker \d+ failed to boot")
@forks
def test_missing_module_and_attribute(tmp_path):
    write(tmp_path, "emptyapp.py", "")
    code, log = failed_boot(tmp_path, "nosuchmodule:app")
    assert code == 3 and "cannot import 'nosuchmodule:app': no module named 'nosuchmodule'" in log
    code, log = failed_boot(tmp_path, "emptyapp:app")
    assert code == 3 and "module 'emptyapp' has no attribute 'app'" in log


@pytest.mark.expect_errors("^cannot import 'synapp:app': SyntaxError", r'^File ".*synapp\.py", line 1',
                           r"^Worker \d+ failed to boot")
@forks
def test_syntax_error_names_file_and_line(tmp_path):
    write(tmp_path, "synapp.py", "app = (\n")
    code, log = failed_boot(tmp_path, "synapp:app")
    assert code == 3
    assert "SyntaxError" in log and "synapp.py, line 1)" in log and "importlib" not in log


@pytest.mark.expect_errors("^cannot import 'raisesapp:app': RuntimeError: no config",
                           r"^Traceback \(the app's frames\)")
@forks
def test_preload_import_error_exits_3_from_the_master(tmp_path):
    write(tmp_path, "raisesapp.py", "raise RuntimeError('no config')\n")
    code, log = failed_boot(tmp_path, "raisesapp:app", "--preload")
    assert code == 3
    assert "cannot import 'raisesapp:app': RuntimeError: no config" in log
    assert "Worker" not in log


@pytest.mark.expect_errors("^cannot import 'nosuchmodule_for_thread:app'")
def test_server_thread_keeps_the_reason():
    server = ServerThread("nosuchmodule_for_thread:app")
    with pytest.raises(Exception):
        server.start()
    assert server.worker.exit_code == 3
    assert server.worker.boot_error == (
        "cannot import 'nosuchmodule_for_thread:app': no module named 'nosuchmodule_for_thread'")


@forks
def test_the_log_says_who_and_in_which_order(start):
    server = start("--workers", "2")
    log = server.log()
    lines = log.splitlines()
    assert any("selectserver %s, master process %d" % (selectserver.__version__, server.pid) in line
               for line in lines), log
    serving = [i for i, line in enumerate(lines) if "serving" in line]
    listening = [i for i, line in enumerate(lines) if "Listening on" in line]
    assert serving and listening and serving[0] < listening[0], log
    assert len(listening) == 1


@forks
def test_lifespan_unsupported_is_logged_once_per_server(tmp_path):
    write(tmp_path, "nolifespan.py", (
        "async def app(scope, receive, send):\n"
        "    assert scope['type'] == 'http'\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'ok'})\n"))
    server = ServerProcess(["nolifespan:app", "--app-dir", str(tmp_path), "--port", "0",
                            "--workers", "3"])
    try:
        server.wait_for_log("serving", count=3)
        assert get(server.address)[0] == 200
        assert server.log().count("appears unsupported") == 1, server.log()
    finally:
        server.kill()


@pytest.mark.parametrize("options, expected", [
    (dict(reload=True), "reload=True needs the app as an import string"),
    (dict(preload=True, reload=True, app_string=True), "--reload cannot work with --preload"),
])
@pytest.mark.expect_errors("^reload=True needs the app as an import string",
                           "^--reload cannot work with --preload")
def test_reload_needs_an_import_string(options, expected):
    async def app(scope, receive, send):
        pass

    target = "procapp:app" if options.pop("app_string", False) else app
    with pytest.raises(ConfigError, match=expected):
        master.check_options(Config(app=target, **options))
    assert selectserver.run(target, port=0, **options) == master.EXIT_USAGE


@forks
def test_preload_imports_the_app_in_the_master(tmp_path):
    write(tmp_path, "preloaded.py", (
        "import os\n"
        "IMPORTED_IN = os.getpid()\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    body = str(IMPORTED_IN).encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': body})\n"))
    for preload, expected_master in ((["--preload"], True), ([], False)):
        server = ServerProcess(["preloaded:app", "--app-dir", str(tmp_path), "--port", "0",
                                "--lifespan", "off", *preload])
        try:
            status, body = get(server.address)
            assert status == 200
            assert (int(body) == server.pid) is expected_master
        finally:
            server.kill()


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": b"hi"})


def raw_head(server):
    import socket

    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk
            data += chunk
    return data.split(b"\r\n\r\n")[0].lower()


def test_default_headers_and_switching_off_date_and_server():
    with ServerThread(hello, lifespan="off", headers=["X-Frame-Options: DENY", "x-team:ops"]) as server:
        head = raw_head(server)
        assert b"\r\nx-frame-options: deny" in head and b"\r\nx-team: ops" in head
        assert b"\r\ndate: " in head and b"\r\nserver: selectserver" in head
    with ServerThread(hello, lifespan="off", date_header=False, server_header=False) as server:
        head = raw_head(server)
        assert b"\r\ndate:" not in head and b"\r\nserver:" not in head and b"x-app: 1" in head
