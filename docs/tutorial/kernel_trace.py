"""Regenerate docs/kernel.md: selectserver's system calls, seen by strace.

    python3 docs/tutorial/kernel_trace.py            # rewrite docs/kernel.md
    python3 docs/tutorial/kernel_trace.py --print    # print it instead

Starts ``python -m selectserver selectserver.demo:app`` on port 0 under
``strace -ff`` (one file per process, so no line is split between two
processes), sends one request to open a connection, then the two requests
the page shows: one more on that connection (keep-alive) and one on a new
connection, which then closes.  It cuts the worker's part for each out of
the trace and annotates every line.  Needs strace (``apt-get install
strace``) and permission to ptrace; every wait is bounded.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = os.path.join(ROOT, "docs", "kernel.md")
CALLS = "epoll_wait,epoll_ctl,accept4,recvfrom,sendto,sendmsg,setsockopt,ioctl,close"
PATIENCE_S = 20.0

SYSCALL = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<result>-?\d+)(?P<error>.*)$")


def run_traced(directory, app_args, talk, string_bytes=48):
    """Start the server on ``app_args`` under strace, call ``talk(address)``,
    stop the server; return the worker's trace lines."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    command = ["strace", "-ff", "-qq", "-s", str(string_bytes), "-e", "trace=" + CALLS,
               "-o", os.path.join(directory, "trace"),
               sys.executable, "-m", "selectserver"] + app_args + ["--port", "0", "--no-access-log"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + PATIENCE_S
        address = worker = None
        while address is None and time.monotonic() < deadline:
            line = server.stderr.readline().decode(errors="replace")
            if not line:
                break
            match = re.search(r"Worker (\d+) serving", line)
            if match:
                worker = int(match.group(1))
            match = re.search(r"Listening on http://([\d.]+):(\d+)", line)
            if match:
                address = (match.group(1), int(match.group(2)))
        if address is None or worker is None:
            raise SystemExit("the server did not start under strace (is ptrace allowed here?)")
        talk(address)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(PATIENCE_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    with open(os.path.join(directory, "trace.%d" % worker)) as file:
        return [line.rstrip("\n") for line in file]


def two_requests(address):
    """One request to open a connection, one more on it, one on a new one."""
    first = socket.create_connection(address, timeout=PATIENCE_S)
    exchange(first, "/json?warm-up")          # opens the connection; not shown
    exchange(first, "/json?keep-alive")       # part 1 of the page
    second = socket.create_connection(address, timeout=PATIENCE_S)
    exchange(second, "/json?new-connection")  # part 2
    # Half-close: the server sees EOF and closes its side, and our
    # recv() returns b"" only then, so its close is in the trace.
    second.shutdown(socket.SHUT_WR)
    if second.recv(65536) != b"":
        raise SystemExit("the server answered a half-closed connection")
    second.close()
    first.close()


def slow_reader(address):
    """Ask docs/tutorial/apps.py for 16 MiB and read nothing for a second."""
    sock = socket.create_connection(address, timeout=PATIENCE_S)
    sock.sendall(b"GET /big?16 HTTP/1.1\r\nHost: kernel\r\n\r\n")
    time.sleep(1.0)   # the scenario itself: a client that does not read yet
    received = 0
    while received < 16 << 20:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        received += len(chunk)
    sock.close()


def exchange(sock, target):
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: kernel\r\n\r\n" % target.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < length:
        body += sock.recv(65536)


# -- cutting and annotating ------------------------------------------------------------

def between(lines, first_match, last_match):
    """From the epoll_wait before the first line containing ``first_match``
    to the first line after it that contains ``last_match``."""
    start = next(i for i, line in enumerate(lines) if first_match in line)
    while not lines[start].startswith("epoll_wait("):
        start -= 1
    end = next(i for i in range(start + 1, len(lines)) if re.search(last_match, lines[i]))
    return lines[start:end + 1]


def shorten(line):
    # The u64 half of epoll's data repeats the fd (and a pointer); drop it.
    line = re.sub(r", u64=\d+", "", line)
    # A gather write lists every buffer; keep the first.
    return re.sub(r"(msg_iov=\[\{[^}]*\}), \{.*\}\](, msg_iovlen=\d+)", r"\1, ...]\2", line)


def annotate(lines, labels):
    """(line, note) for each trace line; ``labels`` maps fd -> name and grows."""
    out = []
    for line in lines:
        match = SYSCALL.match(line)
        if not match:
            out.append((line, ""))
            continue
        name, args, result = match.group("name"), match.group("args"), int(match.group("result"))
        first = args.split(",", 1)[0]
        fd = int(first) if first.isdigit() else None
        label = labels.get(fd, "fd %s" % fd)
        if name == "epoll_wait":
            timeout = args.rsplit(",", 1)[1].strip()
            ready = [labels.get(int(n), "fd " + n) for n in re.findall(r"u32=(\d+)", args)]
            wait = "forever" if timeout == "-1" else "at most %s ms (the next timer)" % timeout
            kinds = re.findall(r"events=([A-Z|]+)", args)
            if result == 0:
                note = "slept %s; nothing ready: a timer is due" % wait
            elif kinds and all(kind == "EPOLLOUT" for kind in kinds):
                note = "slept %s; woken: %s writable (the client read)" % (wait, " and ".join(ready))
            else:
                note = "slept %s; woken: %s readable" % (wait, " and ".join(ready))
        elif name == "accept4":
            if result < 0:
                note = "no other client waiting (EAGAIN): back to the loop"
            else:
                port = re.search(r"htons\((\d+)\)", args).group(1)
                labels[result] = "client :%s (fd %d)" % (port, result)
                note = "%s gives a new connection from port %s: fd %d" % (label, port, result)
        elif name == "epoll_ctl":
            operation = args.split(",")[1].strip().replace("EPOLL_CTL_", "")
            target = int(args.split(",")[2])
            events = re.search(r"events=([A-Z|]+)", args)
            what = {"ADD": "watch %s for %s", "MOD": "watch %s for %s now",
                    "DEL": "stop watching %s"}[operation]
            note = what % ((labels.get(target, "fd %d" % target),)
                           + ((events.group(1),) if events and operation != "DEL" else ()))
        elif name == "recvfrom":
            note = "EOF: the client closed its side" if result == 0 else "read %d bytes from %s" % (result, label)
        elif name in ("sendto", "sendmsg"):
            asked = sum(int(n) for n in re.findall(r"iov_len=(\d+)", args)) if name == "sendmsg" \
                else int(args.split(", ")[-4])
            if result < asked:
                note = "%s: the kernel took only %d of %d bytes: the send buffer is full" % (label, result, asked)
            elif name == "sendmsg":
                note = "%s: several buffers in one call (a gather write): %d bytes" % (label, result)
            else:
                note = "%s: the kernel took %d bytes" % (label, result)
        elif name == "close":
            note = "close %s" % label
        elif name == "setsockopt" and "TCP_NODELAY" in args:
            note = "no Nagle delay: a response is written whole, send it now (Worker.on_accept)"
        elif name == "ioctl" and "FIONBIO" in args:
            note = "make %s non-blocking: sock.setblocking(False)" % label
        else:
            note = ""
        out.append((shorten(line), note))
    return out


def render_block(pairs):
    text = ["```"]
    for line, note in pairs:
        text.append(line)
        if note:
            text.append("    # " + note)
    text.append("```")
    return "\n".join(text)


def initial_labels(lines):
    """The listener, the epoll instance and the first connection, by fd."""
    labels = {}
    for line in lines:
        match = SYSCALL.match(line)
        if match and match.group("name") == "accept4":
            labels.setdefault(int(match.group("args").split(",")[0]), "the listener")
            if int(match.group("result")) >= 0:
                port = re.search(r"htons\((\d+)\)", match.group("args")).group(1)
                labels.setdefault(int(match.group("result")), "client :%s (fd %s)" % (port, match.group("result")))
                break
    return labels


def partial_send(lines):
    """From two lines before the first send the kernel took only part of, to
    the line after the interest goes back to EPOLLIN alone."""
    for index, line in enumerate(lines):
        match = SYSCALL.match(line)
        if match and match.group("name") == "sendto":
            if int(match.group("result")) < int(match.group("args").split(", ")[-4]):
                break
    else:
        raise SystemExit("no partial send in the trace")
    end = next(i for i in range(index, len(lines))
               if "EPOLL_CTL_MOD" in lines[i] and "events=EPOLLIN," in lines[i])
    return lines[index - 2:end + 2]


def page(lines, slow_lines):
    labels = initial_labels(lines)
    keep_alive = between(lines, "keep-alive", r"^sendto|^sendmsg")
    new_connection_start = between(lines, "new-connection", r"^sendto|^sendmsg")
    # The new connection's part begins at its accept: back up to the wait before it.
    accept_index = max(i for i, line in enumerate(lines)
                       if line.startswith("accept4(") and " = " in line and "EAGAIN" not in line
                       and lines.index(new_connection_start[0]) > i)
    start = accept_index
    while not lines[start].startswith("epoll_wait("):
        start -= 1
    new_fd = int(SYSCALL.match(lines[accept_index]).group("result"))
    end = next(i for i in range(accept_index, len(lines)) if lines[i].startswith("close(%d)" % new_fd))
    new_connection = lines[start:end + 1]
    slow = partial_send(slow_lines)
    slow_labels = initial_labels(slow_lines)
    slow_labels.update({int(n): "the client (fd %s)" % n
                        for n in re.findall(r"^sendto\((\d+)", slow[-1], re.M)})
    return TEMPLATE.format(
        partial_send=render_block(annotate(slow, slow_labels)),
        command="strace -ff -e trace=%s -o trace python3 -m selectserver selectserver.demo:app --no-access-log" % CALLS,
        keep_alive=render_block(annotate(keep_alive, labels)),
        new_connection=render_block(annotate(new_connection, labels)),
        calls=len(keep_alive))


TEMPLATE = """\
# From the kernel's side: the system calls of a request

<!-- Generated by docs/tutorial/kernel_trace.py from a real run; do not edit by hand. -->

Every chapter so far describes what selectserver does in Python. This page
shows what the kernel sees: the system calls of one worker while it serves
one request on a connection that is already open (keep-alive), and then one
request on a new connection. It is a real trace, taken with

```sh
{command}
```

on Linux, and cut to the worker's part of the two requests. Each line is
followed by what it means. The `u64` half of epoll's `data` is left out:
it repeats the fd.

## One keep-alive request: {calls} system calls

The connection is open and registered with epoll; the worker is asleep in
`epoll_wait`, the only place it blocks (`EventLoop._run_once`):

{keep_alive}

That is all: one wake-up, one `recvfrom` that brings the whole request, one
`sendto` that takes the whole response (DESIGN.md decision 5, *send at
once*), and back to sleep. No `epoll_ctl`: the connection's interest was
"readable" before and is "readable" after, so `Connection._update_interest`
changes nothing. A partial send would have added an `epoll_ctl(MOD)` for
`EPOLLOUT`, and another to take it back. The timeout of each `epoll_wait`
is the time left until the next timer, the worker's once-a-second tick
(`Worker._tick`), which checks the connections' deadlines.

## A new connection

{new_connection}

The listener is in epoll like any socket; "readable" on a listening socket
means a connection is waiting in its backlog. `Listener.on_readable`
accepts until the kernel says `EAGAIN`, so several clients arriving together
cost one wake-up. `Worker.on_accept` makes the new socket non-blocking and
turns off Nagle's algorithm (which would hold a small write back, waiting
for more), then the socket is registered for reading
(`EventLoop.add_connection`). The request is not read now: the loop goes
back to `epoll_wait`, which reports it (at once, if it has already arrived)
like any other readable socket. When the client closes its side (here with
`shutdown(SHUT_WR)`), `recvfrom` returns 0 bytes (EOF), and the connection
leaves epoll and is closed.

## A response bigger than the socket's buffer

Sending at once is right as long as the kernel takes everything. Here the
app of [docs/tutorial/apps.py](tutorial/apps.py) streams 16 MiB in 64 KiB
pieces to a client that reads nothing for a second (run with
`--app-dir docs/tutorial apps:app`). The sends succeed until the kernel's
send buffer is full; then:

{partial_send}

The kernel took part of a piece: the connection keeps the rest (a
`memoryview` slice, no copy) and asks epoll for `EPOLLOUT` as well
(`Connection._update_interest`). The app's `await send()` still returns
while less than `write_buffer_high_bytes` waits in the connection (here four
more pieces), then it waits too, and the app produces nothing more. When
the client reads, epoll reports
the socket *writable*; one `sendmsg` hands the kernel the rest of the piece
and the pieces queued behind it (a gather write, `WriteQueue.send`), the
interest goes back to `EPOLLIN` alone, and the app resumes. This is tutorial
step 3's `WRITING` state, and [exercise 3](tutorial/exercises.md) seen from
the kernel's side.

## What to notice

- **One blocking call.** Everything else returns at once: the listener is
  non-blocking (the second `accept4`'s `EAGAIN` is the proof), and each new
  connection is made so right after `accept4`.
- **Level-triggered.** epoll reports the connection readable as long as
  bytes wait, so one `recvfrom` per wake-up is enough; the loop does not need
  to read until `EAGAIN` (tutorial step 2).
- **No `epoll_ctl` per request.** The interest changes when a connection
  comes or goes, and when the kernel cannot take a whole response; a
  keep-alive request that fits costs three calls (tutorial step 3).
- **Compare with the tutorial's servers.** Run its steps under the same
  `strace` command (add `select` for step 2): step 1 blocks in `accept4` and
  `recvfrom` themselves; step 2 hands `select` every socket on each turn;
  step 3 does what is shown here.

Regenerate this page with `python3 docs/tutorial/kernel_trace.py` (needs
`strace`).
"""


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the page instead of writing it")
    args = parser.parse_args(argv)
    if shutil.which("strace") is None:
        raise SystemExit("strace is not installed (apt-get install strace)")
    directory = tempfile.mkdtemp(prefix="kernel-trace-")
    os.mkdir(os.path.join(directory, "slow"))
    try:
        lines = run_traced(directory, ["selectserver.demo:app"], two_requests)
        slow_lines = run_traced(os.path.join(directory, "slow"),
                                ["--app-dir", "docs/tutorial", "apps:app", "--lifespan", "off"],
                                slow_reader, string_bytes=16)
        text = page(lines, slow_lines)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if args.print:
        print(text)
    else:
        with open(PAGE, "w") as file:
            file.write(text)
        print("wrote", os.path.relpath(PAGE, ROOT))


if __name__ == "__main__":
    main(sys.argv[1:])
