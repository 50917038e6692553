"""A real nginx in front of the server, over a Unix socket and over TCP.

nginx listens on a socket this test binds (port 0) and hands over through
the ``NGINX`` environment variable, nginx's own way of inheriting
listeners, so no port is guessed.  The client connects from 127.0.0.2 (a
loopback address too), so the address the app sees tells whether it came
from ``X-Forwarded-For`` (127.0.0.2) or from the proxy's own peer address
(127.0.0.1).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess

import pytest

from .processes import ServerProcess, listening_socket, stop_process, wait_until, write_app

pytestmark = [pytest.mark.requires_program("nginx"),
              pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks")]

CLIENT_ADDRESS = "127.0.0.2"

NGINX_CONF = """
%(user)s
error_log %(dir)s/error.log info;
pid %(dir)s/nginx.pid;
worker_processes 1;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            proxy_pass %(upstream)s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
}
"""


def _can_use_client_address():
    try:
        with socket.socket() as probe:
            probe.bind((CLIENT_ADDRESS, 0))
        return True
    except OSError:
        return False


class Nginx:
    def __init__(self, program, directory, upstream, user=None):
        self.directory = directory
        self.listener = listening_socket()
        self.address = self.listener.getsockname()
        conf = os.path.join(directory, "nginx.conf")
        with open(conf, "w") as file:
            file.write(NGINX_CONF % {
                # As root, nginx would switch its workers to "nobody", who may not
                # reach our temporary directory.
                "user": user or ("user root;" if os.geteuid() == 0 else ""),
                "dir": directory, "port": self.address[1], "upstream": upstream})
        fd = self.listener.fileno()
        self.proc = subprocess.Popen(
            [program, "-e", os.path.join(directory, "error.log"), "-p", directory, "-c", conf,
             "-g", "daemon off; master_process on;"],
            pass_fds=[fd], env=dict(os.environ, NGINX="%d;" % fd),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.listener.close()   # nginx has its own copy now

    def get(self, path, headers=None):
        connection = http.client.HTTPConnection(*self.address, timeout=10,
                                                source_address=(CLIENT_ADDRESS, 0))
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def wait_ready(self):
        def answers():
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited:\n" + self.error_log())
            try:
                return self.get("/")[0] in (200, 502)
            except OSError:
                return False
        wait_until(answers, timeout_s=10, interval_s=0.05, message="nginx answering")

    def error_log(self):
        try:
            with open(os.path.join(self.directory, "error.log")) as file:
                return file.read()
        except OSError:
            return ""

    def stop(self):
        stop_process(self.proc, signal.SIGQUIT, timeout_s=10)
        try:   # its workers, should the master have left them behind
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def behind_nginx(tmp_path, program):
    nginx_program = program("nginx")
    if not _can_use_client_address():
        pytest.skip("cannot use %s as a client address here" % CLIENT_ADDRESS)
    write_app(str(tmp_path))
    started = []

    def start(server_args, upstream):
        server = ServerProcess(["procapp:app", "--app-dir", str(tmp_path), *server_args])
        started.append(server)
        directory = tmp_path / ("nginx%d" % len(started))
        directory.mkdir()
        nginx = Nginx(nginx_program, str(directory), upstream(server))
        started.append(nginx)
        nginx.wait_ready()
        return server, nginx

    yield start
    for thing in reversed(started):
        thing.stop() if isinstance(thing, Nginx) else thing.kill()


def test_over_unix_socket(behind_nginx, tmp_path):
    path = str(tmp_path / "app.sock")
    server, nginx = behind_nginx(["--uds", path], lambda server: "http://unix:%s:" % path)
    assert nginx.get("/client") == (200, "%s 0" % CLIENT_ADDRESS)
    assert nginx.get("/scheme") == (200, "https")


def test_over_tcp_with_x_forwarded_for(behind_nginx):
    server, nginx = behind_nginx(["--port", "0"], lambda server: server.url)
    assert nginx.get("/client") == (200, "%s 0" % CLIENT_ADDRESS)
    # A client's own X-Forwarded-For is kept by nginx, in front of the address it saw:
    # the app takes the rightmost address that is not a trusted proxy.
    status, body = nginx.get("/client", {"X-Forwarded-For": "198.51.100.66"})
    assert body == "%s 0" % CLIENT_ADDRESS
    for _ in range(5):   # kept-alive upstream connections
        assert nginx.get("/scheme") == (200, "https")


def test_over_tcp_untrusted_proxy(behind_nginx):
    server, nginx = behind_nginx(["--port", "0", "--forwarded-allow-ips", "10.9.9.9"],
                                 lambda server: server.url)
    status, body = nginx.get("/client")
    assert status == 200 and body.startswith("127.0.0.1 ")
    assert nginx.get("/scheme") == (200, "http")


@pytest.mark.skipif(os.geteuid() != 0, reason="nginx switches its workers to another user only as root")
def test_unix_socket_reachable_by_a_proxy_running_as_another_user(program, tmp_path):
    """The socket is 0666 whatever the umask: nginx's workers, running as
    nobody, connect to it without --uds-permissions."""
    import grp
    import pwd
    import shutil
    import tempfile

    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    # pytest's directories are root's alone; nobody must reach the socket.
    directory = tempfile.mkdtemp(prefix="selectserver-uds-")
    os.chmod(directory, 0o755)
    write_app(str(tmp_path))
    path = os.path.join(directory, "app.sock")
    server = ServerProcess(["procapp:app", "--app-dir", str(tmp_path), "--uds", path])
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    nginx = None
    try:
        nginx = Nginx(program("nginx"), str(nginx_dir), "http://unix:%s:" % path,
                      user="user nobody %s;" % group)
        def answers():
            try:
                return nginx.get("/version")
            except OSError:
                return None
        assert wait_until(answers, timeout_s=10, interval_s=0.05, message="nginx") == (200, "v1"), \
            nginx.error_log()
    finally:
        if nginx is not None:
            nginx.stop()
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)
