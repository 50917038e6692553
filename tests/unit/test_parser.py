"""RequestParser, rule by rule: exact events, exact exception and status.

The corpus (test_corpus.py) covers whole requests fed every way; these
tests pin one rule each, with the RFC section it comes from.
"""

from __future__ import annotations

import pytest

from selectserver import errors
from selectserver.http11.events import (
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    Data,
    EndOfMessage,
    Request,
)
from selectserver.http11.parser import Limits, RequestParser

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def events(data, limits=None, parser=None):
    """Feed ``data`` and return events up to and including NEED_DATA/PAUSED."""
    parser = parser or RequestParser(limits)
    parser.feed(data)
    out = []
    while True:
        event = parser.next_event()
        out.append(event)
        if event is NEED_DATA or event is PAUSED:
            return out


def head(data, limits=None):
    """The Request parsed from a complete head."""
    parser = RequestParser(limits)
    parser.feed(data)
    request = parser.next_event()
    assert isinstance(request, Request), request
    return request


def refused(data, limits=None):
    """The HTTPError raised for ``data``, fed whole."""
    parser = RequestParser(limits)
    parser.feed(data)
    with pytest.raises(errors.HTTPError) as info:
        for _ in range(100):
            if parser.next_event() is NEED_DATA:
                break
    return info.value


def get_with(*fields, version=b"1.1"):
    return b"GET / HTTP/" + version + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


def post_with(*fields, body=b""):
    return b"POST / HTTP/1.1\r\nHost: a\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


# -- the example of STYLE.md ----------------------------------------------------


def test_style_guide_example():
    parser = RequestParser(Limits())
    parser.feed(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    assert [parser.next_event() for _ in range(4)] == [
        Request(b"POST", b"/a", "1.1", [(b"host", b"x"), (b"content-length", b"2")],
                content_length=2),
        Data(b"hi"), END_OF_MESSAGE, PAUSED]


# -- Limits ---------------------------------------------------------------------


def test_limits_defaults():
    limits = Limits()
    assert (limits.max_request_line_bytes, limits.max_header_bytes,
            limits.max_header_count, limits.max_body_bytes) == (8192, 65536, 100, None)
    assert RequestParser().limits == limits


@pytest.mark.parametrize("kwargs", [
    {"max_request_line_bytes": 0}, {"max_header_bytes": -1}, {"max_header_count": 1.5},
    {"max_header_bytes": True}, {"max_body_bytes": -1}, {"max_body_bytes": "10"},
])
def test_limits_are_validated(kwargs):
    with pytest.raises(ValueError):
        Limits(**kwargs)


def test_limits_repr_and_equality():
    assert Limits(max_body_bytes=5) == Limits(max_body_bytes=5)
    assert Limits(max_body_bytes=5) != Limits()
    assert "max_body_bytes=5" in repr(Limits(max_body_bytes=5))
    assert Limits().__eq__(object()) is NotImplemented


def test_limits_max_body_zero_allows_empty_bodies():
    assert events(post_with(b"Content-Length: 0"), Limits(max_body_bytes=0))[1] is END_OF_MESSAGE
    assert refused(post_with(b"Content-Length: 1"), Limits(max_body_bytes=0)).status == 413


# -- the request line (RFC 9112 §3) --------------------------------------------


def test_minimal_get():
    assert events(GET) == [Request(b"GET", b"/", "1.1", [(b"host", b"a")]), END_OF_MESSAGE, PAUSED]


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH",
                                    b"OPTIONS", b"TRACE", b"PROPFIND", b"X-Custom", b"A",
                                    b"!#$%&'*+-.^_`|~09azAZ"])
def test_method_is_any_token(method):
    assert head(method + b" / HTTP/1.1\r\nHost: a\r\n\r\n").method == method


def test_method_is_case_sensitive():
    # RFC 9110 §9.1: "get" is a different (unknown) method, passed through.
    assert head(b"get / HTTP/1.1\r\nHost: a\r\n\r\n").method == b"get"


@pytest.mark.parametrize("line", [
    b"G(T / HTTP/1.1", b"GE\"T / HTTP/1.1", b"G:T / HTTP/1.1", b"G@T / HTTP/1.1",
    b"GET{ / HTTP/1.1", b"ABCDEFGHIJKLMNOPQ]RS / HTTP/1.1",
])
def test_method_not_a_token(line):
    assert refused(line + b"\r\nHost: a\r\n\r\n").status == 400


@pytest.mark.parametrize("line", [
    b"GET  / HTTP/1.1", b"GET /  HTTP/1.1", b"GET / HTTP/1.1 ", b" GET / HTTP/1.1",
    b"GET\t/ HTTP/1.1", b"GET /\tHTTP/1.1", b"GET / HTTP/1.1 extra", b"GET /", b"GET",
    b"", b"GET  HTTP/1.1",
])
def test_request_line_needs_exactly_two_single_spaces(line):
    assert refused(line + b"\r\nHost: a\r\n\r\n").status == 400


@pytest.mark.parametrize("version, served", [
    (b"HTTP/1.1", "1.1"), (b"HTTP/1.0", "1.0"), (b"HTTP/1.2", "1.1"), (b"HTTP/1.9", "1.1"),
])
def test_versions_served(version, served):
    assert head(b"GET / " + version + b"\r\nHost: a\r\n\r\n").http_version == served


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/3.0", b"HTTP/2",
                                     b"HTTP/3", b"HTTP/9.9"])
def test_other_major_versions_are_505(version):
    error = refused(b"GET / " + version + b"\r\nHost: a\r\n\r\n")
    assert isinstance(error, errors.VersionNotSupported) and error.status == 505


@pytest.mark.parametrize("version", [b"HTTP/1", b"HTTP/1.", b"HTTP/1.10", b"HTTP/11.1",
                                     b"http/1.1", b"HTTP/1.1x", b"HTTP/1.a", b"HTTP 1.1",
                                     b"HTTPS/1.1", b"HTTP/", b"1.1", b"HTTP/a.1", b"HTTP/+.1"])
def test_malformed_versions_are_400(version):
    error = refused(b"GET / " + version + b"\r\nHost: a\r\n\r\n")
    assert type(error) is errors.BadRequest


