"""proxy.py: who is trusted, and what X-Forwarded-* and RFC 7239 Forwarded say."""

from __future__ import annotations

import pytest

from selectserver.proxy import Forwarded, TrustedProxies, apply_to_environ, apply_to_scope, resolve

DEFAULT = TrustedProxies("127.0.0.1,::1")


@pytest.mark.parametrize("spec, host, trusted", [
    ("127.0.0.1,::1", "127.0.0.1", True),
    ("127.0.0.1,::1", "::1", True),
    ("127.0.0.1,::1", "::ffff:127.0.0.1", True),    # an IPv4 peer on a dual-stack socket
    ("127.0.0.1,::1", "10.0.0.1", False),
    ("10.0.0.0/8", "10.20.30.40", True),
    ("10.0.0.0/8", "11.0.0.1", False),
    ("fd00::/8", "fd12::1", True),
    ("*", "203.0.113.9", True),
    ("*", "not-an-ip", True),
    ("127.0.0.1", "not-an-ip", False),
    (" 192.0.2.1 , 192.0.2.2 ", "192.0.2.2", True),
    ("", "127.0.0.1", False),
])
def test_trusts_host(spec, host, trusted):
    assert TrustedProxies(spec).trusts_host(host) is trusted
    assert TrustedProxies(spec).trusts((host, 1234)) is trusted


def test_unix_socket_peers_are_trusted():
    assert TrustedProxies("").trusts(None)


def test_decisions_are_cached_per_address():
    trusted = TrustedProxies("10.0.0.0/8")
    assert trusted.trusts(("10.1.1.1", 1)) and trusted.trusts(("10.1.1.1", 2))
    assert trusted._decisions == {"10.1.1.1": True}


@pytest.mark.parametrize("spec", ["localhost", "10.0.0.0/33", "1.2.3"])
def test_bad_entries_are_refused(spec):
    with pytest.raises(ValueError, match="forwarded_allow_ips"):
        TrustedProxies(spec)


def headers(**fields):
    return [(name.replace("_", "-").encode(), value.encode()) for name, value in fields.items()]


def test_no_proxy_headers():
    assert resolve([(b"host", b"a.example")], DEFAULT) is None


def test_the_peer_is_asked_only_when_a_proxy_field_is_there():
    trusted = TrustedProxies("127.0.0.1")
    assert resolve([(b"host", b"a.example")], trusted, ("10.0.0.1", 1)) is None
    assert trusted._decisions == {}   # no proxy field: no question
    fields = headers(x_forwarded_for="203.0.113.7", x_forwarded_proto="https")
    assert resolve(fields, trusted, ("10.0.0.1", 1)) is None   # anyone may send them
    assert resolve(fields, trusted, ("127.0.0.1", 1)).client == ("203.0.113.7", 0)
    assert resolve(fields, TrustedProxies(""), None).scheme == "https"   # a Unix socket peer
    scope = {"type": "http", "client": ("10.0.0.1", 1), "scheme": "http", "headers": fields}
    apply_to_scope(scope, trusted, ("10.0.0.1", 1))
    assert scope["client"] == ("10.0.0.1", 1) and scope["scheme"] == "http"
    apply_to_scope(scope, trusted, ("127.0.0.1", 1))
    assert scope["client"] == ("203.0.113.7", 0) and scope["scheme"] == "https"


@pytest.mark.parametrize("value, client", [
    ("203.0.113.7", ("203.0.113.7", 0)),
    ("203.0.113.7, 127.0.0.1", ("203.0.113.7", 0)),           # our trusted proxy's own hop skipped
    ("198.51.100.1, 203.0.113.7", ("203.0.113.7", 0)),        # rightmost untrusted: no spoofing
    ("127.0.0.1, ::1", ("127.0.0.1", 0)),                      # all trusted: the leftmost
    ("203.0.113.7:4711", ("203.0.113.7", 4711)),
    ("[2001:db8::1]:4711", ("2001:db8::1", 4711)),
    ("2001:db8::1", ("2001:db8::1", 0)),
    (" , 203.0.113.7 ,", ("203.0.113.7", 0)),
])
def test_x_forwarded_for(value, client):
    assert resolve(headers(x_forwarded_for=value), DEFAULT).client == client


