"""RFC 6455 framing and RFC 7692 compression, without I/O.

``FrameParser`` turns the bytes a client sends into events: whole
``Message``s (fragments joined, compressed ones inflated, text decoded),
and the control frames ``Ping``, ``Pong`` and ``Close``.  ``FrameWriter``
turns messages and control frames into the bytes a server sends.  Neither
knows about sockets, clocks or ASGI; the ASGI cycle (``asgi.py``) drives
them.

Every fault a client can commit is a ``ProtocolError`` carrying the close
code to answer with (1002 protocol, 1007 bad data, 1009 too big), in the
way ``errors.HTTPError`` carries a status.  After one, the parser raises it
again on every call and reads nothing more.

Invariants: the work is linear in the bytes received however they are
split; a data frame's payload is consumed as it arrives (a message never
sits in the buffer twice); and a message, compressed or not, never grows
past ``max_message_bytes`` in memory: a compressed one is held as it came
until its last frame, then inflated in bounded steps that stop at the limit.
"""

from __future__ import annotations

import struct
import zlib
from typing import List, Optional, Tuple, Union

from ..http11.events import NEED_DATA

# RFC 6455 §5.2 opcodes.
OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_FIN = 0x80
_RSV1 = 0x40
_RSV23 = 0x30
_MASKED = 0x80

# RFC 6455 §7.4.1 and the IANA registry: the codes a peer may send in a
# Close frame.  1004 is reserved, 1005/1006/1015 must never be sent, and
# 1016-2999 are unassigned (they belong to future RFCs).
_SENDABLE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                             1012, 1013, 1014))

# RFC 6455 §7.4.1: "no status code was actually present".
NO_STATUS = 1005
# RFC 6455 §5.5: control frames carry at most 125 bytes; a close reason
# is what is left after the two-byte code.
MAX_CONTROL_PAYLOAD = 125
MAX_CLOSE_REASON_BYTES = MAX_CONTROL_PAYLOAD - 2

# RFC 7692 §7.2.1: a compressed message ends with the four octets of an
# empty stored block, which the sender strips and the receiver appends.
_DEFLATE_TAIL = b"\x00\x00\xff\xff"


def valid_close_code(code: int) -> bool:
    """True for a code a peer may put in a Close frame (RFC 6455 §7.4)."""
    return code in _SENDABLE_CODES or 3000 <= code <= 4999


class ProtocolError(Exception):
    """The client broke the protocol; ``code`` is the close code to answer."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__("%d %s" % (code, reason))
        self.code = code
        self.reason = reason


# -- events ---------------------------------------------------------------------------


class Message:
    """A complete data message: ``data`` is ``str`` for text, ``bytes`` for binary."""

    __slots__ = ("data",)

    def __init__(self, data: Union[str, bytes]) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Message) and type(other.data) is type(self.data)
                and other.data == self.data)

    def __repr__(self) -> str:
        return "Message(%r)" % (self.data,)


class _Control:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return other.__class__ is self.__class__ and other.payload == self.payload  # type: ignore

    def __repr__(self) -> str:
        return "%s(%r)" % (self.__class__.__name__, self.payload)


class Ping(_Control):
    """A ping; RFC 6455 §5.5.2 wants a pong with the same payload."""

    __slots__ = ()


class Pong(_Control):
    """A pong, solicited or not (RFC 6455 §5.5.3 allows both)."""

    __slots__ = ()


class Close:
    """The client's Close frame; ``code`` is 1005 when it carried none."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int = NO_STATUS, reason: str = "") -> None:
        self.code = code
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Close) and (other.code, other.reason) == (self.code, self.reason)

    def __repr__(self) -> str:
        return "Close(%d, %r)" % (self.code, self.reason)


Event = Union[Message, Ping, Pong, Close, object]


# -- masking --------------------------------------------------------------------------


