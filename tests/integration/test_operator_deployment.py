"""The recipes of docs/deployment.md, run as written there: the systemd
unit's ExecStart with a socket handed over as systemd does, and the
Containerfile's ENV and CMD without a container runtime."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys

import pytest

from .processes import REPO, ServerProcess, get, listening_socket, wait_until, write_app

pytestmark = [pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks"),
              pytest.mark.skipif(shutil.which("make") is None, reason="needs make")]

DEPLOYMENT = os.path.join(REPO, "docs", "deployment.md")

# What systemd does for a socket unit: the socket as descriptor 3, its count
# and our PID in the environment, then exec (the PID stays the same).
SYSTEMD_EXEC = """
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])
"""


def doc_block(language_marker):
    """The first fenced block of docs/deployment.md whose first line has ``language_marker``."""
    with open(DEPLOYMENT) as file:
        text = file.read()
    for block in re.findall(r"```\w*\n(.*?)```", text, re.S):
        if language_marker in block.splitlines()[0]:
            return block
    raise AssertionError("no block starting with %r in docs/deployment.md" % language_marker)


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory):
    target = str(tmp_path_factory.mktemp("zipapp") / "selectserver.pyz")
    result = subprocess.run(["make", "-s", "zipapp", "ZIPAPP=" + target, "PYTHON=" + sys.executable],
                            cwd=REPO, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return target


def test_systemd_recipe(zipapp, tmp_path):
    unit = doc_block("myapp.service")
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    argv = [{"/usr/bin/python3": sys.executable, "/opt/selectserver.pyz": zipapp}.get(word, word)
            for word in shlex.split(exec_start)]
    write_app(str(tmp_path), name="myapp.py")          # WorkingDirectory holds the app
    sock = listening_socket()
    server = ServerProcess([], argv=[sys.executable, "-c", SYSTEMD_EXEC, str(sock.fileno()), *argv],
                           cwd=str(tmp_path), pass_fds=[sock.fileno()])
    try:
        assert server.address == sock.getsockname()
        assert get(server.address, "/version") == (200, "v1")
        server.send_signal(signal.SIGTERM)              # systemctl stop, KillMode=mixed
        assert server.wait() == 0
    finally:
        sock.close()
        server.kill()


def test_container_recipe(zipapp, tmp_path):
    containerfile = doc_block("Containerfile")
    env = {}
    for line in containerfile.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in shlex.split(line[4:]))
        if line.startswith("CMD "):
            cmd = json.loads(line[4:])
    app_dir = tmp_path / "srv-app"
    app_dir.mkdir()
    write_app(str(app_dir), name="main.py")
    replacements = {"python3": sys.executable, "/opt/selectserver.pyz": zipapp,
                    "/srv/app": str(app_dir), "0.0.0.0": "127.0.0.1", "8000": "0"}
    argv = [replacements.get(word, word) for word in cmd]
    server = ServerProcess([], argv=argv, cwd=str(app_dir), env=env)
    try:
        assert get(server.address, "/version") == (200, "v1")
        wait_until(lambda: len(server.worker_pids()) == int(env["WEB_CONCURRENCY"]),
                   message="WEB_CONCURRENCY workers")
        server.send_signal(signal.SIGTERM)              # the runtime's stop
        assert server.wait() == 0
    finally:
        server.kill()