def test_repeated_x_forwarded_for_fields_form_one_list():
    fields = [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-for", b"203.0.113.7, 127.0.0.1")]
    assert resolve(fields, DEFAULT).client == ("203.0.113.7", 0)


@pytest.mark.parametrize("value, scheme", [
    ("https", "https"), ("HTTPS", "https"), ("http, https", "https"), ("wss", "wss"),
    ("gopher", None), ("", None),
])
def test_x_forwarded_proto(value, scheme):
    assert resolve(headers(x_forwarded_proto=value), DEFAULT).scheme == scheme


@pytest.mark.parametrize("value, host", [
    ("example.com", "example.com"), ("example.com:8443", "example.com:8443"),
    ("[2001:db8::1]:443", "[2001:db8::1]:443"), ("evil.example\r\nx: y", None),
    ("a b", None), ("", None),
])
def test_x_forwarded_host(value, host):
    assert resolve(headers(x_forwarded_host=value), DEFAULT).host == host


@pytest.mark.parametrize("value, expected", [
    ('for=192.0.2.60;proto=https;host=a.example', Forwarded(("192.0.2.60", 0), "https", "a.example")),
    ('For="[2001:db8:cafe::17]:4711"', Forwarded(("2001:db8:cafe::17", 4711))),
    ('for=192.0.2.43, for=127.0.0.1;proto=http', Forwarded(("192.0.2.43", 0))),
    ('for=198.51.100.1;proto=http, for=192.0.2.43;proto=https', Forwarded(("192.0.2.43", 0), "https")),
    ('for=unknown', Forwarded(("unknown", 0))),
    ('for=_hidden;proto=https', Forwarded(("_hidden", 0), "https")),
    ('for="192.0.2.1";host="x.example, y";by=10.0.0.1', Forwarded(("192.0.2.1", 0), None, None)),
    ('proto=https', Forwarded(None, None, None)),
    ('garbage', Forwarded()),
])
def test_forwarded(value, expected):
    assert resolve(headers(forwarded=value), DEFAULT) == expected


def test_forwarded_wins_over_x_forwarded():
    fields = headers(x_forwarded_for="198.51.100.1", forwarded="for=192.0.2.60;proto=https")
    assert resolve(fields, DEFAULT) == Forwarded(("192.0.2.60", 0), "https")


def test_apply_to_scope():
    scope = {"type": "http", "client": ("127.0.0.1", 5000), "scheme": "http",
             "headers": [(b"host", b"internal:8000")] + headers(
                 x_forwarded_for="203.0.113.7", x_forwarded_proto="https", x_forwarded_host="a.example")}
    apply_to_scope(scope, DEFAULT)
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "https"
    assert (b"host", b"a.example") in scope["headers"]
    assert (b"host", b"internal:8000") not in scope["headers"]


def test_apply_to_websocket_scope():
    scope = {"type": "websocket", "client": ("127.0.0.1", 1), "scheme": "ws",
             "headers": headers(x_forwarded_proto="https")}
    apply_to_scope(scope, DEFAULT)
    assert scope["scheme"] == "wss"


def test_apply_to_scope_without_proxy_headers_changes_nothing():
    scope = {"type": "http", "client": ("127.0.0.1", 1), "scheme": "http", "headers": []}
    apply_to_scope(scope, DEFAULT)
    assert scope == {"type": "http", "client": ("127.0.0.1", 1), "scheme": "http", "headers": []}


def test_apply_to_environ():
    environ = {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5000", "wsgi.url_scheme": "http",
               "HTTP_HOST": "internal"}
    apply_to_environ(environ, headers(forwarded='for="[2001:db8::1]:4711";proto=wss;host=a.example'),
                     DEFAULT)
    assert environ == {"REMOTE_ADDR": "2001:db8::1", "REMOTE_PORT": "4711",
                       "wsgi.url_scheme": "https", "HTTP_HOST": "a.example"}
