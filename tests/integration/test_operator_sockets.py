"""What an operator meets at the sockets: the Unix socket's mode and who may
take its path, and TLS files that cannot be used."""

from __future__ import annotations

import os
import socket
import stat
import subprocess

import pytest

from selectserver.config import Config
from selectserver.sockets import BindError, TLSConfigError, bind_unix, create_ssl_context

from .processes import ServerProcess, wait_until, write_app


def test_unix_socket_is_0666_whatever_the_umask(tmp_path):
    path = str(tmp_path / "s.sock")
    old = os.umask(0o077)
    try:
        sock = bind_unix(path, permissions=Config(app="a:b").uds_permissions)
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    finally:
        sock.close()


def test_uds_permissions_narrow_it(tmp_path):
    path = str(tmp_path / "s.sock")
    sock = bind_unix(path, permissions=0o660)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    finally:
        sock.close()


def test_a_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()                      # the file stays, nobody listens
    sock = bind_unix(path)
    try:
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(path)
        probe.close()
    finally:
        sock.close()


def test_a_live_socket_is_never_replaced(tmp_path):
    path = str(tmp_path / "s.sock")
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen(1)
    try:
        with pytest.raises(BindError, match="another server is listening there"):
            bind_unix(path)
        # Still the first server's.
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(path)
        probe.close()
    finally:
        live.close()


@pytest.mark.expect_errors("^cannot listen on unix:.*: another server is listening there")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks")
def test_second_server_on_the_same_path_exits_4_and_leaves_the_first(tmp_path):
    write_app(str(tmp_path))
    path = str(tmp_path / "app.sock")
    first = ServerProcess(["procapp:app", "--app-dir", str(tmp_path), "--uds", path])
    try:
        second = ServerProcess(["procapp:app", "--app-dir", str(tmp_path), "--uds", path],
                               wait_listening=False)
        assert second.wait() == 4
        wait_until(lambda: second.log(), message="the second server's reason")
        lines = [line for line in second.log().splitlines() if "unix:" in line]
        assert len(lines) == 1 and "another server is listening there" in lines[0], second.log()
        # The first one still serves on its path.
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            client.connect(path)
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert client.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        first.kill()


# -- TLS ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if not _has_openssl():
        pytest.skip("needs the openssl program")
    directory = tmp_path_factory.mktemp("tls")
    files = {name: str(directory / (name + ".pem")) for name in ("cert", "key", "encrypted", "other_key")}
    for key, cert in (("key", "cert"), ("other_key", None)):
        command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", files[key],
                   "-out", files[cert] if cert else str(directory / "unused.pem"),
                   "-days", "2", "-subj", "/CN=localhost"]
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    subprocess.run(["openssl", "pkey", "-in", files["key"], "-out", files["encrypted"], "-aes256",
                    "-passout", "pass:sesame"], check=True, capture_output=True, timeout=30)
    return files


def _has_openssl():
    from tests.conftest import find_program

    return find_program("openssl") is not None


def tls_error(**options):
    with pytest.raises(TLSConfigError) as error:
        create_ssl_context(Config(app="a:b", **options))
    return str(error.value)


def test_encrypted_key_without_password_fails_at_once(certificate):
    message = tls_error(ssl_certfile=certificate["cert"], ssl_keyfile=certificate["encrypted"])
    assert message == ("--ssl-keyfile %s is encrypted: give its password with "
                       "--ssl-keyfile-password" % certificate["encrypted"])


def test_wrong_password(certificate):
    message = tls_error(ssl_certfile=certificate["cert"], ssl_keyfile=certificate["encrypted"],
                        ssl_keyfile_password="wrong")
    assert message.startswith("--ssl-keyfile %s: cannot decrypt it" % certificate["encrypted"])


def test_missing_files_are_named_with_their_flag(certificate, tmp_path):
    missing = str(tmp_path / "nope.pem")
    assert tls_error(ssl_certfile=missing, ssl_keyfile=certificate["key"]).startswith(
        "--ssl-certfile %s: No such file" % missing)
    assert tls_error(ssl_certfile=certificate["cert"], ssl_keyfile=missing).startswith(
        "--ssl-keyfile %s: No such file" % missing)
    assert tls_error(ssl_certfile=certificate["cert"], ssl_keyfile=certificate["key"],
                     ssl_ca_certs=missing).startswith("--ssl-ca-certs %s" % missing)


def test_swapped_or_foreign_files(certificate):
    assert tls_error(ssl_certfile=certificate["key"], ssl_keyfile=certificate["cert"]) == (
        "--ssl-certfile %s: no PEM certificate in it" % certificate["key"])
    assert tls_error(ssl_certfile=certificate["cert"]) == (
        "--ssl-certfile %s: no PEM private key in it" % certificate["cert"])
    assert tls_error(ssl_certfile=certificate["cert"], ssl_keyfile=certificate["other_key"]) == (
        "--ssl-keyfile %s is not the key of --ssl-certfile %s" % (
            certificate["other_key"], certificate["cert"]))


@pytest.mark.expect_errors("^--ssl-keyfile .* is encrypted: give its password with --ssl-keyfile-password")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks")
def test_cli_tls_error_is_one_line_and_exit_2(certificate, tmp_path):
    write_app(str(tmp_path))
    server = ServerProcess(["procapp:app", "--app-dir", str(tmp_path), "--port", "0",
                            "--ssl-certfile", certificate["cert"],
                            "--ssl-keyfile", certificate["encrypted"]], wait_listening=False)
    assert server.wait() == 2
    wait_until(lambda: "--ssl-keyfile-password" in server.log(), message="the reason")
    lines = server.log().splitlines()
    assert len(lines) == 2 and "master process" in lines[0], server.log()
