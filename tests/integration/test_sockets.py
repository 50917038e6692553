"""Listeners: Unix sockets, inherited descriptors, socket activation, IPv6, several binds."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys

import pytest

from selectserver.sockets import BindError, bind_tcp, bind_unix, from_fd, reuse_port_copy

from .processes import ServerProcess, app_dir, get, listening_socket  # noqa: F401 (fixtures)

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks")


@pytest.fixture
def servers():
    started = []
    yield started
    for server in started:
        server.kill()


def curl_unix(path, url="http://localhost/"):
    result = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", path, url],
                            capture_output=True, timeout=20)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


@needs_fork
@pytest.mark.requires_program("curl")
def test_unix_socket_with_curl(app_dir, tmp_path, servers):
    path = str(tmp_path / "server.sock")
    server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--uds", path,
                            "--uds-permissions", "600"])
    servers.append(server)
    assert server.url == "unix:%s" % path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert curl_unix(path, "http://localhost/client") == "none"
    assert int(curl_unix(path)) in server.worker_pids()
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    assert not os.path.exists(path)   # our socket file, removed on exit


@needs_fork
def test_inherited_fd(app_dir, servers):
    listener = listening_socket()
    address = listener.getsockname()
    server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--fd", str(listener.fileno())],
                           pass_fds=[listener.fileno()])
    servers.append(server)
    listener.close()
    assert server.address == address
    assert get(address)[0] == 200


# systemd's protocol: the sockets start at fd 3, LISTEN_PID names the
# process they are for, so the launcher sets it after it knows its own pid
# and then becomes the server with exec (same pid).
LAUNCHER = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "selectserver"] + sys.argv[2:])
"""


@needs_fork
def test_systemd_socket_activation(app_dir, servers):
    listener = listening_socket()
    address = listener.getsockname()
    fd = listener.fileno()
    server = ServerProcess([], argv=[sys.executable, "-c", LAUNCHER, str(fd), "procapp:app",
                                     "--app-dir", app_dir], pass_fds=[fd])
    servers.append(server)
    listener.close()
    assert server.address == address   # not the default 127.0.0.1:8000
    assert get(address)[0] == 200
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0


def test_activation_for_another_process_is_ignored():
    from selectserver.sockets import activated_sockets

    environ = {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid() + 1)}
    assert activated_sockets(environ) == []
    assert "LISTEN_FDS" in environ


def test_activation_with_a_bad_count_is_an_error():
    from selectserver.sockets import activated_sockets

    with pytest.raises(BindError):
        activated_sockets({"LISTEN_FDS": "two", "LISTEN_PID": str(os.getpid())})


@needs_fork
@pytest.mark.requires_program("curl")
def test_several_binds(app_dir, tmp_path, servers):
    path = str(tmp_path / "also.sock")
    server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--bind", "127.0.0.1:0",
                            "--bind", "unix:" + path, "--backlog", "64"])
    servers.append(server)
    assert len(server.urls) == 2
    assert get(server.address)[0] == 200
    assert curl_unix(path, "http://localhost/version") == "v1"


def _ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@needs_fork
@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_dual_stack_host(app_dir, servers):
    server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--host", "::", "--port", "0"])
    servers.append(server)
    assert server.url.startswith("http://[::]:")
    port = server.address[1]
    assert get(("::1", port), "/client")[1].startswith("::1 ")
    assert get(("127.0.0.1", port), "/client")[1].startswith("::ffff:127.0.0.1 ")


def test_from_fd_refuses_what_is_not_a_listener():
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(BindError, match="fd %d" % read_end):
            from_fd(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    with socket.socket() as unconnected:
        with pytest.raises(BindError, match="not a listening"):
            from_fd(unconnected.fileno())
        assert unconnected.fileno() >= 0   # left open for its owner


def test_bind_unix_replaces_a_stale_socket_but_not_a_file(tmp_path):
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    bind_unix(path).close()
    regular = tmp_path / "file"
    regular.write_text("keep me")
    with pytest.raises(BindError, match="non-socket"):
        bind_unix(str(regular))
    assert regular.read_text() == "keep me"


def test_reuse_port_copy_shares_the_port():
    first = bind_tcp("127.0.0.1", 0, reuse_port=True)
    second = reuse_port_copy(first, 16)
    try:
        assert second.getsockname() == first.getsockname()
    finally:
        first.close()
        second.close()


def test_bind_failure_names_the_address():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(BindError, match="127.0.0.1:%d" % port):
            bind_tcp("127.0.0.1", port)


def test_a_listener_knows_the_local_address_only_when_bound_to_one(tmp_path):
    from selectserver.worker import _specific_address

    with socket.socket() as one, socket.socket() as every, socket.socket(socket.AF_UNIX) as unix:
        one.bind(("127.0.0.1", 0))
        every.bind(("0.0.0.0", 0))
        unix.bind(str(tmp_path / "s.sock"))
        assert _specific_address(one) == one.getsockname()
        assert _specific_address(every) is None      # each connection asks the kernel
        assert _specific_address(unix) is None
    if _ipv6_loopback():
        with socket.socket(socket.AF_INET6) as six, socket.socket(socket.AF_INET6) as any6:
            six.bind(("::1", 0))
            any6.bind(("::", 0))
            assert _specific_address(six) == ("::1", six.getsockname()[1])
            assert _specific_address(any6) is None
