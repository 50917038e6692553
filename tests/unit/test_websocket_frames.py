"""RFC 6455 framing and RFC 7692 compression, on byte strings.

Every case runs three ways: fed whole, byte by byte, and split in two at
every offset.  The events (or the close code of the error) must be the same.
"""

import hashlib
import random
import struct
import zlib

import pytest

from selectserver.websocket.frames import (
    NEED_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    FrameParser,
    FrameWriter,
    Message,
    PerMessageDeflate,
    Ping,
    Pong,
    ProtocolError,
    encode_close_payload,
    encode_frame,
    parse_close,
    unmask,
    valid_close_code,
)

MASK = b"\x37\xfa\x21\x3d"
LIMIT = 1 << 20


def frame(opcode, payload=b"", fin=True, rsv1=False):
    """A masked client frame."""
    return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=MASK)


def raw_frame(first, length_bytes, payload, mask=MASK):
    """A masked frame with a hand-made header: ``first`` byte, length field as given."""
    return bytes((first, 0x80 | length_bytes[0])) + length_bytes[1:] + mask + unmask(payload, mask)


def client_deflate(*messages, no_context_takeover=False):
    """What a client's compressor sends for each message (tail stripped)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    payloads = []
    for message in messages:
        if no_context_takeover:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        payloads.append(data[:-4])
    return payloads


def run(chunks, limit=LIMIT, deflate=False):
    """Feed ``chunks``; collect events, ending with ('error', code) on a ProtocolError."""
    parser = FrameParser(limit, PerMessageDeflate() if deflate else None)
    events = []
    for chunk in chunks:
        parser.feed(chunk)
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                events.append(("error", exc.code))
                # Sticky: asked again, the same error.
                with pytest.raises(ProtocolError) as again:
                    parser.next_event()
                assert again.value.code == exc.code
                return events
            if event is NEED_DATA:
                break
            events.append(event)
    return events


def splits(data):
    """Whole, byte by byte, and two pieces at every offset."""
    yield [data]
    yield [data[i:i + 1] for i in range(len(data))]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]


def check(data, expected, **options):
    for chunks in splits(data):
        assert run(chunks, **options) == expected, [len(c) for c in chunks]


# -- valid input ---------------------------------------------------------------------------

GOOD = {
    "text": (frame(OP_TEXT, "héllo ☃".encode()), [Message("héllo ☃")]),
    "binary": (frame(OP_BINARY, b"\x00\xff\x10"), [Message(b"\x00\xff\x10")]),
    "empty text": (frame(OP_TEXT), [Message("")]),
    "empty binary": (frame(OP_BINARY), [Message(b"")]),
    "125 bytes, 7-bit length": (frame(OP_BINARY, b"a" * 125), [Message(b"a" * 125)]),
    "126 bytes, 16-bit length": (frame(OP_BINARY, b"b" * 126), [Message(b"b" * 126)]),
    "300 bytes, 16-bit length": (frame(OP_TEXT, b"c" * 300), [Message("c" * 300)]),
    "64-bit length field": (raw_frame(0x82, b"\x7f" + struct.pack("!Q", 200), b"d" * 200),
                            [Message(b"d" * 200)]),
    "two messages": (frame(OP_TEXT, b"one") + frame(OP_BINARY, b"two"),
                     [Message("one"), Message(b"two")]),
    "fragmented text, a character split across frames": (
        frame(OP_TEXT, "x☃".encode()[:2], fin=False)
        + frame(OP_CONTINUATION, "x☃".encode()[2:], fin=False)
        + frame(OP_CONTINUATION, b"!"),
        [Message("x☃!")]),
    "fragmented binary with empty fragments": (
        frame(OP_BINARY, b"", fin=False) + frame(OP_CONTINUATION, b"ab", fin=False)
        + frame(OP_CONTINUATION, b""),
        [Message(b"ab")]),
    "control frames between fragments": (
        frame(OP_TEXT, b"ab", fin=False) + frame(OP_PING, b"p") + frame(OP_PONG, b"q")
        + frame(OP_CONTINUATION, b"cd"),
        [Ping(b"p"), Pong(b"q"), Message("abcd")]),
    "ping with 125 bytes": (frame(OP_PING, b"z" * 125), [Ping(b"z" * 125)]),
    "empty ping and pong": (frame(OP_PING) + frame(OP_PONG), [Ping(b""), Pong(b"")]),
    "close without payload": (frame(OP_CLOSE), [Close(1005, "")]),
    "close with code": (frame(OP_CLOSE, b"\x03\xe8"), [Close(1000, "")]),
    "close with code and reason": (frame(OP_CLOSE, b"\x0f\xa0" + "bye ☃".encode()),
                                   [Close(4000, "bye ☃")]),
    "nothing is read after close": (frame(OP_CLOSE, b"\x03\xe9") + frame(OP_TEXT, b"late")
                                    + b"\xff\xff garbage",
                                    [Close(1001, "")]),
    "all-zero mask": (encode_frame(OP_TEXT, b"plain", mask=b"\0\0\0\0"), [Message("plain")]),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_valid_input(name):
    data, expected = GOOD[name]
    check(data, expected)


def test_long_lengths_whole_and_in_pieces():
    for size in (65535, 65536, 200000):
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        data = frame(OP_BINARY, payload)
        assert data[1] & 0x7F == (126 if size < 65536 else 127)
        for piece in (len(data), 1000, 4093):
            chunks = [data[i:i + piece] for i in range(0, len(data), piece)]
            assert run(chunks) == [Message(payload)]
        # Split around the header and the first mask rotations.
        for i in range(1, 20):
            assert run([data[:i], data[i:]]) == [Message(payload)]


COMPRESSED_TEXT = "compress me, compress me, compress me please ☃"


def compressed_cases():
    first, second = client_deflate(COMPRESSED_TEXT.encode(), COMPRESSED_TEXT.encode())
    half = len(first) // 2
    return {
        "compressed text": (frame(OP_TEXT, first, rsv1=True), [Message(COMPRESSED_TEXT)]),
        "context taken over by the next message": (
            frame(OP_TEXT, first, rsv1=True) + frame(OP_TEXT, second, rsv1=True),
            [Message(COMPRESSED_TEXT), Message(COMPRESSED_TEXT)]),
        "compressed and fragmented": (
            frame(OP_BINARY, first[:half], fin=False, rsv1=True)
            + frame(OP_PING, b"!")
            + frame(OP_CONTINUATION, first[half:]),
            [Ping(b"!"), Message(COMPRESSED_TEXT.encode())]),
        "compressed then plain": (
            frame(OP_TEXT, first, rsv1=True) + frame(OP_TEXT, b"plain"),
            [Message(COMPRESSED_TEXT), Message("plain")]),
        "empty compressed message": (
            frame(OP_BINARY, client_deflate(b"")[0], rsv1=True), [Message(b"")]),
    }


@pytest.mark.parametrize("name", sorted(compressed_cases()))
def test_compressed_input(name):
    data, expected = compressed_cases()[name]
    check(data, expected, deflate=True)


def test_compressed_message_ending_with_a_final_block():
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    final = compressor.compress(b"last one") + compressor.flush(zlib.Z_FINISH)
    second = client_deflate(b"after")[0]
    data = frame(OP_BINARY, final, rsv1=True) + frame(OP_BINARY, second, rsv1=True)
    check(data, [Message(b"last one"), Message(b"after")], deflate=True)


def test_client_no_context_takeover_resets_the_inflater():
    deflate = PerMessageDeflate(client_no_context_takeover=True)
    parser = FrameParser(LIMIT, deflate)
    for payload in client_deflate(b"same words", b"same words", no_context_takeover=True):
        parser.feed(frame(OP_TEXT, payload, rsv1=True))
        assert parser.next_event() == Message("same words")


# -- invalid input -------------------------------------------------------------------------

BAD = {
    "unmasked frame": (encode_frame(OP_TEXT, b"hi"), 1002),
    "RSV2": (raw_frame(0x81 | 0x20, b"\x02", b"hi"), 1002),
    "RSV3": (raw_frame(0x81 | 0x10, b"\x02", b"hi"), 1002),
    "RSV1 without an extension": (frame(OP_TEXT, b"hi", rsv1=True), 1002),
    "reserved opcode 3": (raw_frame(0x83, b"\x00", b""), 1002),
    "reserved opcode 7": (raw_frame(0x87, b"\x00", b""), 1002),
    "reserved opcode 11": (raw_frame(0x8B, b"\x00", b""), 1002),
    "reserved opcode 15": (raw_frame(0x8F, b"\x00", b""), 1002),
    "fragmented ping": (frame(OP_PING, b"p", fin=False), 1002),
    "fragmented close": (frame(OP_CLOSE, b"\x03\xe8", fin=False), 1002),
    "ping of 126 bytes": (frame(OP_PING, b"p" * 126), 1002),
    "close of 126 bytes": (frame(OP_CLOSE, b"\x03\xe8" + b"r" * 124), 1002),
    "continuation without a message": (frame(OP_CONTINUATION, b"x"), 1002),
    "new message inside a fragmented one": (
        frame(OP_TEXT, b"a", fin=False) + frame(OP_BINARY, b"b"), 1002),
    "64-bit length with the high bit set": (
        raw_frame(0x82, b"\x7f" + struct.pack("!Q", 1 << 63), b""), 1002),
    "invalid UTF-8": (frame(OP_TEXT, b"\xff\xfe"), 1007),
    "UTF-8 surrogate": (frame(OP_TEXT, b"\xed\xa0\x80"), 1007),
    "overlong UTF-8": (frame(OP_TEXT, b"\xc0\xaf"), 1007),
    "truncated UTF-8 at the end of a fragmented message": (
        frame(OP_TEXT, b"ok", fin=False) + frame(OP_CONTINUATION, "☃".encode()[:2]), 1007),
    "close with one byte": (frame(OP_CLOSE, b"\x03"), 1002),
    "close reason not UTF-8": (frame(OP_CLOSE, b"\x03\xe8\xff"), 1007),
    "message over the limit": (frame(OP_BINARY, b"x" * 101), 1009),
    "fragments over the limit": (
        frame(OP_TEXT, b"x" * 60, fin=False) + frame(OP_CONTINUATION, b"y" * 41), 1009),
    "a huge length is refused before its payload": (
        raw_frame(0x82, b"\x7f" + struct.pack("!Q", 1 << 40), b""), 1009),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_invalid_input(name):
    data, code = BAD[name]
    for chunks in splits(data):
        events = run(chunks, limit=100)
        assert events[-1] == ("error", code), (name, [len(c) for c in chunks], events)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_close_codes_no_peer_may_send(code):
    check(frame(OP_CLOSE, struct.pack("!H", code)), [("error", 1002)])


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  1012, 1013, 1014, 3000, 3999, 4000, 4999])
def test_close_codes_a_peer_may_send(code):
    assert valid_close_code(code)
    check(frame(OP_CLOSE, struct.pack("!H", code)), [Close(code, "")])


def test_compression_faults():
    payload = client_deflate(b"hello")[0]
    bad = {
        "RSV1 on a continuation": (
            frame(OP_TEXT, payload, fin=False, rsv1=True) + frame(OP_CONTINUATION, b"", rsv1=True),
            1002),
        "RSV1 on a control frame": (frame(OP_PING, b"", rsv1=True), 1002),
        "not deflate data": (frame(OP_BINARY, b"\xff\xff\xff\xff", rsv1=True), 1007),
    }
    for name, (data, code) in bad.items():
        for chunks in splits(data):
            assert run(chunks, deflate=True)[-1] == ("error", code), name


def test_a_compression_bomb_stops_at_the_limit():
    # 100 MB of zeros compress to ~100 KB; the limit is 1 MB.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = b"".join(compressor.compress(b"\0" * (1 << 20)) for _ in range(100))
    bomb += compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
    data = frame(OP_BINARY, bomb, rsv1=True)
    for piece in (len(data), 65536, 4096):
        chunks = [data[i:i + piece] for i in range(0, len(data), piece)]
        assert run(chunks, deflate=True) == [("error", 1009)]


STEP = PerMessageDeflate.INFLATE_STEP_BYTES


def zeros_bomb(size):
    """``size`` zero bytes as a client compresses them (about 1/1000)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = b"\0" * (1 << 20)
    data = b"".join(compressor.compress(piece[:min(1 << 20, size - offset)])
                    for offset in range(0, size, 1 << 20))
    return data + compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]


