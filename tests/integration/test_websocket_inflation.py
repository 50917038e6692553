"""permessage-deflate against compression bombs, over real sockets.

Many clients at once each send a message that inflates far past
--ws-max-size: every one is closed with 1009, the inflater's memory stays
near one message limit in all (it inflates in bounded steps, one connection
at a time), and the server goes on serving.
"""

import base64
import os
import socket
import struct
import zlib

import pytest

try:
    import tracemalloc
except ImportError:   # PyPy: the closes are still checked, not the memory
    tracemalloc = None

from selectserver.websocket.frames import OP_BINARY, OP_CLOSE, OP_CONTINUATION, encode_frame
from tests.apps import ws_apps

MASK = b"\x5a\x11\xc3\x08"
LIMIT = 1 << 20            # --ws-max-size for these tests
CLIENTS = 20
BOMB_BYTES = 64 << 20      # zeros per client: 64 times the limit, ~64 KB on the wire


def compressed(data_pieces):
    """Payloads as a client's compressor sends them, one per piece, the
    last without its tail (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payloads = [compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH)
                for piece in data_pieces]
    payloads[-1] = payloads[-1][:-4]
    return payloads


@pytest.fixture(scope="module")
def bomb():
    """One frame of BOMB_BYTES zeros, and the same as 64 fragments."""
    zeros = b"\0" * (1 << 20)
    whole = compressed([b"".join([zeros] * (BOMB_BYTES >> 20))])[0]
    pieces = compressed([zeros] * (BOMB_BYTES >> 20))
    fragmented = b"".join(
        encode_frame(OP_BINARY if i == 0 else OP_CONTINUATION, payload,
                     fin=i == len(pieces) - 1, rsv1=i == 0, mask=MASK)
        for i, payload in enumerate(pieces))
    return encode_frame(OP_BINARY, whole, rsv1=True, mask=MASK), fragmented


class Client:
    """A raw websocket client that offers permessage-deflate."""

    def __init__(self, address):
        self.sock = socket.create_connection(address[:2], timeout=30)
        self.buffer = b""
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                          b"\r\nSec-WebSocket-Version: 13\r\n"
                          b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ") and b"permessage-deflate" in head, head

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        self.buffer += chunk

    def recv_frame(self):
        while len(self.buffer) < 2:
            self._fill()
        length = self.buffer[1] & 0x7F
        head_bytes = {126: 4, 127: 10}.get(length, 2)
        while len(self.buffer) < head_bytes:
            self._fill()
        if length == 126:
            length = struct.unpack("!H", self.buffer[2:4])[0]
        elif length == 127:
            length = struct.unpack("!Q", self.buffer[2:10])[0]
        while len(self.buffer) < head_bytes + length:
            self._fill()
        first, payload = self.buffer[0], self.buffer[head_bytes:head_bytes + length]
        self.buffer = self.buffer[head_bytes + length:]
        return first, payload

    def close_code(self):
        """The code of the server's Close frame, then the server's FIN."""
        first, payload = self.recv_frame()
        assert first & 0x0F == OP_CLOSE, (first, payload[:20])
        code = struct.unpack("!H", payload[:2])[0]
        try:
            while True:
                self._fill()
        except (EOFError, ConnectionResetError):
            pass
        return code

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("shape", ["one frame", "fragments"])
def test_bombs_from_many_clients_at_once_close_with_1009(serve, bomb, shape):
    server = serve(ws_apps.echo, ws_max_size_bytes=LIMIT)
    data = bomb[0] if shape == "one frame" else bomb[1]
    clients = [Client(server.address) for _ in range(CLIENTS)]
    # The memory the server allocates while it serves them, whatever thread:
    # one inflation (the limit and a step) and what each client sent, held
    # as it came; not an inflated message per client (the limit each, over
    # 20 MiB here), nor twice the limit per inflation.  Measured: 1.4 MiB.
    if tracemalloc is not None:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0] if tracemalloc else 0
        for client in clients:
            client.sock.sendall(data)
        codes = [client.close_code() for client in clients]
        peak = tracemalloc.get_traced_memory()[1] - base if tracemalloc else 0
    finally:
        if tracemalloc is not None:
            tracemalloc.stop()
        for client in clients:
            client.close()
    assert codes == [1009] * CLIENTS
    assert peak < 2 * LIMIT + 2 * CLIENTS * len(data), peak

    # Still serving, and a compressed message of exactly the limit is fine.
    message = bytes(range(256)) * (LIMIT // 256)
    client = Client(server.address)
    try:
        client.sock.sendall(encode_frame(OP_BINARY, compressed([message])[0],
                                         rsv1=True, mask=MASK))
        first, payload = client.recv_frame()
        assert first & 0x0F == OP_BINARY
        if first & 0x40:   # the server compressed its echo
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        assert payload == message
    finally:
        client.close()
