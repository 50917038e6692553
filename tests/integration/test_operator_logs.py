"""Log files, their reopening on SIGUSR1 (logrotate), the stack of a stuck
worker, and switching to an unprivileged user after binding."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile

import pytest

from .processes import ServerProcess, app_dir, get, wait_until, write_app  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks")


def read(path):
    try:
        with open(path) as file:
            return file.read()
    except FileNotFoundError:
        return ""


def test_log_files_and_sigusr1_reopens_them(app_dir, tmp_path):
    access, errors = str(tmp_path / "access.log"), str(tmp_path / "error.log")
    server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--port", "0", "--workers", "2",
                            "--access-logfile", access, "--error-logfile", errors],
                           wait_listening=False)
    try:
        wait_until(lambda: "Listening on" in read(errors), message="Listening in the error log")
        url = [line for line in read(errors).splitlines() if "Listening on" in line][0].split()[-5]
        host, port = url.split("//")[1].rsplit(":", 1)
        address = (host, int(port))
        assert server.log() == ""                   # nothing left on stderr
        get(address, "/before")
        wait_until(lambda: "/before" in read(access), message="the first access line")
        # The second worker forks only once the first is ready, and one forked
        # after the signal never gets it (it opens the new files as it starts,
        # and says nothing): both must be serving first.  (A worker that gets
        # the signal while it boots: the next test.)
        wait_until(lambda: read(errors).count(" serving") == 2, message="both workers serving")
        # logrotate: move the files away, then SIGUSR1 to the master.
        os.rename(access, access + ".1")
        os.rename(errors, errors + ".1")
        server.send_signal(signal.SIGUSR1)
        wait_until(lambda: "reopening the log files" in read(errors + ".1"), message="the master's line")
        wait_until(lambda: read(errors).count("reopened its log files") == 2,
                   message="both workers' lines in the new error log")
        for _ in range(6):
            get(address, "/after")
        wait_until(lambda: read(access).count("/after") == 6, message="the new access log")
        assert "/after" not in read(access + ".1")
        assert "/before" in read(access + ".1") and "/before" not in read(access)
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "Stopped." in read(errors)
    finally:
        server.kill()


def test_sigusr1_while_a_worker_boots_is_honoured_once_it_serves(tmp_path):
    """logrotate's signal can reach a worker still importing the app (before
    its loop handles SIGUSR1): the worker reopens its files when it is ready."""
    booting, go = tmp_path / "booting", tmp_path / "go"
    (tmp_path / "slowboot.py").write_text(
        "import os, time\n"
        "open(%r, 'w').close()\n"
        "deadline = time.monotonic() + 30\n"
        "while not os.path.exists(%r) and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "from procapp import app\n" % (str(booting), str(go)))
    write_app(str(tmp_path))
    access, errors = str(tmp_path / "access.log"), str(tmp_path / "error.log")
    server = ServerProcess(["slowboot:app", "--app-dir", str(tmp_path), "--port", "0",
                            "--access-logfile", access, "--error-logfile", errors],
                           wait_listening=False)
    try:
        wait_until(booting.exists, message="the worker importing the app")
        os.rename(access, access + ".1")
        os.rename(errors, errors + ".1")
        server.send_signal(signal.SIGUSR1)
        wait_until(lambda: "reopening the log files" in read(errors + ".1"), message="the master's line")
        go.touch()
        wait_until(lambda: "reopened its log files" in read(errors), message="the worker's line")
        assert "Listening on" in read(errors)
        assert "reopened its log files" not in read(errors + ".1")
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()


@pytest.mark.expect_errors(r"^Worker \d+ was stuck for \d+s; its stack follows, then it is killed")
def test_a_stuck_worker_dumps_its_stack_before_it_is_killed(app_dir):
    server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--port", "0",
                            "--timeout-worker", "1"])
    try:
        import socket

        client = socket.create_connection(server.address, timeout=10)
        client.sendall(b"GET /block?60 HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for_log("its stack follows", timeout_s=20)
        # faulthandler's dump: the thread, and the app's line that sleeps.
        server.wait_for_log("procapp.py", timeout_s=10)
        assert "Current thread" in server.log() or "Thread 0x" in server.log()
        server.wait_for_log("serving", count=2, timeout_s=20)   # its replacement
        client.close()
    finally:
        server.kill()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                    reason="needs root and useradd, to create an unprivileged user")
def test_user_and_group_after_binding():
    name = "sstest%d" % os.getpid()
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True, timeout=30)
    # pytest's own directories are root's alone (0700): the app must be
    # where the new user can read it.
    directory = tempfile.mkdtemp(prefix="selectserver-user-")
    try:
        entry = pwd.getpwnam(name)
        os.chmod(directory, 0o755)
        with open(os.path.join(directory, "whoami.py"), "w") as file:
            file.write(
                "import os\n"
                "async def app(scope, receive, send):\n"
                "    if scope['type'] != 'http':\n"
                "        return\n"
                "    body = ('%d %d %s' % (os.getuid(), os.getgid(), os.getgroups())).encode()\n"
                "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
                "    await send({'type': 'http.response.body', 'body': body})\n")
        server = ServerProcess(["whoami:app", "--app-dir", directory, "--port", "0",
                                "--lifespan", "off", "--user", name])
        try:
            status, body = get(server.address)
            uid, gid, groups = body.split(" ", 2)
            assert (int(uid), int(gid)) == (entry.pw_uid, entry.pw_gid)
            assert "0," not in groups and "[0]" not in groups   # root's groups are gone
            # The master stays root: it must be able to bind again on SIGHUP.
            assert os.stat("/proc/%d" % server.pid).st_uid == 0
        finally:
            server.kill()
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def test_user_without_root_is_refused(app_dir):
    if os.geteuid() == 0:
        pytest.skip("as root, any user can be switched to")
    server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--port", "0", "--user", "root"],
                           wait_listening=False)
    assert server.wait() == 2


@pytest.mark.expect_errors("^--user no-such-user-here: no such user$")
def test_unknown_user_is_refused(app_dir):
    server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--port", "0",
                            "--user", "no-such-user-here"], wait_listening=False)
    assert server.wait() == 2
    wait_until(lambda: "--user no-such-user-here: no such user" in server.log(), message="the reason")


def test_chdir_and_umask(app_dir, tmp_path):
    with open(os.path.join(app_dir, "umaskapp.py"), "w") as file:
        file.write(
            "import os\n"
            "async def app(scope, receive, send):\n"
            "    if scope['type'] != 'http':\n"
            "        return\n"
            "    mask = os.umask(0); os.umask(mask)\n"
            "    body = ('%s %o' % (os.getcwd(), mask)).encode()\n"
            "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
            "    await send({'type': 'http.response.body', 'body': body})\n")
    server = ServerProcess(["umaskapp:app", "--chdir", app_dir, "--port", "0", "--umask", "027",
                            "--lifespan", "off"], cwd=str(tmp_path.parent))
    try:
        assert get(server.address)[1] == "%s 27" % os.path.realpath(app_dir)
    finally:
        server.kill()