def test_inflation_comes_in_bounded_steps():
    noise = b"".join(hashlib.sha256(b"%d" % i).hexdigest().encode() for i in range(STEP // 64))
    message = noise * 5 + b"end"   # five steps and a bit, compressed about 1:4
    payload = client_deflate(message)[0]
    pieces = [b"before"]
    assert PerMessageDeflate().decompress(payload, len(message), True, pieces) == len(message)
    assert pieces[0] == b"before" and b"".join(pieces[1:]) == message
    assert max(len(piece) for piece in pieces) <= STEP
    assert run([frame(OP_BINARY, payload, rsv1=True)], limit=len(message), deflate=True) == [
        Message(message)]
    assert run([frame(OP_BINARY, payload, rsv1=True)], limit=len(message) - 1,
               deflate=True) == [("error", 1009)]


@pytest.mark.parametrize("payload, code", [
    (zeros_bomb(STEP * 4), 1009), (b"\xff\xff\xff\xff", 1007)])
def test_failed_inflation_adds_nothing(payload, code):
    pieces = [b"kept"]
    deflate = PerMessageDeflate()
    with pytest.raises(ProtocolError) as info:
        deflate.decompress(payload, STEP * 3, True, pieces)
    assert info.value.code == code and pieces == [b"kept"]
    # The zlib state, with the input it had not consumed, is gone.
    assert deflate._decompressor is None


def test_a_failed_parser_keeps_no_traceback():
    # The error it raises again is made anew: the first one's traceback
    # held the frames it came through, and the payload with them.
    parser = FrameParser(STEP, PerMessageDeflate())
    parser.feed(frame(OP_BINARY, zeros_bomb(STEP * 4), rsv1=True))
    with pytest.raises(ProtocolError) as first:
        parser.next_event()
    with pytest.raises(ProtocolError) as again:
        parser.next_event()
    assert first.value.code == 1009
    assert (again.value.code, again.value.reason) == (first.value.code, first.value.reason)
    assert again.value is not first.value


def test_a_compression_bomb_costs_the_limit_and_one_step():
    # The memory the inflater allocates, counted by tracemalloc: not the
    # whole message (20 MB), not twice the limit as one unbounded zlib call
    # makes (its output blocks, then their copy into one bytes object).
    tracemalloc = pytest.importorskip("tracemalloc", reason="not on PyPy")
    data = frame(OP_BINARY, zeros_bomb(20 * 1000 * 1000), rsv1=True)
    limit = 1 << 20
    parser = FrameParser(limit, PerMessageDeflate())
    parser.feed(data)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as info:
            parser.next_event()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009
    # The unmasked payload (~20 KB), the pieces up to the limit, one step.
    assert peak < limit + 2 * STEP + 2 * len(data), peak


def test_compressed_size_on_the_wire_is_bounded_too():
    # Empty stored blocks inflate to nothing, forever: still refused.
    empty_blocks = b"\x00\x00\x00\xff\xff" * 1000
    data = frame(OP_BINARY, empty_blocks, rsv1=True)
    assert run([data], limit=100, deflate=True) == [("error", 1009)]


def test_exactly_at_the_limit_is_fine():
    assert run([frame(OP_BINARY, b"x" * 100)], limit=100) == [Message(b"x" * 100)]
    payload = client_deflate(b"y" * 100)[0]
    assert run([frame(OP_BINARY, payload, rsv1=True)], limit=100, deflate=True) == [
        Message(b"y" * 100)]
    payload = client_deflate(b"y" * 101)[0]
    assert run([frame(OP_BINARY, payload, rsv1=True)], limit=100, deflate=True) == [
        ("error", 1009)]


def test_random_bytes_only_ever_raise_protocol_errors():
    rng = random.Random(6455)
    prefixes = [b"", frame(OP_TEXT, b"ok"), frame(OP_TEXT, b"a", fin=False)]
    for _ in range(3000):
        data = rng.choice(prefixes) + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        for deflate in (False, True):
            parser = FrameParser(64, PerMessageDeflate() if deflate else None)
            parser.feed(data)
            try:
                for _ in range(50):
                    if parser.next_event() is NEED_DATA:
                        break
            except ProtocolError as exc:
                assert exc.code in (1002, 1007, 1009)


def test_buffered_bytes_counts_what_is_not_yet_an_event():
    parser = FrameParser(LIMIT)
    data = frame(OP_TEXT, b"hello")
    parser.feed(data[:3])
    assert parser.next_event() is NEED_DATA
    assert parser.buffered_bytes == 3
    parser.feed(data[3:])
    assert parser.next_event() == Message("hello")
    assert parser.buffered_bytes == 0


# -- writing -------------------------------------------------------------------------------


def read_server_frame(data):
    """(fin, rsv1, opcode, payload, rest) of an unmasked frame."""
    first, second = data[0], data[1]
    assert not second & 0x80, "server frames are not masked"
    length, offset = second & 0x7F, 2
    if length == 126:
        length, offset = struct.unpack("!H", data[2:4])[0], 4
    elif length == 127:
        length, offset = struct.unpack("!Q", data[2:10])[0], 10
    payload = data[offset:offset + length]
    assert len(payload) == length
    return bool(first & 0x80), bool(first & 0x40), first & 0x0F, payload, data[offset + length:]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100000])