@pytest.mark.parametrize("target", [
    b"/", b"/a/b?c=d&e", b"/%20%2F", b"/a|b{c}[d]^e`f\"g", b"//double", b"/?",
    b"http://a/", b"https://a:8443/x?y", b"HTTP://A/", b"http://a", b"http://a?x",
    b"https://[::1]:8443/", b"http://a:/",
])
def test_origin_and_absolute_forms(target):
    assert head(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n").target == target


@pytest.mark.parametrize("target", [
    b"a", b"index.html", b"?q", b"#frag", b"*/", b"1http://a/", b"://a", b"ht tp://a",
    b"-x:y", b":",
    # RFC 9112 §3.2.2: absolute-form of the http and https schemes only
    b"h2c+x.y-z://q", b"urn:isbn:123", b"ftp://a/", b"http:a", b"http:/a", b"mailto:a@b",
    # RFC 9110 §4.2.1 and §4.2.4: a host, and no userinfo
    b"http:///x", b"http://", b"http://:80/", b"http://u@a/", b"http://u:p@a/", b"http://a b/",
    # RFC 9112 §3.2: no form has a fragment
    b"/a#b", b"/#", b"http://a/#x", b"http://a#x",
])
def test_other_targets_are_refused(target):
    assert refused(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n").status == 400


@pytest.mark.parametrize("target, host", [
    (b"http://evil.example/admin", b"evil.example"),
    (b"http://evil.example:8080?x", b"evil.example:8080"),
    (b"HTTPS://[::1]:8443/a", b"[::1]:8443"),
])
def test_absolute_form_authority_replaces_host(target, host):
    # RFC 9112 §3.2.2: the recipient MUST ignore Host and use the target's
    # authority; the Host field is still checked and keeps its place.
    request = head(b"GET " + target + b" HTTP/1.1\r\nX: 1\r\nHost: good.example\r\n"
                   b"Y: 2\r\n\r\n")
    assert request.target == target
    assert request.headers == [(b"x", b"1"), (b"host", host), (b"y", b"2")]
    assert refused(b"GET " + target + b" HTTP/1.1\r\nHost: bad host\r\n\r\n").status == 400
    assert refused(b"GET " + target + b" HTTP/1.1\r\n\r\n").status == 400


def test_absolute_form_gives_http_1_0_a_host():
    request = head(b"GET http://a.example/x HTTP/1.0\r\nAccept: */*\r\n\r\n")
    assert request.headers == [(b"accept", b"*/*"), (b"host", b"a.example")]


def test_absolute_form_with_a_known_host_takes_the_long_way():
    # The fast path for a known Host must not skip the replacement.
    head(GET)
    request = head(b"GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n")
    assert request.headers == [(b"host", b"b")]


@pytest.mark.parametrize("target", [b"/a\x00", b"/\x7f", b"/caf\xc3\xa9", b"/\x80", b"/a\tb",
                                    b"/\x1b"])
def test_target_is_visible_ascii_only(target):
    assert refused(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n").status == 400


def test_asterisk_form_only_for_options():
    assert head(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").target == b"*"
    assert refused(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n").status == 400
    assert refused(b"OPTIONS ** HTTP/1.1\r\nHost: a\r\n\r\n").status == 400


@pytest.mark.parametrize("target", [b"a:1", b"example.com:443", b"[::1]:8443", b"1.2.3.4:80",
                                    b"[v1.x]:1"])
def test_connect_authority_form(target):
    assert head(b"CONNECT " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n").target == target


@pytest.mark.parametrize("target", [b"/", b"example.com", b"example.com:", b":443", b"*",
                                    b"http://a:1/", b"a:b", b"[::1]", b"a b:1"])
def test_connect_needs_authority_form(target):
    assert refused(b"CONNECT " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n").status == 400


@pytest.mark.parametrize("method", [b"GET", b"POST", b"OPTIONS", b"HEAD"])
def test_authority_form_only_for_connect(method):
    # RFC 9112 §3.2.3.  ("example.com:443" is also a URI of scheme
    # "example.com"; we serve http and https URIs only.)
    error = refused(method + b" example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert error.status == 400


@pytest.mark.parametrize("headers", [b"", b"Connection: keep-alive\r\n"])
def test_connect_never_keeps_the_connection(headers):
    # RFC 9110 §9.3.6: what follows a CONNECT is the tunnel's, never a request.
    parser = RequestParser()
    parser.feed(b"CONNECT b.example:443 HTTP/1.1\r\nHost: b.example:443\r\n" + headers +
                b"\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    request = parser.next_event()
    assert request.method == b"CONNECT" and request.keep_alive is False
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.next_event() is PAUSED


def test_leading_empty_lines_are_ignored():
    assert events(b"\r\n\r\n\r\n" + GET)[0].target == b"/"


def test_leading_empty_lines_fed_one_byte_at_a_time():
    parser = RequestParser()
    for byte in b"\r\n\r\n":
        parser.feed(bytes([byte]))
        assert parser.next_event() is NEED_DATA
    assert parser.buffered_bytes == 0
    assert events(GET, parser=parser)[0].target == b"/"


def test_lone_cr_waits_for_its_lf():
    parser = RequestParser()
    parser.feed(b"\r")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\n" + GET)
    assert isinstance(parser.next_event(), Request)


@pytest.mark.parametrize("start", [b"\rX", b"\n", b"\nGET / HTTP/1.1\r\n", b" GET",
                                   b"\x16\x03\x01", b"\x00", b"G\x00", b"GET\r\r"])
def test_garbage_first_bytes_refused_before_the_head_ends(start):
    parser = RequestParser()
    parser.feed(start)
    with pytest.raises(errors.BadRequest):
        parser.next_event()


def test_long_method_is_not_judged_early():
    parser = RequestParser()
    parser.feed(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert parser.next_event() is NEED_DATA


def test_incomplete_head_needs_data():
    for end in range(1, len(GET)):
        parser = RequestParser()
        parser.feed(GET[:end])
        assert parser.next_event() is NEED_DATA, GET[:end]


# -- line endings -----------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: y\nZ: w\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\n",
    b"GET / HTTP/1.1\r\nHost: a\n",
    b"GET / HTTP/1.1\n",
])
def test_bare_lf_is_refused(data):
    error = refused(data)
    assert error.status == 400 and "LF" in error.detail


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\rHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
])
def test_bare_cr_is_refused(data):
    assert refused(data).status == 400


def test_bare_lf_is_refused_as_soon_as_it_arrives():
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\n")
    with pytest.raises(errors.BadRequest):
        parser.next_event()


# -- field lines (RFC 9112 §5, RFC 9110 §5.5) -----------------------------------


def test_names_lowercased_values_kept():
    request = head(get_with(b"HOST: a", b"X-Mixed-CASE: VaLuE", b"x-b: b"))
    assert request.headers == [(b"host", b"a"), (b"x-mixed-case", b"VaLuE"), (b"x-b", b"b")]


@pytest.mark.parametrize("line, value", [
    (b"X: v", b"v"), (b"X:v", b"v"), (b"X:  \t v \t ", b"v"), (b"X: a b", b"a b"),
    (b"X: a\tb", b"a\tb"), (b"X:", b""), (b"X:   ", b""), (b"X: a:b", b"a:b"),
    (b"X: caf\xe9", b"caf\xe9"), (b"X: \x80\xff", b"\x80\xff"), (b"X: \"q\"", b"\"q\""),
])
def test_value_is_stripped_of_ows(line, value):
    assert head(get_with(b"Host: a", line)).headers[1] == (b"x", value)


def test_repeated_fields_are_kept_in_order():
    request = head(get_with(b"Host: a", b"A: 1", b"B: 2", b"A: 3"))
    assert request.headers == [(b"host", b"a"), (b"a", b"1"), (b"b", b"2"), (b"a", b"3")]


@pytest.mark.parametrize("line", [
    b"X : v", b"X\t: v", b"X v", b": v", b"X Y: v", b"X(: v", b"X\x80: v", b"X\xff: v",
    b"[X]: v", b"X/Y: v", b"X@Y: v", b"X=Y: v", b"X{: v", b"X\": v",
])
def test_bad_field_lines(line):
    assert refused(get_with(b"Host: a", line)).status == 400


def test_space_before_colon_detail():
    assert "colon" in refused(get_with(b"Host: a", b"X : v")).detail


@pytest.mark.parametrize("fold", [b" folded", b"\tfolded", b"  X: y"])
def test_obs_fold_is_refused(fold):
    # RFC 9112 §5.2: a server MUST reject obs-fold or replace it; we reject.
    error = refused(get_with(b"Host: a", b"X: v", fold))
    assert error.status == 400 and "folding" in error.detail


def test_obs_fold_on_first_field_line():
    assert refused(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n").status == 400


@pytest.mark.parametrize("octet", [0x00, 0x01, 0x08, 0x0B, 0x0C, 0x0E, 0x1B, 0x1F, 0x7F])
def test_control_characters_in_value(octet):
    assert refused(get_with(b"Host: a", b"X: a" + bytes([octet]) + b"b")).status == 400


@pytest.mark.parametrize("octet", [0x00, 0x09, 0x0B, 0x20, 0x7F])
def test_control_characters_in_name(octet):
    assert refused(get_with(b"Host: a", b"X" + bytes([octet]) + b"Y: b")).status == 400


def test_long_field_names_work_and_are_not_cached():
    from selectserver.http11 import grammar
    name = b"X-" + b"n" * 200
    assert head(get_with(b"Host: a", name + b": v")).headers[1] == (name.lower(), b"v")
    assert name not in grammar.FIELD_NAMES


def test_field_name_cache_is_bounded():
    from selectserver.http11 import grammar
    for i in range(grammar._FIELD_NAMES_MAX + 10):
        head(get_with(b"Host: a", b"X-%d: v" % i))
    assert len(grammar.FIELD_NAMES) <= grammar._FIELD_NAMES_MAX



def test_field_line_cache_gives_the_same_fields():
    from selectserver.http11 import parser as parser_module
    data = get_with(b"Host: a", b"X-Same:  v \t", b"x-same: v")
    first = head(data).headers
    assert b"X-Same:  v \t" in parser_module._FIELD_LINES
    assert head(data).headers == first == [(b"host", b"a"), (b"x-same", b"v"), (b"x-same", b"v")]


def test_field_line_cache_is_bounded_and_keeps_no_long_line():
    from selectserver.http11 import parser as parser_module
    for i in range(parser_module._FIELD_LINES_MAX + 10):
        head(get_with(b"Host: a", b"X-Line: %d" % i))
    assert len(parser_module._FIELD_LINES) <= parser_module._FIELD_LINES_MAX
    line = b"Cookie: " + b"c" * parser_module._FIELD_LINE_MAX_BYTES
    assert head(get_with(b"Host: a", line)).headers[1] == (b"cookie", line[8:])
    assert line not in parser_module._FIELD_LINES


def test_cached_field_lines_do_not_excuse_the_rest_of_the_head():
    head(get_with(b"Host: a", b"X-Cached: v"))
    assert refused(get_with(b"Host: a", b"X-Cached: v", b"X: a\x00b")).status == 400
    assert refused(get_with(b"Host: a", b"X-Cached: v", b"X-Cached: v\rx")).status == 400
    assert refused(get_with(b"Host: a", b"Host: a", b"X-Cached: v")).status == 400
    assert refused(b"GET / HTTP/1.1\r\nHost: a\r\nX-Cached: v\r\n"
                   b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n").status == 400


# -- Host (RFC 9112 §3.2, RFC 9110 §7.2) ----------------------------------------


@pytest.mark.parametrize("value", [
    b"a", b"example.com", b"example.com:80", b"example.com:", b"127.0.0.1", b"127.0.0.1:8000",
    b"[::1]", b"[::1]:8080", b"[2001:db8::a:b]", b"[::ffff:1.2.3.4]:1", b"[v1.fe]", b"",
    b"ex%41mple", b"a-b_c~d.e", b"!$&'()*+,;=", b"xn--nxasmq6b",
])
def test_valid_hosts(value):
    assert head(get_with(b"Host: " + value)).headers == [(b"host", value)]


@pytest.mark.parametrize("value", [
    b"a b", b"a/b", b"a@b", b"a:b", b"a:1:2", b"[::1", b"[::1]x", b"[::1]:x", b"[]",
    b"[g::1]", b"a%zz", b"a%4", b"a%", b"[v.x]", b"[v1.]", b"[vz.x]", b"a?b", b"a#b",
    b"a\\b", b"\"a\"", b"a\xe9", b"a :80", b"[::1]:80:80",
])
def test_invalid_hosts(value):
    assert refused(get_with(b"Host: " + value)).status == 400


def test_host_required_on_http11():
    assert refused(get_with()).status == 400
    assert refused(get_with(b"X-Host: a")).status == 400


def test_host_optional_on_http10():
    assert head(get_with(version=b"1.0")).headers == []


@pytest.mark.parametrize("version", [b"1.0", b"1.1"])
def test_host_repeated(version):
    assert refused(get_with(b"Host: a", b"Host: a", version=version)).status == 400
    assert refused(get_with(b"Host: a", b"host: b", version=version)).status == 400


def test_host_checked_with_absolute_form_too():
    assert refused(b"GET http://a/ HTTP/1.1\r\n\r\n").status == 400
    assert head(b"GET http://a/ HTTP/1.1\r\nHost: other\r\n\r\n").target == b"http://a/"


def test_valid_host_is_remembered_but_bounded():
    from selectserver.http11 import parser as parser_module
    for i in range(parser_module._VALID_HOSTS_MAX + 5):
        head(get_with(b"Host: host%d" % i))
    assert len(parser_module._VALID_HOSTS) <= parser_module._VALID_HOSTS_MAX
    assert refused(get_with(b"Host: bad host")).status == 400


# -- Content-Length (RFC 9110 §8.6, RFC 9112 §6.3) -------------------------------


@pytest.mark.parametrize("value, length", [
    (b"0", 0), (b"5", 5), (b"005", 5), (b"5, 5", 5), (b"5,5", 5), (b"5 ,\t5", 5),
    (b"05, 5", 5), (b"999999999999999999", 999999999999999999),
])
def test_content_length_values(value, length):
    assert head(post_with(b"Content-Length: " + value)).content_length == length


@pytest.mark.parametrize("known_host", [False, True])
@pytest.mark.parametrize("host_last", [False, True])
def test_host_and_content_length_give_what_the_full_rules_give(known_host, host_last):
    # A known Host and a plain Content-Length take a shorter way (_usual_framing):
    # the same Request, the same faults, either field first.
    host = b"Host: known.example" if known_host else b"Host: new%d.example" % host_last
    if known_host:
        head(get_with(host))
    limits = Limits(max_body_bytes=10)

    def post(value, version=b"1.1"):
        fields = (b"Content-Length: " + value, host) if host_last else (host, b"Content-Length: " + value)
        return b"POST / HTTP/" + version + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"

    parser = RequestParser(limits)
    parser.feed(post(b"3") + b"abc")
    request = parser.next_event()
    assert (request.content_length, request.keep_alive, request.expect_continue,
            request.chunked, request.upgrade) == (3, True, False, False, False)
    assert parser.next_event() == Data(b"abc")
    assert parser.next_event() is END_OF_MESSAGE
    assert head(post(b"0")).content_length == 0
    assert head(post(b"007")).headers[0 if host_last else 1] == (b"content-length", b"7")
    assert head(post(b"3", version=b"1.0")).keep_alive is False
    assert refused(post(b"11"), limits).status == 413
    assert refused(post(b"-1"), limits).status == 400
    assert refused(post(b""), limits).status == 400


def test_content_length_repeated_identical():
    request = head(post_with(b"Content-Length: 3", b"Content-Length: 003"))
    assert request.content_length == 3


@pytest.mark.parametrize("fields", [
    (b"Content-Length: 3", b"Content-Length: 3"),
    (b"Content-Length: 3, 3",),
    (b"Content-Length: 003",),
    (b"Content-Length: 3", b"X: y", b"Content-Length: 03, 3"),
])
def test_content_length_accepted_is_one_plain_field(fields):
    # What the app sees agrees with the framing: one field, the number.
    request = head(post_with(*fields))
    assert [h for h in request.headers if h[0] == b"content-length"] == [
        (b"content-length", b"3")]
    assert request.headers[1] == (b"content-length", b"3")


def test_content_length_leading_zeros_are_not_digits_that_count():
    # RFC 9110 §8.6: 1*DIGIT; the bound is on the value, not the padding.
    request = head(post_with(b"Content-Length: 00000000000000000005"))
    assert request.content_length == 5
    request = head(post_with(b"Content-Length: " + b"0" * 5000 + b"7"))
    assert request.content_length == 7
    assert head(post_with(b"Content-Length: 0000")).content_length == 0
    error = refused(post_with(b"Content-Length: 0" + b"9" * 19))
    assert type(error) is errors.ContentTooLarge


@pytest.mark.parametrize("value", [
    b"", b"+5", b"-5", b"0x5", b"5.0", b"5 5", b"1_0", b"5a", b"five", b"\xd9\xa5",
    b"5,", b",5", b"5,,5", b"\"5\"", b"5;", b"1e3",
])
def test_content_length_malformed(value):
    error = refused(post_with(b"Content-Length: " + value))
    assert type(error) is errors.BadRequest


@pytest.mark.parametrize("fields", [
    (b"Content-Length: 3", b"Content-Length: 4"),
    (b"Content-Length: 3, 4",),
    (b"Content-Length: 3", b"Content-Length: 3, 4"),
])
def test_content_length_conflicting(fields):
    assert type(refused(post_with(*fields))) is errors.BadRequest


@pytest.mark.parametrize("value", [b"1234567890123456789", b"9" * 40, b"5, " + b"9" * 19])
def test_content_length_too_many_digits_is_413(value):
    assert type(refused(post_with(b"Content-Length: " + value))) is errors.ContentTooLarge


def test_content_length_over_max_body_refused_at_head_time():
    limits = Limits(max_body_bytes=10)
    error = refused(post_with(b"Content-Length: 11"), limits)
    assert type(error) is errors.ContentTooLarge and error.status == 413
    assert head(post_with(b"Content-Length: 10"), limits).content_length == 10


def test_content_length_body_streams():
    parser = RequestParser()
    parser.feed(post_with(b"Content-Length: 10", body=b"abc"))
    assert parser.next_event().content_length == 10
    assert parser.next_event() == Data(b"abc")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"defg")
    assert parser.next_event() == Data(b"defg")
    parser.feed(b"hijNEXT")
    assert parser.next_event() == Data(b"hij")
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.next_event() is PAUSED
    assert parser.buffered_bytes == 4


def test_take_body_hands_out_a_whole_length_body_and_its_end_at_once():
    parser = RequestParser()
    parser.feed(post_with(b"Content-Length: 5", body=b"hello") + GET)
    assert parser.next_event().content_length == 5
    assert parser.body_complete
    assert parser.take_body() == b"hello"
    # As after EndOfMessage: paused, the next request waiting behind.
    assert parser.next_event() is PAUSED and parser.buffered_bytes == len(GET)
    assert parser.take_body() is None
    assert parser.next_request()
    assert parser.next_event().target == b"/" and parser.next_event() is END_OF_MESSAGE


def test_take_body_changes_nothing_until_the_whole_body_is_here():
    parser = RequestParser()
    parser.feed(post_with(b"Content-Length: 10", body=b"abc"))
    parser.next_event()
    assert parser.take_body() is None and parser.buffered_bytes == 3
    assert parser.next_event() == Data(b"abc")
    parser.feed(b"defg")
    assert parser.take_body() is None
    parser.feed(b"hij")
    # The rest, received as pieces (a bytearray buffer): one bytes object.
    body = parser.take_body()
    assert body == b"defghij" and type(body) is bytes
    assert parser.buffered_bytes == 0 and parser.next_event() is PAUSED


def test_take_body_does_not_copy_a_body_received_alone():
    parser = RequestParser()
    parser.feed(post_with(b"Content-Length: 4096"))
    parser.next_event()
    data = b"x" * 4096
    parser.feed(data)
    assert parser.take_body() is data


@pytest.mark.parametrize("raw", [
    GET,                                                                  # no body
    post_with(b"Content-Length: 0"),                                      # an empty one
    post_with(b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"),   # chunked
])
def test_take_body_leaves_other_bodies_to_next_event(raw):
    parser = RequestParser()
    parser.feed(raw)
    parser.next_event()
    assert parser.take_body() is None
    assert events(b"", parser=parser) == events(raw)[1:]


def test_zero_content_length_has_no_body_events():
    assert events(post_with(b"Content-Length: 0"))[1:] == [END_OF_MESSAGE, PAUSED]


def test_no_framing_means_no_body():
    # RFC 9112 §6.3 (7): a request without CL or TE has no body; what follows
    # is the next request.
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\n\r\nGET")
    request = parser.next_event()
    assert (request.content_length, request.chunked, request.has_body) == (None, False, False)
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.take_unparsed() == b"GET"


# -- Transfer-Encoding (RFC 9112 §6.1) ---------------------------------------------


@pytest.mark.parametrize("fields", [
    (b"Transfer-Encoding: chunked",), (b"Transfer-Encoding: CHUNKED",),
    (b"Transfer-Encoding: Chunked",), (b"Transfer-Encoding: , chunked",),
    (b"Transfer-Encoding: chunked ,",), (b"Transfer-Encoding:\tchunked\t",),
    (b"Transfer-Encoding:", b"Transfer-Encoding: chunked"),
])
def test_chunked_accepted(fields):
    request = head(post_with(*fields))
    assert request.chunked and request.content_length is None and request.has_body


@pytest.mark.parametrize("value", [
    b"chunked, chunked", b"chunked,chunked", b"xchunked", b"chunkedx", b"chunked, gzip",
    b"chunked, identity", b"gzip", b"identity", b"", b"\"chunked\"", b"chunked;q=1",
    b"chunk ed", b"chunked\x0b", b",", b"deflate",
])
def test_transfer_encoding_without_final_chunked_is_400(value):
    assert type(refused(post_with(b"Transfer-Encoding: " + value))) is errors.BadRequest


@pytest.mark.parametrize("value", [b"gzip, chunked", b"deflate,chunked", b"x-custom, chunked",
                                   b"identity, chunked"])
def test_unknown_coding_before_chunked_is_501(value):
    error = refused(post_with(b"Transfer-Encoding: " + value))
    assert type(error) is errors.NotImplementedCoding and error.status == 501


def test_chunked_split_over_two_fields():
    assert refused(post_with(b"Transfer-Encoding: chunked",
                             b"Transfer-Encoding: chunked")).status == 400
    assert refused(post_with(b"Transfer-Encoding: gzip",
                             b"Transfer-Encoding: chunked")).status == 501


@pytest.mark.parametrize("fields", [
    (b"Transfer-Encoding: chunked", b"Content-Length: 5"),
    (b"Content-Length: 5", b"Transfer-Encoding: chunked"),
    (b"Content-Length: 0", b"Transfer-Encoding: chunked"),
    (b"Content-Length: 5", b"Transfer-Encoding: gzip, chunked"),
])
def test_content_length_and_transfer_encoding_is_400(fields):
    # RFC 9112 §6.1: "ought to be handled as an error"; the smuggling shape.
    assert type(refused(post_with(*fields))) is errors.BadRequest


def test_transfer_encoding_on_http10_is_400():
    data = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert type(refused(data)) is errors.BadRequest


def test_max_body_not_applied_to_declared_chunked_head():
    request = head(post_with(b"Transfer-Encoding: chunked"), Limits(max_body_bytes=0))
    assert request.chunked


# -- chunked bodies (RFC 9112 §7.1) -----------------------------------------------------

CHUNKED = post_with(b"Transfer-Encoding: chunked")


def chunked(body, limits=None):
    return events(CHUNKED + body, limits)[1:]


def test_chunked_body():
    assert chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n") == [
        Data(b"hello world"), END_OF_MESSAGE, PAUSED]


@pytest.mark.parametrize("size, length", [(b"a", 10), (b"A", 10), (b"0a", 10), (b"00000010", 16),
                                          (b"1F", 31), (b"000000000000000f", 15)])
def test_chunk_sizes_are_hex(size, length):
    body = b"x" * length
    assert chunked(size + b"\r\n" + body + b"\r\n0\r\n\r\n")[0] == Data(body)


@pytest.mark.parametrize("size", [b"", b" 1", b"1 ", b"\t1", b"+1", b"-1", b"0x1", b"1_0", b"g",
                                  b"1.0", b"\xef\xbc\x91", b"10000000000000000", b"00000000000000001",
                                  b"1\x00"])
def test_bad_chunk_sizes(size):
    assert refused(CHUNKED + size + b"\r\nx\r\n0\r\n\r\n").status == 400


@pytest.mark.parametrize("extension", [
    b";a", b";a=b", b";a=\"b c\"", b";a=\"\\\"\"", b";a;b=c;d", b" ;a", b"\t;a", b"; a",
    b";a = b", b";a=\"\xe9\"", b";!#$%&'*+-.^_`|~=x",
])
def test_chunk_extensions_are_ignored(extension):
    assert chunked(b"3" + extension + b"\r\nabc\r\n0" + extension + b"\r\n\r\n")[0] == Data(b"abc")


@pytest.mark.parametrize("extension", [
    b";", b";=b", b";a=", b";a=\"b", b";a=b c", b";a=\x01", b";a\x00", b";a=\"\x7f\"", b";a b",
    b";a ", b";a=\"b\" ", b";(a)", b"; ;",
])
def test_bad_chunk_extensions(extension):
    assert refused(CHUNKED + b"3" + extension + b"\r\nabc\r\n0\r\n\r\n").status == 400


def test_chunk_size_line_length_is_limited():
    extension = b";a=" + b"b" * 5000
    assert refused(CHUNKED + b"3" + extension + b"\r\nabc\r\n0\r\n\r\n").status == 400
    parser = RequestParser()
    parser.feed(CHUNKED)
    parser.next_event()
    parser.feed(b"3" + extension)
    with pytest.raises(errors.BadRequest):
        parser.next_event()


@pytest.mark.parametrize("after", [b"X\r\n", b"\n0\r\n\r\n", b"\r0\r\n\r\n", b"  \r\n", b"\r\r\n"])
def test_chunk_data_must_end_with_crlf(after):
    assert refused(CHUNKED + b"3\r\nabc" + after).status == 400


def test_chunk_data_streams_as_it_arrives():
    parser = RequestParser()
    parser.feed(CHUNKED + b"a\r\nhel")
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() == Data(b"hel")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"lo")
    assert parser.next_event() == Data(b"lo")
    parser.feed(b"worl")
    assert parser.next_event() == Data(b"worl")
    parser.feed(b"d\r")
    assert parser.next_event() == Data(b"d")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\n0\r\n")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\r\n")
    assert parser.next_event() is END_OF_MESSAGE


def test_chunk_data_may_hold_any_octet():
    data = bytes(range(256))
    assert chunked(b"100\r\n" + data + b"\r\n0\r\n\r\n")[0] == Data(data)


def test_chunked_body_limit_counts_all_chunks():
    limits = Limits(max_body_bytes=5)
    assert chunked(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", limits)[0] == Data(b"abcde")
    error = refused(CHUNKED + b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", limits)
    assert type(error) is errors.ContentTooLarge


def test_chunked_body_limit_refuses_a_large_chunk_before_its_data():
    parser = RequestParser(Limits(max_body_bytes=5))
    parser.feed(CHUNKED + b"6\r\n")
    parser.next_event()
    with pytest.raises(errors.ContentTooLarge):
        parser.next_event()


def test_trailers():
    assert chunked(b"0\r\nX-Sum: abc\r\nExpires:  never \r\n\r\n") == [
        EndOfMessage([(b"x-sum", b"abc"), (b"expires", b"never")]), PAUSED]


def test_trailer_fields_that_frame_are_passed_through_uninterpreted():
    end = chunked(b"0\r\nContent-Length: 99\r\nTransfer-Encoding: gzip\r\n\r\n")[0]
    assert end.trailers == [(b"content-length", b"99"), (b"transfer-encoding", b"gzip")]


@pytest.mark.parametrize("section", [
    b"X : a\r\n\r\n", b"X: a\r\n b\r\n\r\n", b"X\r\n\r\n", b"X: a\x00\r\n\r\n",
    b"X: a\nY: b\r\n\r\n", b"\n", b"X: a\n\n", b"X: a\r\r\n\r\n", b"(X): a\r\n\r\n",
])
def test_bad_trailers(section):
    assert refused(CHUNKED + b"0\r\n" + section).status == 400


def test_trailer_limits():
    limits = Limits(max_header_bytes=100, max_header_count=2)
    assert refused(CHUNKED + b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits).status == 431
    assert refused(CHUNKED + b"0\r\nA: " + b"x" * 100 + b"\r\n\r\n", limits).status == 431
    parser = RequestParser(limits)
    parser.feed(CHUNKED + b"0\r\nA: " + b"x" * 100)
    parser.next_event()
    with pytest.raises(errors.HeaderFieldsTooLarge):
        parser.next_event()


def test_trailers_arriving_in_pieces():
    parser = RequestParser()
    parser.feed(CHUNKED + b"0\r\nX: ")
    parser.next_event()
    assert parser.next_event() is NEED_DATA
    parser.feed(b"1\r\n")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\r")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\n")
    assert parser.next_event() == EndOfMessage([(b"x", b"1")])


# -- keep-alive (RFC 9112 §9.3) and Expect (RFC 9110 §10.1.1) --------------------------


@pytest.mark.parametrize("version, fields, keep_alive", [
    (b"1.1", (), True),
    (b"1.1", (b"Connection: close",), False),
    (b"1.1", (b"Connection: Close",), False),
    (b"1.1", (b"Connection: keep-alive",), True),
    (b"1.1", (b"Connection: upgrade, close",), False),
    (b"1.1", (b"Connection: te", b"Connection: CLOSE"), False),
    (b"1.1", (b"Connection: closed",), True),
    (b"1.1", (b"Connection: ,,close,,",), False),
    (b"1.0", (), False),
    (b"1.0", (b"Connection: keep-alive",), True),
    (b"1.0", (b"Connection: Keep-Alive",), True),
    (b"1.0", (b"Connection: keep-alive, close",), False),
    (b"1.0", (b"Connection: close",), False),
    (b"1.0", (b"Keep-Alive: 300",), False),
    (b"1.2", (), True),
])
def test_keep_alive(version, fields, keep_alive):
    assert head(get_with(b"Host: a", *fields, version=version)).keep_alive is keep_alive


@pytest.mark.parametrize("version", [b"1.0", b"1.1"])
@pytest.mark.parametrize("connection", [b"close", b"Close", b"keep-alive", b"Keep-Alive",
                                        b"CLOSE", b"upgrade", b"te"])
@pytest.mark.parametrize("host_first", [True, False])
def test_keep_alive_is_the_same_on_the_fast_path(version, connection, host_first):
    # The first request with a Host value goes the general way (which
    # remembers the value as valid); the second takes the two-field shortcut.
    host = b"Host: fast-%s-%s-%d" % (version, connection, host_first)
    fields = (host, b"Connection: " + connection)
    data = get_with(*(fields if host_first else fields[::-1]), version=version)
    first, second = head(data), head(data)
    assert first.keep_alive is second.keep_alive
    expected = connection.lower() == b"keep-alive" or (
        version == b"1.1" and connection.lower() != b"close")
    assert second.keep_alive is expected


def test_the_fast_path_still_checks_the_host():
    error = refused(get_with(b"Host: a b", b"Connection: close"))
    assert isinstance(error, errors.BadRequest)


@pytest.mark.parametrize("value", [b"100-continue", b"100-Continue", b"100-CONTINUE",
                                   b" 100-continue ", b"100-continue, 100-continue"])
def test_expect_continue(value):
    assert head(post_with(b"Expect: " + value, b"Content-Length: 1")).expect_continue is True


def test_expect_continue_ignored_on_http10():
    data = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    assert head(data).expect_continue is False


def test_no_expect():
    assert head(post_with(b"Content-Length: 1")).expect_continue is False
    assert head(post_with(b"Expect:", b"Content-Length: 1")).expect_continue is False


@pytest.mark.parametrize("value", [b"200-ok", b"100-continue, x", b"continue", b"100",
                                   b"100-continue;a=b"])
def test_unknown_expectation_is_417(value):
    error = refused(post_with(b"Expect: " + value, b"Content-Length: 1"))
    assert type(error) is errors.ExpectationFailed and error.status == 417


# -- size limits ---------------------------------------------------------------------


def test_request_line_at_the_limit():
    limits = Limits(max_request_line_bytes=16)
    line = b"GET /" + b"a" * 2 + b" HTTP/1.1"   # 16 bytes
    assert head(line + b"\r\nHost: a\r\n\r\n", limits).target == b"/aa"
    error = refused(b"GET /" + b"a" * 3 + b" HTTP/1.1\r\nHost: a\r\n\r\n", limits)
    assert type(error) is errors.URITooLong and error.status == 414


def test_request_line_too_long_before_its_end_arrives():
    parser = RequestParser(Limits(max_request_line_bytes=16))
    parser.feed(b"GET /" + b"a" * 12)           # 17 bytes, maybe 16 + CR
    assert parser.next_event() is NEED_DATA
    parser.feed(b"a")
    with pytest.raises(errors.URITooLong):
        parser.next_event()


def test_request_line_limit_counts_without_crlf():
    parser = RequestParser(Limits(max_request_line_bytes=16))
    parser.feed(b"GET /aa HTTP/1.1\r")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\nHost: a\r\n\r\n")
    assert isinstance(parser.next_event(), Request)


def test_head_at_the_limit():
    data = get_with(b"Host: a", b"X: " + b"v" * 10)
    assert head(data, Limits(max_header_bytes=len(data))).headers[1] == (b"x", b"v" * 10)
    error = refused(data, Limits(max_header_bytes=len(data) - 1))
    assert type(error) is errors.HeaderFieldsTooLarge and error.status == 431


def test_head_too_large_before_its_end_arrives():
    parser = RequestParser(Limits(max_header_bytes=64))
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 36)   # 64 bytes
    assert parser.next_event() is NEED_DATA
    parser.feed(b"v")
    with pytest.raises(errors.HeaderFieldsTooLarge):
        parser.next_event()


def test_head_limit_waits_for_the_request_line():
    # A long request line is a 414 even when the head limit is the smaller.
    limits = Limits(max_request_line_bytes=100, max_header_bytes=50)
    data = b"GET /" + b"a" * 120 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert refused(data, limits).status == 414
    parser = RequestParser(limits)
    for byte in data:
        parser.feed(bytes([byte]))
        try:
            parser.next_event()
        except errors.HTTPError as error:
            assert error.status == 414
            break


@pytest.mark.parametrize("count, status", [(3, None), (4, 431)])
def test_header_count(count, status):
    limits = Limits(max_header_count=3)
    data = get_with(b"Host: a", *[b"X-%d: v" % i for i in range(count - 1)])
    if status is None:
        assert len(head(data, limits).headers) == count
    else:
        error = refused(data, limits)
        assert type(error) is errors.HeaderFieldsTooLarge


def test_memory_stays_bounded_on_endless_header():
    parser = RequestParser(Limits(max_header_bytes=1000))
    parser.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(errors.HeaderFieldsTooLarge):
        for _ in range(100):
            parser.feed(b"X: " + b"v" * 97)
            assert parser.next_event() is NEED_DATA
            assert parser.buffered_bytes <= 1000 + 100


def test_memory_stays_bounded_on_endless_request_line():
    parser = RequestParser(Limits(max_request_line_bytes=1000))
    with pytest.raises(errors.URITooLong):
        for _ in range(100):
            parser.feed(b"a" * 100)
            parser.next_event()
            assert parser.buffered_bytes <= 1002 + 100


def head_bytes_searched(data: bytes) -> int:
    """Feed ``data`` a byte at a time; the bytes the head search looked at, summed.

    Each search for the head's end starts ``_searched`` bytes into what is
    buffered (what earlier searches already ruled out) and runs to its end.
    """
    parser = RequestParser()
    searched = 0
    for i in range(len(data)):
        parser.feed(data[i:i + 1])
        searched += parser.buffered_bytes - parser._searched
        assert parser.next_event() is NEED_DATA
    return searched


def test_bytewise_head_is_linear_time():
    """A head fed a byte at a time: the search never starts over.

    Counted, not timed: a search that started over would look at about
    N*N/2 bytes for an N-byte head, 64 times as many for 8N as for N.
    """
    def head(size):
        line = b"X: %s\r\n" % (b"v" * 120)
        return b"GET / HTTP/1.1\r\nHost: a\r\n" + line * (size // len(line))

    small, large = head(4096), head(8 * 4096)
    small_searched, large_searched = head_bytes_searched(small), head_bytes_searched(large)
    # A few bytes per byte fed (the end of the terminator may straddle feeds).
    assert small_searched <= 5 * len(small)
    assert large_searched <= 5 * len(large)
    assert large_searched / small_searched < 10


# -- the parser's states ----------------------------------------------------------------


def test_paused_until_next_request():
    parser = RequestParser()
    parser.feed(GET + GET)
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.next_event() is PAUSED
    assert parser.next_event() is PAUSED
    assert parser.buffered_bytes == len(GET)
    assert parser.next_request()
    assert isinstance(parser.next_event(), Request)


def test_next_request_after_a_bodyless_request_or_the_end_of_message():
    parser = RequestParser()
    parser.feed(GET + GET + GET)
    assert isinstance(parser.next_event(), Request)
    assert parser.next_request()                  # EndOfMessage not asked for
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.next_request(skip_body=False)   # nothing left to skip
    assert isinstance(parser.next_event(), Request)


def test_next_request_skips_a_buffered_body():
    parser = RequestParser()
    parser.feed(post_with(b"Content-Length: 5") + b"hello" + GET)
    assert isinstance(parser.next_event(), Request)
    assert parser.next_request()
    request = parser.next_event()
    assert isinstance(request, Request) and request.method == b"GET"


def test_next_request_skips_a_buffered_chunked_body():
    parser = RequestParser()
    parser.feed(post_with(b"Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n" + GET)
    assert isinstance(parser.next_event(), Request)
    assert parser.next_request()
    assert parser.next_event().method == b"GET"


@pytest.mark.parametrize("rest, skip_body", [
    (b"hel", True),              # the body is not all here
    (b"hello", False),           # all here, but the client may wait for 100 Continue
])
def test_next_request_refuses_a_body_it_cannot_skip(rest, skip_body):
    parser = RequestParser()
    parser.feed(post_with(b"Content-Length: 5") + rest)
    assert isinstance(parser.next_event(), Request)
    assert not parser.next_request(skip_body=skip_body)


def test_next_request_refuses_a_malformed_body_and_before_a_request():
    parser = RequestParser()
    assert not parser.next_request()              # no request yet
    parser.feed(post_with(b"Transfer-Encoding: chunked") + b"zz\r\n")
    assert isinstance(parser.next_event(), Request)
    assert not parser.next_request()
    with pytest.raises(errors.BadRequest):
        parser.next_event()                       # the fault stays


def test_error_is_raised_again_and_input_dropped():
    parser = RequestParser()
    parser.feed(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")
    with pytest.raises(errors.VersionNotSupported) as first:
        parser.next_event()
    parser.feed(GET)
    assert parser.buffered_bytes == 0
    with pytest.raises(errors.VersionNotSupported) as second:
        parser.next_event()
    assert second.value is first.value


def test_feed_accepts_bytearray_and_memoryview_and_copies():
    parser = RequestParser()
    data = bytearray(b"GET / HTTP/1.1\r\n")
    parser.feed(data)
    data[:3] = b"XXX"
    parser.feed(memoryview(b"Host: a\r\n\r\n"))
    assert parser.next_event().method == b"GET"


def test_feed_empty_is_a_no_op():
    parser = RequestParser()
    parser.feed(b"")
    assert parser.buffered_bytes == 0 and parser.next_event() is NEED_DATA


def test_buffered_bytes_and_body_complete_through_a_request():
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\n")
    assert parser.buffered_bytes == 26
    assert parser.next_event() is NEED_DATA
    parser.feed(b"Content-Length: 5\r\n\r\nab")
    assert isinstance(parser.next_event(), Request)
    assert not parser.body_complete
    parser.feed(b"cdeGET")
    assert parser.body_complete and parser.buffered_bytes == 8
    assert parser.next_event() == Data(b"abcde")
    assert parser.body_complete
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.body_complete
    assert parser.next_request()
    assert not parser.body_complete


def test_body_complete_without_body():
    parser = RequestParser()
    parser.feed(GET)
    parser.next_event()
    assert parser.body_complete


def test_body_complete_for_chunked_follows_parsing():
    parser = RequestParser()
    parser.feed(CHUNKED + b"3\r\nabc\r\n0\r\n\r\n")
    parser.next_event()
    assert not parser.body_complete
    assert parser.next_event() == Data(b"abc")
    assert parser.body_complete
    assert parser.next_event() is END_OF_MESSAGE


def test_take_unparsed_after_upgrade_head():
    parser = RequestParser()
    parser.feed(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                b"\x81\x85frame")
    request = parser.next_event()
    assert (b"upgrade", b"websocket") in request.headers
    assert parser.take_unparsed() == b"\x81\x85frame"
    assert parser.buffered_bytes == 0
    assert parser.take_unparsed() == b""


def test_take_unparsed_from_a_bytearray_buffer():
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\n")
    parser.feed(b"Host: a\r\n\r\nrest")
    parser.next_event()
    assert parser.take_unparsed() == b"rest"


def test_pipelined_requests_one_at_a_time():
    parser = RequestParser()
    parser.feed(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\n"
                b"Content-Length: 1\r\n\r\nxGET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
    targets = []
    while True:
        event = parser.next_event()
        if event is PAUSED:
            assert parser.next_request()
        elif event is NEED_DATA:
            break
        elif isinstance(event, Request):
            targets.append(event.target)
    assert targets == [b"/1", b"/2", b"/3"]


def test_buffer_compaction_keeps_data_correct():
    parser = RequestParser()
    parser.feed(post_with(b"Content-Length: 6", body=b"ab"))
    parser.next_event()
    parser.feed(b"c")
    assert parser.next_event() == Data(b"abc")
    parser.feed(b"d")
    parser.feed(b"ef")
    assert parser.next_event() == Data(b"def")


def test_request_repr_and_equality():
    request = head(GET)
    assert repr(request) == "Request(b'GET', b'/', '1.1', [(b'host', b'a')])"
    assert request == Request(b"GET", b"/", "1.1", [(b"host", b"a")])
    assert request != Request(b"GET", b"/", "1.1", [(b"host", b"a")], keep_alive=False)


# -- the target as path and query (events.split_target) ---------------------------


@pytest.mark.parametrize("target, expected", [
    (b"/", (b"/", b"")), (b"/a/b", (b"/a/b", b"")), (b"/a?b=c", (b"/a", b"b=c")),
    (b"/?", (b"/", b"")), (b"/a?b?c", (b"/a", b"b?c")), (b"/%3F", (b"/%3F", b"")),
    (b"http://h/a?q", (b"/a", b"q")), (b"http://h?q", (b"/", b"q")), (b"http://h", (b"/", b"")),
    (b"https://h:1/a/b", (b"/a/b", b"")), (b"*", (b"*", b"")), (b"h:443", (b"h:443", b"")),
])
def test_split_target(target, expected):
    from selectserver.http11.events import split_target
    assert split_target(target) == expected
