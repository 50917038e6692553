"""The grammar tables, checked against the RFCs' own definitions.

grammar.py spells each character class as a list of octets; here each one
is derived a second way, from the prose of RFC 9110 / RFC 5234, and the two
must agree.
"""

from __future__ import annotations

import pytest

from selectserver.http11 import grammar

ALL_OCTETS = bytes(range(256))


def octets(table: bytes) -> set:
    return set(table)


def test_core_rules():
    assert octets(grammar.DIGIT) == set(range(0x30, 0x3A))
    assert octets(grammar.ALPHA) == set(range(0x41, 0x5B)) | set(range(0x61, 0x7B))
    assert octets(grammar.HEXDIG) == octets(grammar.DIGIT) | set(b"ABCDEFabcdef")
    assert octets(grammar.VCHAR) == set(range(0x21, 0x7F))
    assert octets(grammar.OBS_TEXT) == set(range(0x80, 0x100))


def test_tchar_is_vchar_minus_delimiters():
    # RFC 9110 §5.6.2: tokens are "any VCHAR, except delimiters", and the
    # delimiters are DQUOTE and "(),/:;<=>?@[\]{}".
    delimiters = set(b'"(),/:;<=>?@[\\]{}')
    assert octets(grammar.TCHAR) == octets(grammar.VCHAR) - delimiters
    assert len(grammar.TCHAR) == len(set(grammar.TCHAR)) == 77


def test_field_line_chars_exclude_exactly_the_controls():
    # RFC 9110 §5.5: field-vchar, SP and HTAB; CR, LF, NUL and the other
    # controls (and DEL) are what a field line may not hold.
    forbidden = set(range(0x00, 0x20)) - {0x09} | {0x7F}
    assert octets(grammar.FIELD_LINE_CHARS) == set(range(256)) - forbidden


def test_request_line_chars():
    assert octets(grammar.REQUEST_LINE_CHARS) == set(range(0x20, 0x7F))


def test_reg_name_chars():
    # RFC 3986 §3.2.2: unreserved / pct-encoded / sub-delims.
    assert octets(grammar.UNRESERVED) == octets(grammar.ALPHA + grammar.DIGIT) | set(b"-._~")
    assert octets(grammar.SUB_DELIMS) == set(b"!$&'()*+,;=")
    assert octets(grammar.REG_NAME_CHARS) == (octets(grammar.UNRESERVED)
                                              | octets(grammar.SUB_DELIMS) | {0x25})


def test_deletion_tables_leave_only_the_offending_octets():
    assert b"Content-Type".translate(None, grammar.TCHAR) == b""
    assert b"Content Type:".translate(None, grammar.TCHAR) == b" :"
    assert ALL_OCTETS.translate(None, grammar.FIELD_LINE_CHARS) == bytes(
        list(range(0x00, 0x09)) + list(range(0x0A, 0x20)) + [0x7F])


@pytest.mark.parametrize("data, result", [
    (b"GET", True), (b"x-y", True), (b"", False), (b"a b", False), (b"a:b", False),
    (b"\xe9", False),
])
def test_is_token(data, result):
    assert grammar.is_token(data) is result


@pytest.mark.parametrize("data, result", [
    (b"0", True), (b"aF09", True), (b"", False), (b"g", False), (b"0x1", False), (b" 1", False),
])
def test_is_hex(data, result):
    assert grammar.is_hex(data) is result


@pytest.mark.parametrize("value, port_required, result", [
    (b"a.example", False, True), (b"a.example:1", False, True), (b"a:", False, True),
    (b"", False, True), (b"a", True, False), (b"a:", True, False), (b"a:1", True, True),
    (b"[::1]:1", True, True), (b"[::1]", True, False), (b"[::1]:", False, True),
    (b"[v7.a:b]", False, True), (b"[v7]", False, False), (b"[v.a]", False, False),
    (b"[]", False, False), (b"[::1]]", False, False), (b"%41", False, True),
    (b"%4", False, False), (b"%g1", False, False), (b"a:1x", False, False),
    (b"a:+1", True, False), (b"a:\xd9\xa1", True, False),
])
def test_valid_host(value, port_required, result):
    assert grammar.valid_host(value, port_required) is result


@pytest.mark.parametrize("extension, result", [
    (b"", True), (b";a", True), (b";a=b", True), (b";a=\"b;c\"", True), (b" ; a = b", True),
    (b";a;b", True), (b";a=\"\\\"\"", True), (b";", False), (b";a=", False), (b";a=b ", False),
    (b"a", False), (b";a=\"b", False), (b";a=b\x00", False),
])
def test_chunk_extension(extension, result):
    assert bool(grammar.CHUNK_EXT.fullmatch(extension)) is result


def test_lower_field_name():
    assert grammar.lower_field_name(b"X-Test-Name") == b"x-test-name"
    assert grammar.FIELD_NAMES[b"X-Test-Name"] == b"x-test-name"
    assert grammar.lower_field_name(b"bad name") is None
    assert grammar.lower_field_name("str-name") is None
    assert grammar.lower_field_name(bytearray(b"x")) is None
