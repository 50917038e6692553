"""Step 3: per-connection buffers and a state machine.

Each client gets a Connection object with a read buffer, a write buffer
and one named state.  Bytes are kept until a whole request is there
(partial reads); what send() did not take waits for the socket to be
writable (partial writes); after a response the connection goes back to
reading, for the next request on it (keep-alive), which may already be in
the buffer (pipelining).  The selector's interest is derived from the
state.  docs/tutorial/step3_states.md explains it.

    python3 docs/tutorial/step3_states.py --port 8003
"""

import enum
import selectors
import sys

from step1_blocking import main, parse_head, response


# region: states
class State(enum.Enum):
    READING = "reading"      # waiting for (the rest of) a request
    WRITING = "writing"      # a response is partly sent; waiting to send more
    CLOSED = "closed"


# The only legal moves; anything else is a bug in this file.
TRANSITIONS = {
    State.READING: {State.WRITING, State.CLOSED},
    State.WRITING: {State.READING, State.CLOSED},
    State.CLOSED: set(),
}

# What each state waits for; a closed socket is not in the selector.
INTEREST = {State.READING: selectors.EVENT_READ, State.WRITING: selectors.EVENT_WRITE}
# endregion: states


def app(method, target):
    if target.startswith("/big?"):
        return b"x" * int(target[5:])
    return b"Hello: " + method.encode() + b" " + target.encode() + b"\n"


class Connection:
    def __init__(self, selector, sock):
        self.selector = selector
        self.sock = sock
        self.received = b""           # bytes read but not yet parsed
        self.to_send = memoryview(b"")  # the part of the response not yet sent
        self.keep_alive = True
        self.state = State.READING
        selector.register(sock, INTEREST[self.state], self)

    # region: set_state
    def set_state(self, new):
        """The one place the state changes; the selector follows it."""
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError("%s -> %s" % (self.state, new))
        self.state = new
        if new is State.CLOSED:
            self.selector.unregister(self.sock)
            self.sock.close()
        else:
            self.selector.modify(self.sock, INTEREST[new], self)
    # endregion: set_state

    # region: on_readable
    def on_readable(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError:
            data = b""
        if not data:
            self.set_state(State.CLOSED)
            return
        self.received += data
        self.serve_buffered()
    # endregion: on_readable

    # region: serve_buffered
    def serve_buffered(self):
        """Answer the complete requests in the buffer, in order, each one
        once the answer before it is sent whole."""
        while self.state is State.READING:
            head, found, rest = self.received.partition(b"\r\n\r\n")
            if not found:
                return                  # a partial head waits for more bytes
            method, target, version, fields = parse_head(head)
            length = int(fields.get("content-length", "0"))
            if len(rest) < length:
                return                  # the body is not all here yet
            self.received = rest[length:]  # what is left may be the next request
            self.keep_alive = (version == "HTTP/1.1"
                               and fields.get("connection", "").lower() != "close")
            body = app(method, target)
            self.to_send = memoryview(response("200 OK", body, self.keep_alive))
            self.send_some()            # send at once: most responses fit
    # endregion: serve_buffered

    # region: sending
    def send_some(self):
        try:
            sent = self.sock.send(self.to_send)
        except BlockingIOError:
            sent = 0
        except ConnectionError:
            self.set_state(State.CLOSED)
            return
        self.to_send = self.to_send[sent:]  # a slice of a memoryview copies nothing
        if self.to_send:
            if self.state is State.READING:
                self.set_state(State.WRITING)  # wait until the client reads
        elif not self.keep_alive:
            self.set_state(State.CLOSED)
        elif self.state is State.WRITING:
            self.set_state(State.READING)

    def on_writable(self):
        self.send_some()
        self.serve_buffered()           # a pipelined request may be waiting
    # endregion: sending


# region: serve
def serve(listener):
    listener.setblocking(False)
    selector = selectors.DefaultSelector()  # epoll on Linux
    selector.register(listener, selectors.EVENT_READ, None)
    while True:
        for key, events in selector.select():
            if key.data is None:        # the listener: a client is waiting
                try:
                    sock, address = listener.accept()
                except BlockingIOError:
                    continue
                sock.setblocking(False)
                Connection(selector, sock)
            elif events & selectors.EVENT_READ:
                key.data.on_readable()
            elif events & selectors.EVENT_WRITE:
                key.data.on_writable()
# endregion: serve


if __name__ == "__main__":
    sys.exit(main(serve, __doc__, 8003))