def test_writer_lengths(size):
    writer = FrameWriter()
    payload = b"\x01" * size
    fin, rsv1, opcode, body, rest = read_server_frame(writer.message(payload))
    assert (fin, rsv1, opcode, body, rest) == (True, False, OP_BINARY, payload, b"")
    header = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(writer.message(payload)) == header + size
    fin, rsv1, opcode, body, rest = read_server_frame(writer.message("é" * size))
    assert opcode == OP_TEXT and body.decode() == "é" * size


def test_writer_control_frames():
    writer = FrameWriter()
    assert read_server_frame(writer.ping(b"abc"))[2:4] == (OP_PING, b"abc")
    assert read_server_frame(writer.pong(b"abc"))[2:4] == (OP_PONG, b"abc")
    assert read_server_frame(writer.close(1001, "gone"))[2:4] == (OP_CLOSE, b"\x03\xe9gone")
    assert read_server_frame(writer.close(1005))[2:4] == (OP_CLOSE, b"")


def test_a_close_reason_is_cut_to_fit_at_a_character_boundary():
    payload = encode_close_payload(1000, "☃" * 100)
    assert len(payload) <= 125
    assert parse_close(payload) == Close(1000, "☃" * 41)


def test_writer_compresses_and_a_client_inflates():
    writer = FrameWriter(PerMessageDeflate())
    inflater = zlib.decompressobj(-15)
    for message in ("hello " * 50, "hello " * 50, "", "other"):
        fin, rsv1, opcode, payload, rest = read_server_frame(writer.message(message))
        assert rsv1 and fin and opcode == OP_TEXT and rest == b""
        assert inflater.decompress(payload + b"\x00\x00\xff\xff").decode() == message


def test_server_no_context_takeover_lets_each_message_inflate_alone():
    writer = FrameWriter(PerMessageDeflate(server_no_context_takeover=True, server_max_window_bits=9))
    for _ in range(3):
        payload = read_server_frame(writer.message(b"repeat " * 40))[3]
        assert zlib.decompressobj(-9).decompress(payload + b"\x00\x00\xff\xff") == b"repeat " * 40


def test_a_server_frame_parses_back_when_masked():
    # encode_frame with a mask is what the test clients and benchmarks send.
    for size in (0, 3, 126, 70000):
        data = encode_frame(OP_BINARY, b"m" * size, mask=b"abcd")
        assert run([data]) == [Message(b"m" * size)]
