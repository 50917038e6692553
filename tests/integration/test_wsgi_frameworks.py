"""Flask, Django and Bottle served for real (test extras), with real clients."""

import hashlib
import http.client
import json
import os
import threading
import time

import pytest

MIB = 1024 * 1024


@pytest.fixture
def big_file(tmp_path):
    data = os.urandom(13 * MIB + 4321)
    path = tmp_path / "video.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def fetch(server, path, method="GET", body=None, headers=None):
    client = http.client.HTTPConnection(*server.address, timeout=30)
    try:
        client.request(method, path, body=body, headers=headers or {})
        response = client.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        client.close()


# -- Flask ------------------------------------------------------------------------------


@pytest.fixture
def flask_server(serve, require):
    require("flask")
    from tests.apps.wsgi_flask import app

    return serve(app)


@pytest.mark.requires("flask", "requests")
def test_flask_routes_and_json(flask_server):
    import requests

    base = flask_server.url
    assert flask_server.worker.interface == "wsgi"
    assert requests.get(base + "/").text == "hello from flask"
    assert requests.get(base + "/users/42").json() == {"id": 42, "script_root": "", "path": "/users/42"}
    response = requests.post(base + "/json", json={"a": [1, 2], "b": "é"})
    assert response.json() == {"received": {"a": [1, 2], "b": "é"}, "count": 2}
    assert requests.get(base + "/nowhere").status_code == 404


@pytest.mark.requires("flask", "requests")
def test_flask_file_upload(flask_server):
    import requests

    data = os.urandom(5 * MIB)
    response = requests.post(flask_server.url + "/upload", files={"file": ("report.bin", data)},
                             data={"note": "quarterly"})
    assert response.json() == {"name": "report.bin", "size": len(data),
                               "sha256": hashlib.sha256(data).hexdigest(), "note": "quarterly"}


@pytest.mark.requires("flask")
def test_flask_send_file(flask_server, big_file):
    path, digest = big_file
    status, headers, body = fetch(flask_server, "/file?path=%s" % path)
    assert status == 200 and hashlib.sha256(body).hexdigest() == digest
    assert headers["content-length"] == str(path.stat().st_size)
    status, headers, body = fetch(flask_server, "/file?path=%s" % path, headers={"Range": "bytes=10-19"})
    assert status == 206 and body == path.read_bytes()[10:20]


@pytest.mark.requires("flask", "httpx")
def test_flask_streamed_response(flask_server):
    import httpx

    with httpx.Client(base_url=flask_server.url) as client:
        with client.stream("GET", "/stream", params={"count": 50, "word": "tick"}) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            lines = list(response.iter_lines())
    assert lines == ["tick %d" % n for n in range(50)]


@pytest.mark.requires("flask")
def test_flask_abort_and_errors(flask_server, caplog):
    assert fetch(flask_server, "/teapot")[0] == 418
    status, _, body = fetch(flask_server, "/crash")
    assert status == 500 and b"Internal Server Error" in body   # Flask's own page
    assert "a bug in a view" in caplog.text


# -- Django ------------------------------------------------------------------------------


@pytest.fixture
def django_server(serve, require):
    require("django")
    from tests.apps import wsgi_django

    return serve(wsgi_django.application), wsgi_django


@pytest.mark.requires("django", "requests")
def test_django_view_and_form_post(django_server):
    import requests

    server, _ = django_server
    assert server.worker.interface == "wsgi"
    assert requests.get(server.url + "/?name=ada").text == "hello from django, ada"
    response = requests.post(server.url + "/form/", data={"name": "Zoë", "tag": ["a", "b"]})
    assert response.json() == {"method": "POST", "name": "Zoë", "tags": ["a", "b"], "path": "/form/"}
    # Without the exemption, CSRF protection answers (Django's middleware runs).
    assert requests.post(server.url + "/protected/", data={"x": "1"}).status_code == 403


@pytest.mark.requires("django")
def test_django_root_path(serve, require):
    require("django")
    from tests.apps import wsgi_django

    server = serve(wsgi_django.application, root_path="/site")
    status, _, body = fetch(server, "/site/form/", method="POST", body=b"name=x",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and json.loads(body)["path"] == "/site/form/"


@pytest.mark.requires("django")
def test_django_streaming_and_file_responses_are_closed(django_server, big_file):
    server, module = django_server
    before = len(module.finished)
    status, headers, body = fetch(server, "/stream/?count=100")
    assert status == 200 and body == b"".join(b"chunk %d\n" % n for n in range(100))
    path, digest = big_file
    status, headers, body = fetch(server, "/file/?path=%s" % path)
    assert status == 200 and hashlib.sha256(body).hexdigest() == digest
    assert headers["content-length"] == str(path.stat().st_size)
    # close() ran for both: Django's request_finished fired.  It runs on the
    # app's thread just after the last byte was handed over, so wait for it.
    deadline = time.monotonic() + 10
    while len(module.finished) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(module.finished) == before + 2


# -- Bottle ------------------------------------------------------------------------------


@pytest.mark.requires("bottle")
def test_bottle_static_file_to_several_clients_at_once(serve, big_file, monkeypatch):
    from selectserver import connection
    from tests.apps.wsgi_bottle import app

    sent_by_sendfile = []
    real_sendfile = os.sendfile

    def sendfile(*args):
        sent_by_sendfile.append(real_sendfile(*args))
        return sent_by_sendfile[-1]

    monkeypatch.setattr(connection.os, "sendfile", sendfile)

    path, digest = big_file
    app.config["static_root"] = str(path.parent)
    server = serve(app)
    assert fetch(server, "/hello/world")[2] == b"hello world from bottle"
    results = []
    lock = threading.Lock()

    def watch():
        status, headers, body = fetch(server, "/static/video.bin")
        with lock:
            results.append((status, headers["content-length"], hashlib.sha256(body).hexdigest()))

    viewers = [threading.Thread(target=watch) for _ in range(6)]
    for viewer in viewers:
        viewer.start()
    for viewer in viewers:
        viewer.join(60)
    assert results == [(200, str(path.stat().st_size), digest)] * 6
    assert sum(sent_by_sendfile) == 6 * path.stat().st_size   # zero-copy, all of it
    status, headers, body = fetch(server, "/static/video.bin", headers={"Range": "bytes=1000-1999"})
    assert status == 206 and body == path.read_bytes()[1000:2000]
    status, headers, body = fetch(server, "/static/video.bin", method="HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", str(path.stat().st_size))
