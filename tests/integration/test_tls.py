"""TLS with the stdlib ssl module: certificates made by the openssl CLI, verified by clients."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

from selectserver import ServerThread

from .processes import ServerProcess, write_app

pytestmark = pytest.mark.requires_program("openssl", "curl")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1/localhost, with its key also encrypted."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key, encrypted_key = (str(directory / name) for name in ("cert.pem", "key.pem", "key-encrypted.pem"))
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=30)
    subprocess.run(["openssl", "pkey", "-in", key, "-out", encrypted_key, "-aes256",
                    "-passout", "pass:sesame"], check=True, capture_output=True, timeout=30)
    return {"cert": cert, "key": key, "encrypted_key": encrypted_key}


async def echo_scheme(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/big":
        body = b"x" * (4 * 1024 * 1024)
    else:
        body = scope["scheme"].encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def client_context(certificate):
    return ssl.create_default_context(cafile=certificate["cert"])


def https_get(address, context, path="/", connection=None):
    connection = connection or http.client.HTTPSConnection(address[0], address[1], context=context, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read()


def test_verified_https_with_keep_alive(serve, certificate):
    server = serve(echo_scheme, ssl_certfile=certificate["cert"], ssl_keyfile=certificate["key"])
    connection = http.client.HTTPSConnection(*server.address, context=client_context(certificate), timeout=10)
    for _ in range(3):
        assert https_get(server.address, None, connection=connection) == (200, b"https")
    connection.close()


def test_large_response_over_tls(serve, certificate):
    server = serve(echo_scheme, ssl_certfile=certificate["cert"], ssl_keyfile=certificate["key"])
    status, body = https_get(server.address, client_context(certificate), "/big")
    assert status == 200 and len(body) == 4 * 1024 * 1024


def test_stalled_handshake_does_not_block_others(serve, certificate):
    server = serve(echo_scheme, ssl_certfile=certificate["cert"], ssl_keyfile=certificate["key"])
    silent = socket.create_connection(server.address)
    partial = socket.create_connection(server.address)
    partial.sendall(b"\x16\x03\x01\x02\x00\x01")   # the start of a ClientHello, then nothing
    try:
        assert https_get(server.address, client_context(certificate)) == (200, b"https")
    finally:
        silent.close()
        partial.close()


def test_a_handshake_that_stops_halfway_is_closed_at_its_deadline(serve, certificate):
    # A real ClientHello, made in memory; half of it is sent, then nothing.
    outgoing = ssl.MemoryBIO()
    hello = client_context(certificate).wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        hello.do_handshake()
    client_hello = outgoing.read()
    server = serve(echo_scheme, ssl_certfile=certificate["cert"], ssl_keyfile=certificate["key"],
                   timeout_request_head_s=1)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(client_hello[:len(client_hello) // 2])
        started = time.monotonic()
        try:
            assert sock.recv(1024) == b""
        except ConnectionResetError:
            pass
        seconds = time.monotonic() - started
    # The head deadline covers the handshake; the worker looks once a second.
    assert 0.8 <= seconds <= 4.0


def test_plain_http_to_tls_port_is_closed(serve, certificate):
    server = serve(echo_scheme, ssl_certfile=certificate["cert"], ssl_keyfile=certificate["key"])
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = sock.recv(1024)
        except ConnectionResetError:   # closed with our bytes unread
            answer = b""
        assert not answer.startswith(b"HTTP/1.1 200")
    assert https_get(server.address, client_context(certificate)) == (200, b"https")


def test_untrusted_client_fails_and_server_goes_on(serve, certificate):
    server = serve(echo_scheme, ssl_certfile=certificate["cert"], ssl_keyfile=certificate["key"])
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(server.address, ssl.create_default_context())
    assert https_get(server.address, client_context(certificate)) == (200, b"https")


def test_encrypted_key_with_password(serve, certificate):
    server = serve(echo_scheme, ssl_certfile=certificate["cert"], ssl_keyfile=certificate["encrypted_key"],
                   ssl_keyfile_password="sesame")
    assert https_get(server.address, client_context(certificate)) == (200, b"https")


def test_client_certificate_required(serve, certificate):
    server = serve(echo_scheme, ssl_certfile=certificate["cert"], ssl_keyfile=certificate["key"],
                   ssl_ca_certs=certificate["cert"], ssl_cert_reqs=2)
    without = client_context(certificate)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(server.address, without)
    with_cert = client_context(certificate)
    with_cert.load_cert_chain(certificate["cert"], certificate["key"])
    assert https_get(server.address, with_cert) == (200, b"https")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks")
def test_cli_with_curl(tmp_path, certificate):
    write_app(str(tmp_path))
    server = ServerProcess(["procapp:app", "--app-dir", str(tmp_path), "--port", "0", "--workers", "2",
                            "--ssl-certfile", certificate["cert"], "--ssl-keyfile", certificate["key"]])
    try:
        assert server.url.startswith("https://127.0.0.1:")
        result = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", certificate["cert"],
                                 server.url + "/scheme"], capture_output=True, timeout=20)
        assert result.stdout == b"https", result.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()


def test_unreadable_certificate_is_an_option_error(tmp_path):
    with pytest.raises(RuntimeError, match="missing.pem: No such file"):
        ServerThread(echo_scheme, ssl_certfile=str(tmp_path / "missing.pem")).start()
