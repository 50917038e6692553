"""sockets.py and the master's small helpers, without opening sockets."""

from __future__ import annotations

import os

import pytest

from selectserver.config import Config
from selectserver.master import Reloader, bound_unix_paths, describe_exit
from selectserver.sockets import BindError, activated_sockets, split_host_port


@pytest.mark.parametrize("spec, host_port", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    ("localhost:1", ("localhost", 1)),
    ("[::1]:9000", ("::1", 9000)),
    ("[::]", ("::", 8000)),
    ("::1", ("::1", 8000)),
    ("example.com", ("example.com", 8000)),
])
def test_split_host_port(spec, host_port):
    assert split_host_port(spec, 8000) == host_port


@pytest.mark.parametrize("spec", ["127.0.0.1:http", "[::1]:x"])
def test_split_host_port_refuses_a_bad_port(spec):
    with pytest.raises(BindError, match="not a number"):
        split_host_port(spec, 8000)


def test_no_activation_without_listen_fds():
    assert activated_sockets({}) == []
    assert activated_sockets({"LISTEN_FDS": "", "LISTEN_PID": str(os.getpid())}) == []


def test_bound_unix_paths_are_only_ours():
    config = Config(uds="/run/a.sock", binds=["unix:/run/b.sock", "fd://3", "127.0.0.1:0"])
    assert bound_unix_paths(config) == ["/run/a.sock", "/run/b.sock"]


@pytest.mark.parametrize("code, text", [
    (0, "exit code 0"), (3, "exit code 3"), (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM"),
])
def test_describe_exit(code, text):
    assert describe_exit(code) == text


def test_reloader_sees_changes_but_not_hidden_or_cache_dirs(tmp_path):
    (tmp_path / "app.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / ".venv").mkdir()
    reloader = Reloader([str(tmp_path)])
    assert reloader.changed() is None
    (tmp_path / "__pycache__" / "app.py").write_text("")
    (tmp_path / ".venv" / "lib.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert reloader.changed() is None
    os.utime(tmp_path / "app.py", ns=(1, 1))
    assert reloader.changed().endswith("app.py")
    assert reloader.changed() is None
    (tmp_path / "new.py").write_text("")
    assert reloader.changed().endswith("new.py")
    (tmp_path / "new.py").unlink()
    assert reloader.changed().endswith("new.py")
