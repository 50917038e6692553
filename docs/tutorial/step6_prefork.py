"""Step 6: pre-fork workers and signals.

One process uses one core.  The master binds the listening socket, then
forks workers; each inherits the socket and runs step 5's loop on it, and
the kernel hands each new connection to one of them.  The master serves
nothing: it sleeps until a signal comes, restarts a worker that died, and
on SIGTERM or Ctrl+C stops them all.  Signal handlers only note the
signal; the master's loop acts on it.  docs/tutorial/step6_prefork.md.

    python3 docs/tutorial/step6_prefork.py --port 8006 --workers 2
    kill -9 <a worker's pid>      # the master starts a new one
"""

import os
import select
import signal
import sys

import step5_coroutines as step5
from step1_blocking import main


def log(message):
    print("[master %d] %s" % (os.getpid(), message), flush=True)


# region: spawn
SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


def spawn(listener, app_timeout):
    """Fork a worker that serves ``listener``; return its pid."""
    # Until the child has reset the master's handlers, a SIGTERM sent to it
    # would run the master's handler in the child and be lost: hold these
    # signals back across the fork; they are delivered once unblocked.
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    pid = os.fork()
    if pid == 0:                                  # in the child from here on
        try:
            signal.set_wakeup_fd(-1)              # the master's pipe is not ours
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # Ctrl+C reaches every process of the terminal; the master decides.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            step5.serve(listener, app_timeout)
        finally:
            os._exit(1)                           # never return into the master's code
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    log("worker %d started" % pid)
    return pid
# endregion: spawn


def how_it_ended(status):
    code = os.waitstatus_to_exitcode(status)
    return "killed by %s" % signal.Signals(-code).name if code < 0 else "exit code %d" % code


# region: serve
def serve(listener, workers=2, app_timeout=30.0):
    # A signal can arrive at any instruction; its handler only queues it.
    # set_wakeup_fd makes the kernel-level handler also write a byte to a
    # pipe, so the select() below wakes up even if the signal came just
    # before it started to wait.
    pending = []
    wake_up_read, wake_up_write = os.pipe()
    os.set_blocking(wake_up_write, False)
    signal.set_wakeup_fd(wake_up_write)
    for signum in SIGNALS:
        signal.signal(signum, lambda signum, frame: pending.append(signum))

    children = set(spawn(listener, app_timeout) for _ in range(workers))
    stopping = False
    while children:
        select.select([wake_up_read], [], [])
        os.read(wake_up_read, 4096)
        while pending:
            signum = pending.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT) and not stopping:
                stopping = True
                log("%s: stopping %d worker(s)" % (signal.Signals(signum).name, len(children)))
                for pid in children:
                    os.kill(pid, signal.SIGTERM)
        # One SIGCHLD may stand for several children: reap all that ended.
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
            if not stopping:
                log("worker %d %s; starting a new one" % (pid, how_it_ended(status)))
                children.add(spawn(listener, app_timeout))
    log("stopped")
# endregion: serve


if __name__ == "__main__":
    sys.exit(main(serve, __doc__, 8006, [("--workers", int, 2), ("--app-timeout", float, 30.0)]))
