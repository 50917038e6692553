"""Step 5: running an ASGI app, a coroutine stepped by hand.

An ASGI app may wait (on a timer, a database, the body) and the server
must serve others meanwhile.  step5_task.Task steps it; throw() raises
TimeoutError where it waits at its deadline.  docs/tutorial/step5_coroutines.md.

    python3 docs/tutorial/step5_coroutines.py --port 8005 --app-timeout 2
    curl 'http://127.0.0.1:8005/sleep?1'
"""

import enum
import os
import selectors
import sys
import time

from step1_blocking import main, parse_head, response
from step5_task import TIMERS, Task, sleep


# region: app
async def app(scope, receive, send):
    """An ASGI 3 app; /sleep?S answers after S seconds without holding up others."""
    request = await receive()
    if scope["path"] == "/sleep":
        await sleep(float(scope["query_string"] or b"1"))
    body = b"Hello from an ASGI app in process %d: %s %s (%d bytes in)\n" % (
        os.getpid(), scope["method"].encode(), scope["path"].encode(), len(request["body"]))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
# endregion: app


# region: states
class State(enum.Enum):
    READING = "reading"
    RUNNING = "running"     # the app has the request; it may be waiting on a Future
    WRITING = "writing"
    CLOSED = "closed"


TRANSITIONS = {State.READING: {State.RUNNING, State.CLOSED},
               State.RUNNING: {State.READING, State.WRITING, State.CLOSED},
               State.WRITING: {State.READING, State.CLOSED}, State.CLOSED: set()}
# While the app runs we still read: to buffer a pipelined request, and see EOF.
INTEREST = {State.READING: selectors.EVENT_READ, State.RUNNING: selectors.EVENT_READ,
            State.WRITING: selectors.EVENT_WRITE}
# endregion: states
STATUS = {200: "200 OK", 500: "500 Internal Server Error", 504: "504 Gateway Timeout"}


class Connection:
    def __init__(self, selector, sock, app_timeout):
        self.selector, self.sock, self.app_timeout = selector, sock, app_timeout
        self.received, self.to_send, self.keep_alive = b"", memoryview(b""), True
        self.state = State.READING
        selector.register(sock, INTEREST[self.state], self)

    def set_state(self, new):                   # as in step 3
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError("%s -> %s" % (self.state, new))
        self.state = new
        if new is State.CLOSED:
            self.selector.unregister(self.sock)
            self.sock.close()
        else:
            self.selector.modify(self.sock, INTEREST[new], self)

    def on_readable(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError:
            data = b""
        if not data:
            self.set_state(State.CLOSED)    # a running app finds out when it sends
            return
        self.received += data
        self.serve_buffered()

    # region: serve_buffered
    def serve_buffered(self):
        head, found, rest = self.received.partition(b"\r\n\r\n")
        if self.state is not State.READING or not found:
            return
        method, target, version, fields = parse_head(head)
        length = int(fields.get("content-length", "0"))
        if len(rest) < length:
            return
        self.received, body = rest[length:], rest[:length]
        self.keep_alive = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        path, _, query = target.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": version[5:],
                 "method": method, "path": path, "query_string": query.encode(),
                 "headers": [(k.encode(), v.encode()) for k, v in fields.items()]}
        self.status, self.body = 500, b""

        async def receive():    # the whole body is here: nothing to wait for
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):    # collected here, sent whole when the app ends
            if message["type"] == "http.response.start":
                self.status = message["status"]
            else:
                self.body += message.get("body", b"")

        self.set_state(State.RUNNING)
        self.task = Task(app(scope, receive, send), self.on_app_done)
        self.deadline = TIMERS.call_at(time.monotonic() + self.app_timeout,
                                       lambda: self.task.throw(TimeoutError()))
        self.task.step()        # the first step runs now, not on a later turn
    # endregion: serve_buffered

    # region: on_app_done
    def on_app_done(self, error):
        TIMERS.cancel(self.deadline)
        if self.state is State.CLOSED:
            return
        if error is not None:
            self.status = 504 if isinstance(error, TimeoutError) else 500
            self.body, self.keep_alive = b"%d\n" % self.status, False
        self.to_send = memoryview(response(STATUS[self.status], self.body, self.keep_alive))
        self.on_writable()
    # endregion: on_app_done

    def on_writable(self):
        try:
            self.to_send = self.to_send[self.sock.send(self.to_send):]
        except BlockingIOError:
            pass
        except ConnectionError:
            self.set_state(State.CLOSED)
            return
        if self.to_send:
            if self.state is not State.WRITING:
                self.set_state(State.WRITING)
        elif not self.keep_alive:
            self.set_state(State.CLOSED)
        else:
            self.set_state(State.READING)
            self.serve_buffered()       # a pipelined request may be waiting


def serve(listener, app_timeout=30.0):
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    while True:
        for key, mask in selector.select(TIMERS.timeout(time.monotonic())):
            if key.data is None:
                try:
                    sock, address = listener.accept()
                except BlockingIOError:
                    continue
                sock.setblocking(False)
                Connection(selector, sock, app_timeout)
            elif mask & selectors.EVENT_READ:
                key.data.on_readable()
            elif mask & selectors.EVENT_WRITE:
                key.data.on_writable()
        TIMERS.run_due(time.monotonic())


if __name__ == "__main__":
    sys.exit(main(serve, __doc__, 8005, [("--app-timeout", float, 30.0)]))
