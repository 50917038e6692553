"""The opening handshake and permessage-deflate negotiation, without sockets."""

import base64
import random

import pytest

from selectserver.http11.events import Request
from selectserver.websocket.handshake import (
    HandshakeError,
    UnsupportedVersion,
    accept_headers,
    accept_key,
    negotiate_deflate,
    parse_extensions,
    read_handshake,
    upgrade_requested,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def request(*extra, method=b"GET", version="1.1", drop=()):
    headers = [(b"host", b"example.com"), (b"upgrade", b"websocket"),
               (b"connection", b"Upgrade"), (b"sec-websocket-key", KEY),
               (b"sec-websocket-version", b"13")]
    headers = [(n, v) for n, v in headers if n not in drop] + list(extra)
    return Request(method, b"/chat", version, headers)


def test_the_accept_key_of_rfc_6455():
    # RFC 6455 §1.3's worked example.
    assert accept_key(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_valid_handshake():
    handshake = read_handshake(request(
        (b"sec-websocket-protocol", b"chat, superchat"), (b"sec-websocket-protocol", b"v2"),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")))
    assert handshake.key == KEY
    assert handshake.subprotocols == ["chat", "superchat", "v2"]
    assert handshake.extension_offers == [("permessage-deflate", [("client_max_window_bits", None)])]


@pytest.mark.parametrize("headers", [
    [(b"upgrade", b"websocket")],
    [(b"upgrade", b"WebSocket")],
    [(b"upgrade", b"h2c, websocket")],
])
def test_upgrade_is_requested(headers):
    assert upgrade_requested(headers)


@pytest.mark.parametrize("headers", [[], [(b"upgrade", b"h2c")], [(b"x-upgrade", b"websocket")],
                                     [(b"upgrade", b"websocketx")]])
def test_upgrade_is_not_requested(headers):
    assert not upgrade_requested(headers)


@pytest.mark.parametrize("case, req", [
    ("POST", request(method=b"POST")),
    ("HTTP/1.0", request(version="1.0")),
    ("a body", Request(b"GET", b"/", "1.1", request().headers + [(b"content-length", b"5")],
                       content_length=5)),
    ("a chunked body", Request(b"GET", b"/", "1.1", request().headers, chunked=True)),
    ("no Connection", request(drop=(b"connection",))),
    ("Connection without upgrade", request((b"connection", b"keep-alive"), drop=(b"connection",))),
    ("no key", request(drop=(b"sec-websocket-key",))),
    ("two keys", request((b"sec-websocket-key", KEY))),
    ("key not base64", request((b"sec-websocket-key", b"!" * 24), drop=(b"sec-websocket-key",))),
    ("key of 15 bytes", request((b"sec-websocket-key", base64.b64encode(b"x" * 15)),
                                drop=(b"sec-websocket-key",))),
    ("key of 17 bytes", request((b"sec-websocket-key", base64.b64encode(b"x" * 17)),
                                drop=(b"sec-websocket-key",))),
    ("subprotocol not a token", request((b"sec-websocket-protocol", b"chat, s\xffper"))),
    ("subprotocol with a space inside", request((b"sec-websocket-protocol", b"a b"))),
])
def test_bad_handshakes_are_400(case, req):
    with pytest.raises(HandshakeError) as caught:
        read_handshake(req)
    assert caught.value.status == 400, case


@pytest.mark.parametrize("versions", [[], [b"8"], [b"14"], [b"13", b"13"], [b"13, 8"]])
def test_other_versions_are_426_naming_13(versions):
    req = request(*[(b"sec-websocket-version", v) for v in versions],
                  drop=(b"sec-websocket-version",))
    with pytest.raises(UnsupportedVersion) as caught:
        read_handshake(req)
    assert caught.value.status == 426
    assert (b"sec-websocket-version", b"13") in caught.value.headers


def test_connection_tokens_are_case_insensitive_and_listed():
    read_handshake(request((b"connection", b"keep-alive, UPGRADE"), drop=(b"connection",)))


def test_hostile_header_values_only_ever_raise_handshake_errors():
    rng = random.Random(7692)
    names = [b"connection", b"sec-websocket-key", b"sec-websocket-version",
             b"sec-websocket-protocol", b"sec-websocket-extensions", b"upgrade"]
    alphabet = b'abcXYZ019 ,;="\t\\/+=-_\x80\xff'
    for _ in range(5000):
        name = rng.choice(names)
        value = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        try:
            handshake = read_handshake(request((name, value)))
        except HandshakeError:
            continue
        negotiate_deflate(handshake.extension_offers)


# -- permessage-deflate ----------------------------------------------------------------------


def negotiate(value):
    deflate, answer = negotiate_deflate(parse_extensions([value]))
    return deflate, answer


def test_plain_offer():
    deflate, answer = negotiate(b"permessage-deflate")
    assert answer == b"permessage-deflate"
    assert not deflate.server_no_context_takeover and not deflate.client_no_context_takeover


def test_the_browsers_offer():
    deflate, answer = negotiate(b"permessage-deflate; client_max_window_bits")
    assert answer == b"permessage-deflate"
    assert deflate.client_max_window_bits == 15


def test_context_takeover_requests_are_honoured():
    deflate, answer = negotiate(b"permessage-deflate; server_no_context_takeover; "
                                b"client_no_context_takeover")
    assert answer == b"permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    assert deflate.server_no_context_takeover and deflate.client_no_context_takeover


def test_window_bits():
    deflate, answer = negotiate(b"permessage-deflate; server_max_window_bits=10; "
                                b'client_max_window_bits="11"')
    assert answer == b"permessage-deflate; server_max_window_bits=10; client_max_window_bits=11"
    assert (deflate.server_max_window_bits, deflate.client_max_window_bits) == (10, 11)
    deflate, answer = negotiate(b"permessage-deflate; server_max_window_bits=15")
    assert answer == b"permessage-deflate; server_max_window_bits=12"


@pytest.mark.parametrize("offer", [
    b"permessage-deflate; server_max_window_bits=8",   # zlib cannot do 8
    b"permessage-deflate; server_max_window_bits=16",
    b"permessage-deflate; server_max_window_bits=07",
    b"permessage-deflate; server_max_window_bits",
    b"permessage-deflate; client_max_window_bits=7",
    b"permessage-deflate; server_no_context_takeover=1",
    b"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    b"permessage-deflate; unknown_parameter",
    b"permessage-deflate; bad param",
    b"x-webkit-deflate-frame",
])
def test_offers_we_decline(offer):
    assert negotiate(offer) == (None, None)


def test_the_first_acceptable_offer_wins():
    deflate, answer = negotiate(b"permessage-deflate; server_max_window_bits=8, "
                                b"permessage-deflate; client_no_context_takeover")
    assert answer == b"permessage-deflate; client_no_context_takeover"


def test_accept_headers():
    assert accept_headers(KEY, "chat", b"permessage-deflate", [(b"x-a", b"1")]) == [
        (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        (b"sec-websocket-protocol", b"chat"), (b"sec-websocket-extensions", b"permessage-deflate"),
        (b"x-a", b"1")]
    assert accept_headers(KEY, None, None, []) == accept_headers(KEY, None, None, [])[:3]


@pytest.mark.parametrize("subprotocol, headers", [
    ("two words", []), ("snow☃", []), (None, [(b"Sec-WebSocket-Protocol", b"x")]),
    (None, [(b"upgrade", b"h2c")]),
])
def test_accept_headers_refuse_what_the_handshake_owns(subprotocol, headers):
    with pytest.raises(ValueError):
        accept_headers(KEY, subprotocol, None, headers)