# region: unmask
def unmask(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 §5.3).

    One XOR of two big integers: a single pass in C, where a Python loop
    over the bytes would be a hundred times slower.
    """
    length = len(data)
    if not length:
        return b""
    key = (mask * ((length + 3) >> 2))[:length] if length > 4 else mask[:length]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
# endregion: unmask


# -- permessage-deflate -------------------------------------------------------------------


class PerMessageDeflate:
    """The agreed parameters and the zlib state of permessage-deflate.

    ``handshake.negotiate_deflate()`` makes one; the parser inflates with it
    and the writer deflates with it.  Without context takeover the sender
    resets its window after every message (RFC 7692 §7.1.1).
    """

    __slots__ = ("server_no_context_takeover", "client_no_context_takeover",
                 "server_max_window_bits", "client_max_window_bits",
                 "_compressor", "_decompressor")

    # Smaller than zlib's defaults (15 bits, memLevel 8: ~260 KiB a
    # connection) and still compressing text well: ~20 KiB a connection.
    MEM_LEVEL = 5

    # The most output one zlib call may make.  64 KiB of compressed zeros
    # stand for 64 MiB: in one call bounded only by the message limit, zlib
    # would build up to the limit in blocks and copy it once more before
    # the limit could be checked (twice the limit at its peak, measured).
    INFLATE_STEP_BYTES = 64 * 1024

    def __init__(self, server_no_context_takeover: bool = False,
                 client_no_context_takeover: bool = False,
                 server_max_window_bits: int = 15, client_max_window_bits: int = 15) -> None:
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self._compressor: Optional[zlib._Compress] = None
        self._decompressor: Optional[zlib._Decompress] = None

    def compress(self, data: bytes) -> bytes:
        """One message's payload, compressed, without the final empty block."""
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.server_max_window_bits,
                self.MEM_LEVEL)
        # A full flush also forgets the window: what "no context takeover"
        # promises the client's inflater.
        flush_mode = zlib.Z_FULL_FLUSH if self.server_no_context_takeover else zlib.Z_SYNC_FLUSH
        payload = compressor.compress(data) + compressor.flush(flush_mode)
        if payload.endswith(_DEFLATE_TAIL):
            payload = payload[:-4]
        return payload

    def decompress(self, data: bytes, max_bytes: int, end: bool, pieces: List[bytes]) -> int:
        """Inflate one more piece of a message into ``pieces``; ``end`` at
        its last piece.  Returns the number of bytes added.

        The output comes in steps of at most ``INFLATE_STEP_BYTES``, each
        checked against ``max_bytes`` before the next is made: a compression
        bomb costs at most ``max_bytes`` plus one step, and nothing is added
        to ``pieces`` when it raises ``ProtocolError`` 1009.  Raises 1007
        when the data is not valid deflate.  After either, the zlib state is
        gone: the connection is failing.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self.client_max_window_bits)
        step = self.INFLATE_STEP_BYTES
        # The input goes in in steps too: zlib copies what a call leaves
        # unconsumed, and a step of output may consume little of it.
        view = memoryview(data)
        inputs: List[Union[bytes, memoryview]] = [
            view[offset:offset + step] for offset in range(0, len(data), step)]
        if end:
            inputs.append(_DEFLATE_TAIL)
        output_bytes = 0
        start = len(pieces)
        try:
            for piece in inputs:
                while True:
                    # One byte over what is allowed is enough to know it is
                    # too much.  (zlib's max_length 0 would mean "no limit".)
                    size = min(step, max_bytes - output_bytes + 1)
                    output = decompressor.decompress(piece, size)
                    output_bytes += len(output)
                    if output_bytes > max_bytes:
                        raise ProtocolError(1009, "message too big")
                    if output:
                        pieces.append(output)
                    piece = decompressor.unconsumed_tail
                    # A full step may leave output inside zlib with no input left.
                    if not piece and len(output) < size:
                        break
        except (ProtocolError, zlib.error) as exc:
            del pieces[start:]
            # It holds the input it did not consume; nothing will read it.
            self._decompressor = None
            if isinstance(exc, ProtocolError):
                raise
            raise ProtocolError(1007, "invalid compressed data") from None
        if end and (self.client_no_context_takeover or decompressor.eof):
            # The next message starts a fresh stream (after a final block,
            # zlib would read it as trailing garbage).
            self._decompressor = None
        return output_bytes

    def reset(self) -> None:
        """Drop the zlib state (the memory goes with it)."""
        self._compressor = None
        self._decompressor = None


# -- reading ----------------------------------------------------------------------------

_HEAD, _PAYLOAD, _CLOSED, _FAILED = range(4)


class FrameParser:
    """Server side: bytes from a client in, events out.

    ``feed()`` what the socket gave; call ``next_event()`` until it answers
    ``NEED_DATA``.  After a ``Close`` event the parser reads nothing more
    (RFC 6455 §5.5.1: nothing may follow a Close frame).
    """

    __slots__ = (
        "max_message_bytes", "deflate",
        "_buffer", "_offset", "_state", "_error",
        # the frame being read
        "_opcode", "_fin", "_mask", "_remaining",
        # the message being assembled
        "_message_opcode", "_compressed", "_fragments", "_message_bytes", "_wire_bytes",
    )

    def __init__(self, max_message_bytes: int, deflate: Optional[PerMessageDeflate] = None) -> None:
        self.max_message_bytes = max_message_bytes
        self.deflate = deflate
        self._buffer: Union[bytes, bytearray] = b""
        self._offset = 0
        self._state = _HEAD
        # (code, reason), not the exception: its traceback would keep the
        # frames it came through alive, and the received bytes with them
        # (64 KiB a connection, measured with 20 bombs at once).
        self._error: Optional[Tuple[int, str]] = None
        self._opcode = 0
        self._fin = False
        self._mask = b""
        self._remaining = 0
        self._message_opcode = 0           # 0: no message in progress
        self._compressed = False
        self._fragments: List[bytes] = []
        self._message_bytes = 0            # received; once inflated, inflated
        self._wire_bytes = 0               # as sent: the frames' payload lengths

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes) -> None:
        """Append received bytes (ignored once closed or failed)."""
        if not data or self._state >= _CLOSED:
            return
        buffer = self._buffer
        if self._offset == len(buffer):
            # The usual case: everything before was consumed.  Keep the
            # bytes object as it is, no copy.
            self._buffer = data
            self._offset = 0
            return
        if type(buffer) is not bytearray:
            buffer = bytearray(memoryview(buffer)[self._offset:])
        elif self._offset:
            del buffer[:self._offset]
        buffer += data
        self._buffer = buffer
        self._offset = 0

    def next_event(self) -> Event:
        """The next event or ``NEED_DATA``.

        Raises ``ProtocolError`` for anything the client got wrong, and the
        same one again on every later call.
        """
        try:
            while True:
                state = self._state
                if state == _HEAD:
                    if not self._read_head():
                        return NEED_DATA
                elif state == _PAYLOAD:
                    event = self._read_payload()
                    if event is not None:
                        return event
                    if self._state == _PAYLOAD:
                        return NEED_DATA
                elif state == _CLOSED:
                    return NEED_DATA
                else:
                    raise ProtocolError(*self._error)  # type: ignore[misc]
        except ProtocolError as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: ProtocolError) -> None:
        self._state = _FAILED
        self._error = (exc.code, exc.reason)
        self._buffer = b""
        self._offset = 0
        self._fragments = []

    def _read_head(self) -> bool:
        """Parse a frame header if all of it is here; False if not."""
        buffer, offset = self._buffer, self._offset
        available = len(buffer) - offset
        if available < 2:
            return False
        first, second = buffer[offset], buffer[offset + 1]
        # The first two bytes say enough to refuse most faults at once.
        if not second & _MASKED:
            raise ProtocolError(1002, "unmasked frame from a client")  # RFC 6455 §5.1
        if first & _RSV23:
            raise ProtocolError(1002, "reserved bits set")  # §5.2: no extension defines them
        opcode = first & 0x0F
        fin = bool(first & _FIN)
        length = second & 0x7F
        if opcode >= OP_CLOSE:
            if opcode > OP_PONG:
                raise ProtocolError(1002, "reserved opcode %d" % opcode)
            # RFC 6455 §5.5: control frames are short and whole.
            if not fin:
                raise ProtocolError(1002, "fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                raise ProtocolError(1002, "control frame longer than 125 bytes")
            if first & _RSV1:
                raise ProtocolError(1002, "compressed control frame")  # RFC 7692 §6.1
        elif opcode > OP_BINARY:
            raise ProtocolError(1002, "reserved opcode %d" % opcode)
        if length < 126:
            head_bytes = 6
        elif length == 126:
            head_bytes = 8
        else:
            head_bytes = 14
        if available < head_bytes:
            return False
        if length == 126:
            length = (buffer[offset + 2] << 8) | buffer[offset + 3]
        elif length == 127:
            length = int.from_bytes(buffer[offset + 2:offset + 10], "big")
            if length >> 63:
                raise ProtocolError(1002, "frame length with the high bit set")  # §5.2
        if opcode < OP_CLOSE:
            self._start_data_frame(opcode, bool(first & _RSV1), length)
        self._opcode = opcode
        self._fin = fin
        self._mask = buffer[offset + head_bytes - 4:offset + head_bytes]
        self._remaining = length
        self._offset = offset + head_bytes
        self._state = _PAYLOAD
        return True

    def _start_data_frame(self, opcode: int, rsv1: bool, length: int) -> None:
        if opcode == OP_CONTINUATION:
            if not self._message_opcode:
                raise ProtocolError(1002, "continuation frame without a message")  # §5.4
            if rsv1:
                raise ProtocolError(1002, "RSV1 on a continuation frame")  # RFC 7692 §6.1
        else:
            if self._message_opcode:
                raise ProtocolError(1002, "new message inside a fragmented one")  # §5.4
            if rsv1 and self.deflate is None:
                raise ProtocolError(1002, "RSV1 set without a negotiated extension")  # §5.2
            self._message_opcode = opcode
            self._compressed = rsv1
            self._message_bytes = 0
            self._wire_bytes = 0
        # Refuse an oversized message before a byte of its payload is read.
        # A compressed one is also checked as it inflates; its wire size
        # only gets the margin deflate can add (5 bytes per 64 KiB stored
        # block), so an endless stream of empty blocks is refused too, and
        # what it holds until it is inflated stays near the limit.
        wire_bytes = self._wire_bytes + length
        limit = self.max_message_bytes
        if self._compressed:
            limit += (limit >> 4) + 1024
        if wire_bytes > limit:
            raise ProtocolError(1009, "message larger than %d bytes" % self.max_message_bytes)
        self._wire_bytes = wire_bytes

    def _read_payload(self) -> Optional[Event]:
        """Consume payload bytes; the event when a frame or message completes."""
        buffer, offset = self._buffer, self._offset
        remaining = self._remaining
        available = len(buffer) - offset
        opcode = self._opcode
        if opcode >= OP_CLOSE:
            # A control payload is at most 125 bytes: wait for all of it.
            if available < remaining:
                return None
            payload = unmask(buffer[offset:offset + remaining], self._mask)
            self._offset = offset + remaining
            self._state = _HEAD
            return self._control(opcode, payload)
        take = remaining if available >= remaining else available
        if take:
            mask = self._mask
            chunk = unmask(buffer[offset:offset + take], mask)
            # The mask runs on across the frame: rotate it by what was used.
            shift = take & 3
            if shift:
                self._mask = mask[shift:] + mask[:shift]
            self._offset = offset + take
            remaining -= take
            self._remaining = remaining
        elif remaining:
            return None
        else:
            chunk = b""
        end = not remaining and self._fin
        if chunk:
            self._fragments.append(chunk)
            self._message_bytes += len(chunk)
        if end and self._compressed:
            self._inflate()
        if remaining:
            # Every buffered byte was taken: the received bytes need not
            # stay alive while the rest of the frame is awaited.
            self._buffer = b""
            self._offset = 0
            return None
        self._state = _HEAD
        if not end:
            return None
        return self._finish_message()

    def _inflate(self) -> None:
        """Replace the compressed payload of the message by its inflation.

        A compressed message is kept as it came, and inflated only once its
        last frame is here: what it holds while it arrives is its size on
        the wire (bounded in _start_data_frame), never what it inflates to.
        So clients that each send a compression bomb at once cost the wire
        bytes each, and one inflation at a time, that stops at the limit.
        """
        compressed = self._fragments
        data = compressed[0] if len(compressed) == 1 else b"".join(compressed)
        self._fragments = []
        del compressed
        self._message_bytes = self.deflate.decompress(  # type: ignore[union-attr]
            data, self.max_message_bytes, True, self._fragments)

    def _finish_message(self) -> Message:
        fragments = self._fragments
        if len(fragments) == 1:
            data = fragments[0]
        else:
            data = b"".join(fragments)
        self._fragments = []
        opcode, self._message_opcode = self._message_opcode, 0
        if opcode == OP_TEXT:
            try:
                return Message(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise ProtocolError(1007, "invalid UTF-8 in a text message") from None
        return Message(data)

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        close = parse_close(payload)
        self._state = _CLOSED
        self._buffer = b""
        self._offset = 0
        self._fragments = []
        return close


def parse_close(payload: bytes) -> Close:
    """The code and reason of a Close frame's payload (RFC 6455 §5.5.1).

    Raises ``ProtocolError``: 1002 for a one-byte payload or a code no peer
    may send, 1007 for a reason that is not UTF-8.
    """
    if not payload:
        return Close(NO_STATUS, "")
    if len(payload) < 2:
        raise ProtocolError(1002, "close frame with a one-byte payload")
    code = (payload[0] << 8) | payload[1]
    if not valid_close_code(code):
        raise ProtocolError(1002, "invalid close code %d" % code)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(1007, "invalid UTF-8 in a close reason") from None
    return Close(code, reason)


# -- writing ------------------------------------------------------------------------------

# The two-byte heads of short unfragmented frames, built once.
_SHORT_HEADS = {opcode: [bytes((_FIN | opcode, length)) for length in range(126)]
                for opcode in (OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)}
_SHORT_COMPRESSED_HEADS = {opcode: [bytes((_FIN | _RSV1 | opcode, length)) for length in range(126)]
                           for opcode in (OP_TEXT, OP_BINARY)}
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


def encode_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False,
                 mask: Optional[bytes] = None) -> bytes:
    """One frame.  ``mask`` (4 bytes) is for clients: tests and benchmarks."""
    length = len(payload)
    first = opcode | (_FIN if fin else 0) | (_RSV1 if rsv1 else 0)
    masked = _MASKED if mask is not None else 0
    if length < 126:
        head = bytes((first, masked | length))
    elif length < 65536:
        head = _HEAD16.pack(first, masked | 126, length)
    else:
        head = _HEAD64.pack(first, masked | 127, length)
    if mask is not None:
        return head + mask + unmask(payload, mask)
    return head + payload


def encode_close_payload(code: int = 1000, reason: str = "") -> bytes:
    """The payload of a Close frame; the reason is cut to fit at a character boundary."""
    if code == NO_STATUS:
        return b""
    encoded = reason.encode("utf-8")
    if len(encoded) > MAX_CLOSE_REASON_BYTES:
        encoded = encoded[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + encoded


class FrameWriter:
    """Server side: messages and control frames out, as bytes (never masked)."""

    __slots__ = ("deflate",)

    def __init__(self, deflate: Optional[PerMessageDeflate] = None) -> None:
        self.deflate = deflate

    def message(self, data: Union[str, bytes]) -> bytes:
        """One unfragmented text (``str``) or binary (bytes-like) message.

        Raises ``TypeError`` for anything else.
        """
        if type(data) is str:
            opcode = OP_TEXT
            payload = data.encode("utf-8")
        else:
            opcode = OP_BINARY
            # memoryview() refuses what is not bytes-like (bytes(5) would not).
            payload = data if type(data) is bytes else memoryview(data).tobytes()
        deflate = self.deflate
        if deflate is not None:
            payload = deflate.compress(payload)
            length = len(payload)
            if length < 126:
                return _SHORT_COMPRESSED_HEADS[opcode][length] + payload
            return encode_frame(opcode, payload, rsv1=True)
        length = len(payload)
        if length < 126:
            return _SHORT_HEADS[opcode][length] + payload
        return encode_frame(opcode, payload)

    def ping(self, payload: bytes = b"") -> bytes:
        """A Ping frame (a payload of at most 125 bytes)."""
        return _SHORT_HEADS[OP_PING][len(payload)] + payload

    def pong(self, payload: bytes = b"") -> bytes:
        """A Pong frame, echoing a Ping's payload."""
        return _SHORT_HEADS[OP_PONG][len(payload)] + payload

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """A Close frame; code 1005 means an empty payload (no code at all)."""
        payload = encode_close_payload(code, reason)
        return _SHORT_HEADS[OP_CLOSE][len(payload)] + payload
