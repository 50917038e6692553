"""Run every step of the tutorial and show, with real sockets, what each one
does and where it breaks (``make tutorial``).

Each step server is started on port 0 and tells us its address on its first
line of output.  Every wait is bounded.  A wait that is *meant* to time out
("this client is still waiting") gives up after WAIT_S: that is the failure
the step exists to show, never a guess about speed.  ``tests/tutorial/``
runs the same functions and fails if a step stops behaving as its chapter
says.

    python3 docs/tutorial/tour.py            # every step
    python3 docs/tutorial/tour.py 4          # only step 4
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WAIT_S = 0.5        # how long we watch a client that should get nothing
PATIENCE_S = 20.0   # the bound on every wait for something that must happen


class Step:
    """A step server in a child process, with its output collected."""

    def __init__(self, script, *args, argv=None, cwd=HERE, env=None):
        """Start ``script`` on port 0, or the command ``argv`` (which must
        choose port 0 itself), and wait for the address it reports."""
        if argv is None:
            argv = [sys.executable, "-u", os.path.join(HERE, script), "--port", "0"] + list(args)
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self.changed = threading.Condition()
        threading.Thread(target=self._collect, daemon=True).start()
        first = self.wait_for_line("istening on http://")
        host, port = first.split("//", 1)[1].split()[0].rsplit(":", 1)
        self.address = (host, int(port))

    def _collect(self):
        for raw in self.proc.stdout:
            with self.changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.changed.notify_all()
        self.proc.stdout.close()
        with self.changed:
            self.lines.append(None)   # end of output
            self.changed.notify_all()

    def wait_for_line(self, text, after=0):
        """The first output line from index ``after`` on that contains ``text``."""
        deadline = time.monotonic() + PATIENCE_S
        with self.changed:
            while True:
                for line in self.lines[after:]:
                    if line is None:
                        raise AssertionError("%s ended without printing %r: %s"
                                             % (" ".join(self.proc.args), text, self.lines))
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no line with %r in %s" % (text, self.lines))
                self.changed.wait(left)

    def stop(self, signum=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(PATIENCE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


class Client:
    """A raw TCP client: send bytes, read whole responses, notice waiting."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=PATIENCE_S)
        self.buffer = b""   # received, not yet returned (pipelined responses)

    def send(self, data):
        self.sock.send(data)

    def _receive(self, size=1 << 20):
        chunk = self.sock.recv(size)
        self.buffer += chunk
        return chunk

    def response(self, timeout=PATIENCE_S):
        """One response: (status line, body).  The body is what Content-Length
        says, or what came before EOF if it was cut short."""
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self.buffer:
            if not self._receive():
                raise AssertionError("EOF before a response head: %r" % self.buffer)
        self.sock.settimeout(PATIENCE_S)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        while len(self.buffer) < length and self._receive():
            pass
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return lines[0], body

    def waits(self, seconds=WAIT_S):
        """True if nothing arrives for ``seconds``: this client is kept waiting."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(1)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(PATIENCE_S)
        raise AssertionError("expected to wait, got %r" % data)

    def closed_by_server(self):
        """True once the server has closed: EOF (or a reset) within PATIENCE_S."""
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def connect(address):
    return Client(address)


def request(target, method="GET", body=b"", close=False):
    head = "%s %s HTTP/1.1\r\nHost: tutorial\r\n" % (method, target)
    if body:
        head += "Content-Length: %d\r\n" % len(body)
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def check(condition, message):
    if not condition:
        raise AssertionError(message)


# -- one function per step: what it serves and the failure it shows ---------

def step1(say):
    """step1_blocking.py: a second client waits while the first keeps its connection"""
    with Step("step1_blocking.py") as server:
        first = connect(server.address)
        first.send(request("/first"))
        status, body = first.response()
        say("client 1: %s, %r" % (status, body))
        check(status == "HTTP/1.1 200 OK", status)
        say("client 1 keeps its connection open (keep-alive) and sends nothing")
        second = connect(server.address)
        second.send(request("/second"))
        check(second.waits(), "")
        say("client 2: no answer after %.1f s: the server is blocked in recv() on client 1" % WAIT_S)
        first.close()
        status, body = second.response()
        say("client 1 closed; client 2 now gets: %s, %r" % (status, body))
        check(body.startswith(b"Hello from step 1"), body)
        second.close()


def step2(say):
    """step2_select.py: nobody waits, but one recv() is not a request and one send() is not a response"""
    with Step("step2_select.py") as server:
        silent = connect(server.address)
        say("client 1 connects and sends nothing")
        other = connect(server.address)
        other.send(request("/hello"))
        status, body = other.response()
        say("client 2 is served anyway: %s, %r" % (status, body))
        check(status == "HTTP/1.1 200 OK", status)
        split = connect(server.address)
        split.send(b"GET /split HTTP/1.1\r\n")
        status, body = split.response()
        say("a head sent in two pieces: the first piece alone gets %s" % status)
        check(status == "HTTP/1.1 400 Bad Request", status)
        size = 16 << 20
        big = connect(server.address)
        big.send(request("/big?%d" % size))
        status, body = big.response()
        say("a %d-byte response: %d bytes arrived before the server closed" % (size, len(body)))
        check(len(body) < size, "the whole response arrived")
        for sock in (silent, other, split, big):
            sock.close()


def step3(say):
    """step3_states.py: buffers and states: split heads, pipelining, big responses"""
    with Step("step3_states.py") as server:
        sock = connect(server.address)
        sock.send(b"GET /split HTTP/1.1\r\n")
        sock.send(b"Host: tutorial\r\n\r\n")
        status, body = sock.response()
        say("a head sent in two pieces: %s, %r" % (status, body))
        check(status == "HTTP/1.1 200 OK", status)
        sock.send(request("/a") + request("/b") + request("/c"))
        bodies = [sock.response()[1] for _ in range(3)]
        say("three requests in one send() on the same connection: %r" % bodies)
        check(bodies == [b"Hello: GET /a\n", b"Hello: GET /b\n", b"Hello: GET /c\n"], bodies)
        size = 16 << 20
        sock.send(request("/big?%d" % size))
        status, body = sock.response()
        say("a %d-byte response: all %d bytes arrived" % (size, len(body)))
        check(len(body) == size, len(body))
        sock.close()


def step4(say):
    """step4_timers.py: a slowloris holds step 1; step 4 answers it 408 at its deadline"""
    with Step("step1_blocking.py") as server:
        slow = connect(server.address)
        slow.send(b"GET /slowloris HTTP/1.1\r\nHost: tut")
        say("step 1: a slowloris client sends half a head and stops")
        other = connect(server.address)
        other.send(request("/hello"))
        check(other.waits(), "")
        say("step 1: client 2 gets nothing after %.1f s: the slowloris holds the server" % WAIT_S)
        slow.close()
        other.close()
    with Step("step4_timers.py", "--head-timeout", "0.3", "--keep-alive-timeout", "0.3") as server:
        slow = connect(server.address)
        slow.send(b"GET /slowloris HTTP/1.1\r\nHost: tut")
        idle = connect(server.address)
        other = connect(server.address)
        other.send(request("/hello"))
        status, body = other.response()
        say("step 4: client 2 is served meanwhile: %s" % status)
        status, body = slow.response()
        say("step 4: the slowloris gets %s at its deadline, then EOF" % status)
        check(status == "HTTP/1.1 408 Request Timeout", status)
        check(slow.closed_by_server(), "no EOF after 408")
        check(idle.closed_by_server(), "idle connection not closed")
        say("step 4: a connection that never sent a byte is closed without a word")
        for sock in (slow, idle, other):
            sock.close()


def step5(say):
    """step5_coroutines.py: an app that waits does not hold up others; throw() at its deadline"""
    with Step("step5_coroutines.py", "--app-timeout", "1") as server:
        sleeper = connect(server.address)
        sleeper.send(request("/sleep?60"))
        say("client 1 asks for /sleep?60: the app awaits a timer")
        other = connect(server.address)
        other.send(request("/echo", "POST", b"hello") + request("/again"))
        for _ in range(2):
            status, body = other.response()
            say("client 2 is served while the app of client 1 waits: %r" % body)
            check(status == "HTTP/1.1 200 OK", status)
        status, body = sleeper.response()
        say("at the 1 s deadline, throw(TimeoutError()) into the app: %s" % status)
        check(status == "HTTP/1.1 504 Gateway Timeout", status)
        sleeper.close()
        other.close()


def step6(say):
    """step6_prefork.py: a worker killed with kill -9 is replaced; SIGTERM stops all"""
    server = Step("step6_prefork.py", "--workers", "2")
    try:
        started = [server.wait_for_line("started", after=1), server.wait_for_line("started", after=2)]
        for line in started:
            say(line)
        pids = [int(line.split("worker ")[1].split()[0]) for line in started]
        victim = pids[0]
        say("kill -9 %d" % victim)
        os.kill(victim, signal.SIGKILL)
        died = server.wait_for_line("worker %d killed by SIGKILL" % victim)
        say(died)
        index = server.lines.index(died)
        say(server.wait_for_line("started", after=index + 1))
        sock = connect(server.address)
        sock.send(request("/after-kill"))
        status, body = sock.response()
        say("still served: %r" % body)
        check(status == "HTTP/1.1 200 OK", status)
        sock.close()
    finally:
        code = server.stop()
    say("SIGTERM to the master: %s; exit code %s" % (server.wait_for_line("stopped"), code))
    check(code == 0, code)


STEPS = [step1, step2, step3, step4, step5, step6]


def main(argv):
    chosen = [int(arg) for arg in argv] or range(1, len(STEPS) + 1)
    for number in chosen:
        step = STEPS[number - 1]
        print("== step %d, %s" % (number, step.__doc__))
        step(lambda text: print("   " + text))
    print("== every step behaved as its chapter says")


if __name__ == "__main__":
    main(sys.argv[1:])
