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
CALLS = "epoll_wait,epoll_ctl,accept4,recvfrom,sendto,sendmsg,setsockopt,ioctl,fcntl,close"
PATIENCE_S = 20.0

SYSCALL = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<result>-?\d+)(?P<error>.*)$")


def run_traced(directory):
    """Serve three requests under strace; return the worker's trace lines."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    command = ["strace", "-ff", "-qq", "-s", "48", "-e", "trace=" + CALLS,
               "-o", os.path.join(directory, "trace"),
               sys.executable, "-m", "selectserver", "selectserver.demo:app", "--port", "0",
               "--no-access-log"]
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
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(PATIENCE_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    with open(os.path.join(directory, "trace.%d" % worker)) as file:
        return [line.rstrip("\n") for line in file]


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
    return re.sub(r", u64=\d+", "", line)


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
            if result == 0:
                note = "slept %s; nothing ready: a timer is due" % wait
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
            note = "%s: the kernel took %d bytes" % (label, result)
        elif name == "close":
            note = "close %s" % label
        elif name == "setsockopt" and "TCP_NODELAY" in args:
            note = "no Nagle delay: a response is written whole, send it now (Worker.on_accept)"
        elif name == "ioctl" and "FIONBIO" in args:
            note = "make %s non-blocking: sock.setblocking(False)" % label
        elif name == "fcntl":
            note = "file status flags of %s (O_NONBLOCK)" % label
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


def page(lines):
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
    return TEMPLATE.format(
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

## What to notice

- **One blocking call.** Everything else returns at once: the listener is
  non-blocking (the second `accept4`'s `EAGAIN` is the proof), and each new
  connection is made so right after `accept4`.
- **Level-triggered.** epoll reports the connection readable as long as
  bytes wait, so one `recvfrom` per wake-up is enough; the loop does not need
  to read until `EAGAIN` (tutorial step 2).
- **No `epoll_ctl` per request.** The interest changes only when the state
  asks for something new (tutorial step 3).
- **Compare with your own servers.** Run the tutorial's steps under the same
  `strace` command: step 1 blocks in `accept4` and `recvfrom` themselves; step
  2 calls `select` with every socket on each turn; step 3 does what is shown
  here.

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
    try:
        text = page(run_traced(directory))
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
