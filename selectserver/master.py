"""Chapter 5, part 3: the master process.

The master binds the listeners, forks the workers that serve them, and
from then on only supervises (DESIGN.md decision 7).  It never imports the
application and never runs an event loop of asyncio's: its loop is one
``selectors`` call over a signal wake-up pipe and one pipe per worker.

* Signals: handlers only append the signal number to a queue; the loop
  handles it.  SIGTERM/SIGINT stop gracefully, a second SIGINT or SIGQUIT
  stops at once, SIGHUP replaces every worker, SIGTTIN/SIGTTOU add or
  remove one.  A stop closes the listeners in every process at once, so
  new connections are refused rather than left waiting.
* Workers write one byte per tick to their pipe (``worker.Heartbeat``):
  ``R`` when ready, ``.`` as a heartbeat, ``M`` when they reached
  ``--max-requests`` and stopped taking work.  A worker that stays silent
  past ``--timeout-worker`` is stuck and is killed.
* A worker as the master sees it is one state machine,
  ``WORKER_TRANSITIONS``, applied by ``Master._advance()`` alone.
* Replacing a worker (SIGHUP, ``--reload``) is rolling: the new worker is
  started first and the old one is told to stop only once the new one is
  serving, one worker at a time.  The listeners stay open in the master
  throughout, so no connection is ever refused.

Invariant: every worker slot (``0 .. workers-1``) has a worker holding it
(``HOLDS_SLOT``), or a restart of it is scheduled, unless the master is
stopping.
"""

from __future__ import annotations

import collections
import enum
import faulthandler
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from . import __version__, logs
from .config import Config, ConfigError
from .logs import AccessLog
from .proxy import TrustedProxies
from .sockets import (BindError, TLSConfigError, create_listeners, create_ssl_context,
                      describe, is_reuse_port, reuse_port_copy)
from .worker import MESSAGE_MAX_REQUESTS, MESSAGE_READY, AppLoadError, Heartbeat, Worker, load_app

log = logging.getLogger("selectserver.error")

# Exit codes of the server (docs/processes.md).  A worker returns 0 or
# EXIT_APP_BOOT; the master passes on the latter when no worker could start.
EXIT_OK = 0            # stopped on request (signal), gracefully or at once
EXIT_ERROR = 1         # an unexpected error: a bug; the traceback is in the log
EXIT_USAGE = 2         # bad options, --log-config or TLS files that cannot be used
EXIT_APP_BOOT = 3      # the app cannot be imported, is not an app, or lifespan startup failed
EXIT_LISTEN = 4        # an address cannot be listened on (in use, permissions, bad fd)
EXIT_PID_FILE = 5      # the --pid file cannot be written

# A worker that dies while booting is restarted after a delay that doubles,
# from BACKOFF_FIRST_S up to BACKOFF_MAX_S, until one boots.
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 10.0

# Lifespan shutdown runs after the graceful drain; give it this long before SIGKILL.
LIFESPAN_SHUTDOWN_MARGIN_S = 5.0
# After SIGQUIT a worker exits at once; SIGKILL whatever is left after this.
IMMEDIATE_STOP_S = 3.0

RELOAD_POLL_S = 0.5
# What --reload never looks into.
RELOAD_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages"}

_HANDLED_SIGNALS = ("SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGCHLD",
                    "SIGUSR1")

# --timeout-worker: the stuck worker is sent SIGUSR2 (its faulthandler
# writes every thread's stack to the log), and SIGKILL this much later.
STACK_DUMP_S = 1.0


def run(config: Config) -> int:
    """Bind, serve until stopped, and return the process exit code."""
    log.info("selectserver %s, master process %d", __version__, os.getpid())
    if config.umask is not None:
        os.umask(config.umask)
    if config.chdir:
        # First: every relative path (app dir, TLS files, pid file) is read from there.
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            log.error("--chdir %s: %s", config.chdir, exc.strerror)
            return EXIT_USAGE
    try:
        check_options(config)
    except (ConfigError, TLSConfigError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    if config.preload:
        try:
            config = preload(config)
        except AppLoadError as exc:
            log.error("%s", exc)
            if exc.details:
                log.error("%s", exc.details)
            return EXIT_APP_BOOT
    try:
        listeners = create_listeners(config)
    except BindError as exc:
        log.error("%s", exc.strerror or exc)
        return EXIT_LISTEN
    try:
        if config.pid_file:
            try:
                write_pid_file(config.pid_file)
            except OSError as exc:
                log.error("cannot write the pid file %s: %s", config.pid_file, exc.strerror or exc)
                return EXIT_PID_FILE
        try:
            if hasattr(os, "fork") and threading.current_thread() is threading.main_thread():
                return Master(config, listeners).run()
            # No fork (or not the main thread, where signals cannot be had):
            # serve in this process, unsupervised.
            drop_privileges(worker_identity(config))
            return Worker(config, listeners, on_ready=lambda: announce(listeners, config),
                          close_listeners=True).run(
                install_signals=threading.current_thread() is threading.main_thread())
        finally:
            if config.pid_file:
                remove_pid_file(config.pid_file)
    finally:
        for sock in listeners:
            sock.close()
        for path in bound_unix_paths(config):
            remove_socket_file(path)


def check_options(config: Config) -> None:
    """Fail before binding or forking on what would make every worker fail.

    Raises ``ConfigError``, ``TLSConfigError`` or ``ValueError`` saying why.
    """
    TrustedProxies(config.forwarded_allow_ips)
    AccessLog(config)
    if config.is_ssl:
        create_ssl_context(config)
    if config.fd is not None and config.fd < 0:
        raise ConfigError("--fd must not be negative")
    if not isinstance(config.app, str) and (config.reload or (config.workers > 1 and not can_fork())):
        # A new process can only get new code (or, without fork, any code)
        # by importing it.
        raise ConfigError("%s needs the app as an import string (\"module:attribute\"), not an object"
                          % ("reload=True" if config.reload else "workers=%d" % config.workers))
    worker_identity(config)
    if config.preload and config.reload:
        raise ConfigError("--reload cannot work with --preload: the master would keep the old code")


def worker_identity(config: Config) -> Optional[Tuple[int, int]]:
    """``(uid, gid)`` of ``--user``/``--group``, or None when neither is given.

    Raises ``ConfigError`` for an unknown name, or when switching needs root
    and we are not.
    """
    if not config.user and not config.group:
        return None
    import grp
    import pwd

    try:
        entry = pwd.getpwuid(int(config.user)) if (config.user or "").isdigit() else (
            pwd.getpwnam(config.user) if config.user else pwd.getpwuid(os.getuid()))
    except KeyError:
        raise ConfigError("--user %s: no such user" % config.user) from None
    uid, gid = entry.pw_uid, entry.pw_gid
    if config.group:
        try:
            gid = int(config.group) if config.group.isdigit() else grp.getgrnam(config.group).gr_gid
        except KeyError:
            raise ConfigError("--group %s: no such group" % config.group) from None
    if os.geteuid() != 0 and (uid, gid) != (os.geteuid(), os.getegid()):
        raise ConfigError("--user/--group need the server to be started as root")
    return uid, gid


def drop_privileges(identity: Optional[Tuple[int, int]]) -> None:
    """Become ``(uid, gid)``: group first, while we may still change it."""
    if identity is None or os.geteuid() != 0:
        return
    import pwd

    uid, gid = identity
    try:
        name = pwd.getpwuid(uid).pw_name
        os.initgroups(name, gid)
    except KeyError:
        os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)


def can_fork() -> bool:
    return hasattr(os, "fork") and threading.current_thread() is threading.main_thread()


def preload(config: Config) -> Config:
    """``--preload``: the app imported here, in the master, for every worker to inherit.

    Raises ``AppLoadError``.
    """
    app = load_app(config)
    log.info("Loaded the app in the master (--preload)")
    return config.replace(app=app, factory=False)


def announce(listeners: List[socket.socket], config: Config) -> None:
    """Say where we listen, once the first worker has loaded the app and
    serves: tests and scripts wait for this line, and a boot that fails
    never prints it."""
    scheme = "https" if config.is_ssl else "http"
    for sock in listeners:
        log.info("Listening on %s (press CTRL+C to quit)", describe(sock, scheme))


def write_pid_file(path: str) -> None:
    """Write our PID to ``path`` atomically (a reader never sees half a number)."""
    temporary = "%s.%d.tmp" % (path, os.getpid())
    with open(temporary, "w") as file:
        file.write("%d\n" % os.getpid())
    os.replace(temporary, path)


def remove_pid_file(path: str) -> None:
    """Remove ``path`` if it still names this process (another may have taken it over)."""
    try:
        with open(path) as file:
            if file.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except OSError:
        pass


def bound_unix_paths(config: Config) -> List[str]:
    """The socket files this server created itself (inherited ones are not ours)."""
    paths = [config.uds] if config.uds else []
    paths.extend(spec[5:] for spec in config.binds if spec.startswith("unix:"))
    return paths


def remove_socket_file(path: str) -> None:
    try:
        if os.path.exists(path) and not os.path.isfile(path):
            os.unlink(path)
    except OSError:
        pass


class WorkerState(enum.Enum):
    """Where one worker stands, as the master sees it."""

    # Identity hash: cheaper than Enum's, and the table is looked up by (state, event).
    __hash__ = object.__hash__

    BOOTING = "booting"          # forked; importing the app, starting lifespan
    SERVING = "serving"          # said it is ready; accepting
    REPLACING = "replacing"      # serving while its successor boots (a rolling replacement)
    RETIRING = "retiring"        # told to stop taking work; its slot is free for another
    STOPPING = "stopping"        # the server stops: finishing what it has, within the grace time
    QUITTING = "quitting"        # the server stops at once
    STUCK = "stuck"              # silent too long: its stack is being dumped, then SIGKILL
    KILLED = "killed"            # sent SIGKILL; not reaped yet
    EXITED = "exited"            # reaped


class WorkerEvent(enum.Enum):
    """What happens to a worker: a message from it, a signal to the master, a deadline."""

    __hash__ = object.__hash__

    READY = "ready"                          # it wrote R: the app is loaded and it accepts
    REPLACE = "replace"                      # a successor was forked for its slot
    SUCCESSOR_READY = "successor ready"      # that successor is serving
    SUCCESSOR_FAILED = "successor failed"    # that successor died before serving
    RETIRE = "retire"                        # SIGTTOU: one worker fewer
    RECYCLED = "recycled"                    # it wrote M: --max-requests reached, it stops itself
    STOP = "stop"                            # SIGTERM or SIGINT to the master
    STOP_NOW = "stop now"                    # SIGQUIT or a second SIGINT
    SILENT = "silent"                        # no heartbeat for --timeout-worker
    KILL = "kill"                            # past its deadline (to stop, or to dump its stack)
    EXIT = "exit"                            # reaped by waitpid()


BOOTING, SERVING, REPLACING, RETIRING, STOPPING, QUITTING, STUCK, KILLED, EXITED = WorkerState
(READY, REPLACE, SUCCESSOR_READY, SUCCESSOR_FAILED, RETIRE, RECYCLED, STOP, STOP_NOW, SILENT,
 KILL, EXIT) = WorkerEvent

# The one table of a worker's life.  A pair that is not here cannot happen;
# WorkerProcess.apply() raises on it.  Any state can die (EXIT); a worker
# that stays silent is STUCK, and is killed (KILL) past a deadline like one
# that does not stop in time; a killed worker can only be reaped.
WORKER_TRANSITIONS: Dict[Tuple[WorkerState, WorkerEvent], WorkerState] = {
    (BOOTING, READY): SERVING,
    (BOOTING, RETIRE): RETIRING,
    (BOOTING, STOP): STOPPING,
    (BOOTING, STOP_NOW): QUITTING,
    (BOOTING, SILENT): STUCK,
    (BOOTING, EXIT): EXITED,
    (SERVING, REPLACE): REPLACING,
    (SERVING, RETIRE): RETIRING,
    (SERVING, RECYCLED): RETIRING,
    (SERVING, STOP): STOPPING,
    (SERVING, STOP_NOW): QUITTING,
    (SERVING, SILENT): STUCK,
    (SERVING, EXIT): EXITED,
    (REPLACING, SUCCESSOR_READY): RETIRING,
    (REPLACING, SUCCESSOR_FAILED): SERVING,
    (REPLACING, RETIRE): RETIRING,
    (REPLACING, RECYCLED): RETIRING,
    (REPLACING, STOP): STOPPING,
    (REPLACING, STOP_NOW): QUITTING,
    (REPLACING, SILENT): STUCK,
    (REPLACING, EXIT): EXITED,
    (RETIRING, STOP): STOPPING,
    (RETIRING, STOP_NOW): QUITTING,
    (RETIRING, KILL): KILLED,
    (RETIRING, EXIT): EXITED,
    (STOPPING, STOP_NOW): QUITTING,
    (STOPPING, KILL): KILLED,
    (STOPPING, EXIT): EXITED,
    (QUITTING, KILL): KILLED,
    (QUITTING, EXIT): EXITED,
    (STUCK, KILL): KILLED,
    (STUCK, EXIT): EXITED,
    (KILLED, EXIT): EXITED,
}

# A worker in one of these holds its slot: no other is started for it.
HOLDS_SLOT = frozenset({BOOTING, SERVING, REPLACING})
# A worker in one of these has been asked to go, and is killed past its deadline.
LEAVING = frozenset({RETIRING, STOPPING, QUITTING})


class TransitionError(RuntimeError):
    """A (state, event) pair that ``WORKER_TRANSITIONS`` does not allow."""


def next_state(state: WorkerState, event: WorkerEvent) -> WorkerState:
    """The state ``event`` leads to from ``state``; raises ``TransitionError`` if none."""
    try:
        return WORKER_TRANSITIONS[state, event]
    except KeyError:
        raise TransitionError("a %s worker cannot take %r" % (state.value, event.value)) from None


def allows(state: WorkerState, event: WorkerEvent) -> bool:
    return (state, event) in WORKER_TRANSITIONS


class WorkerProcess:
    """The master's view of one worker: a pid, a slot, a pipe and a state."""

    __slots__ = ("pid", "slot", "pipe", "state", "started_at", "last_heard", "deadline")

    def __init__(self, pid: int, slot: int, pipe: int, now: float) -> None:
        self.pid = pid
        self.slot = slot
        self.pipe = pipe                 # read end of the worker's message pipe
        self.state = BOOTING
        self.started_at = now
        self.last_heard = now
        self.deadline = 0.0              # LEAVING or STUCK: SIGKILL after this

    def apply(self, event: WorkerEvent) -> WorkerState:
        """Move to the state ``event`` leads to, and return the state left."""
        old, self.state = self.state, next_state(self.state, event)
        return old

    def deadline_by(self, deadline: float) -> None:
        """Be killed by ``deadline`` at the latest: an earlier deadline stands."""
        self.deadline = min(self.deadline, deadline) if self.deadline else deadline

    def __repr__(self) -> str:
        return "<WorkerProcess %d slot %d %s>" % (self.pid, self.slot, self.state.value)


class Master:
    """Forks and supervises ``config.workers`` workers on shared ``listeners``."""

    def __init__(self, config: Config, listeners: List[socket.socket]) -> None:
        self.config = config
        self.listeners = listeners
        self.target = config.workers
        self.workers: Dict[int, WorkerProcess] = {}
        self.selector = selectors.DefaultSelector()
        self.signals: Deque[int] = collections.deque()
        # None while serving; once stopping, the event every worker is given
        # (STOP for a graceful stop, STOP_NOW for an immediate one).
        self.stopping: Optional[WorkerEvent] = None
        self.exit_code = EXIT_OK
        self.ever_ready = False
        self.announced = False
        self.backoff_s = 0.0
        self.spawn_not_before = 0.0
        self.roll_queue: Deque[int] = collections.deque()
        self.reloader = Reloader(config.reload_dirs or [config.app_dir]) if config.reload else None
        self.next_reload_poll = 0.0
        # With --reuse-port, every slot has its own copy of each TCP listener.
        self.reuse_port = [sock for sock in listeners if config.reuse_port and is_reuse_port(sock)]
        self.slot_sockets: Dict[int, List[socket.socket]] = {0: self.reuse_port}
        self._wakeup_read, self._wakeup_write = os.pipe()
        self._saved_handlers: Dict[int, Any] = {}

    # -- the loop ----------------------------------------------------------------

    # region: master-loop
    def run(self) -> int:
        self._install_signal_handlers()
        try:
            self._spawn_missing(time.monotonic())
            while self.workers or self.stopping is None:
                for key, _ in self.selector.select(self._select_timeout()):
                    key.data(key.fd)
                now = time.monotonic()
                while self.signals:
                    self._on_signal(self.signals.popleft(), now)
                self._reap(now)
                self._check_workers(now)
                if self.stopping is None:
                    self._poll_reload(now)
                    self._step_roll(now)
                    self._spawn_missing(now)
        finally:
            self._restore_signal_handlers()
            for worker in self.workers.values():
                self._kill(worker, signal.SIGKILL)   # only if we got here by an error
            self.selector.close()
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)
            self._close_listeners()
        log.info("Stopped.")
        return self.exit_code
    # endregion: master-loop

    def _select_timeout(self) -> float:
        timeout = 1.0
        if self.reloader is not None:
            timeout = RELOAD_POLL_S
        if self.spawn_not_before:
            timeout = min(timeout, max(0.0, self.spawn_not_before - time.monotonic()))
        return timeout

    def _close_listeners(self) -> None:
        """Close the master's copies of every listener (the workers close theirs)."""
        for sock in self.listeners:
            sock.close()
        for sockets in self.slot_sockets.values():
            for sock in sockets:
                sock.close()

    # -- signals: handlers only enqueue ---------------------------------------------

    # region: signal-handlers
    def _install_signal_handlers(self) -> None:
        os.set_blocking(self._wakeup_write, False)
        os.set_blocking(self._wakeup_read, False)
        self.selector.register(self._wakeup_read, selectors.EVENT_READ, self._drain_wakeup)
        signal.set_wakeup_fd(self._wakeup_write, warn_on_full_buffer=False)
        for name in _HANDLED_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None:
                self._saved_handlers[signum] = signal.signal(signum, self._enqueue_signal)

    def _restore_signal_handlers(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum, handler in self._saved_handlers.items():
            signal.signal(signum, handler)

    def _enqueue_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def _drain_wakeup(self, fd: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass
    # endregion: signal-handlers

    def _on_signal(self, signum: int, now: float) -> None:
        if signum == signal.SIGCHLD:
            return   # _reap() runs on every turn
        name = signal.Signals(signum).name
        if signum == signal.SIGQUIT or (signum == signal.SIGINT and self.stopping is not None):
            if self.stopping is not STOP_NOW:
                log.info("Stopping at once (%s).", name)
                self._stop(STOP_NOW, now)
        elif signum in (signal.SIGINT, signal.SIGTERM):
            if self.stopping is None:
                log.info("Shutting down gracefully (%s); a second CTRL+C stops at once.", name)
                self._stop(STOP, now)
        elif signum == signal.SIGUSR1:
            log.info("SIGUSR1: reopening the log files")
            logs.reopen()
            for worker in self.workers.values():
                self._kill(worker, signal.SIGUSR1)
        elif self.stopping is not None:
            return
        elif signum == signal.SIGHUP:
            self._replace_all("SIGHUP")
        elif signum == signal.SIGTTIN:
            self.target += 1
            log.info("SIGTTIN: %d worker(s) now", self.target)
        elif signum == signal.SIGTTOU:
            if self.target > 1:
                self.target -= 1
                log.info("SIGTTOU: %d worker(s) now", self.target)
                for worker in list(self.workers.values()):
                    if worker.slot >= self.target and allows(worker.state, RETIRE):
                        self._advance(worker, RETIRE, now)
                for sock in self.slot_sockets.pop(self.target, []):
                    sock.close()

    def _stop(self, event: WorkerEvent, now: float) -> None:
        """Stop the server: every worker is given ``event`` (STOP or STOP_NOW)."""
        self.stopping = event
        self.roll_queue.clear()
        # DESIGN.md decision 9: a stopping server refuses new connections at
        # once (the workers close their copies too) instead of queueing them
        # where nobody will accept.
        self._close_listeners()
        for worker in list(self.workers.values()):
            if allows(worker.state, event):
                self._advance(worker, event, now)

    # -- the state of a worker: one function applies the table ------------------------

    def _advance(self, worker: WorkerProcess, event: WorkerEvent, now: float) -> WorkerState:
        """Apply ``event`` to ``worker`` (WORKER_TRANSITIONS), do what its new
        state asks, and return the state it left."""
        old = worker.apply(event)
        new = worker.state
        log.debug("Worker %d: %s -> %s (%s)", worker.pid, old.value, new.value, event.value)
        if new is RETIRING or new is STOPPING:
            worker.deadline_by(now + self.config.timeout_graceful_shutdown_s
                               + LIFESPAN_SHUTDOWN_MARGIN_S)
            if event is not RECYCLED:   # a recycled worker is stopping already
                self._kill(worker, signal.SIGTERM)
        elif new is QUITTING:
            worker.deadline_by(now + IMMEDIATE_STOP_S)
            self._kill(worker, signal.SIGQUIT)
        elif new is STUCK:
            # faulthandler writes from its C signal handler, even while the
            # worker's Python code is stuck; the kill follows at the deadline.
            worker.deadline = now + STACK_DUMP_S
            self._kill(worker, signal.SIGUSR2)
        elif new is KILLED:
            self._kill(worker, signal.SIGKILL)
        elif new is SERVING and event is READY:
            self.ever_ready = True
            self.backoff_s = 0.0
            log.info("Worker %d serving", worker.pid)
            if not self.announced:
                self.announced = True
                announce(self.listeners, self.config)
            predecessor = self._in_slot(worker.slot, REPLACING)
            if predecessor is not None:
                self._advance(predecessor, SUCCESSOR_READY, now)
        return old

    def _successor_failed(self, worker: WorkerProcess, now: float) -> Optional[WorkerProcess]:
        """``worker`` will never serve: the one it was to replace serves on.

        Returns that predecessor, or None when ``worker`` replaced nobody.
        """
        predecessor = self._in_slot(worker.slot, REPLACING)
        if predecessor is not None:
            self._advance(predecessor, SUCCESSOR_FAILED, now)
        return predecessor

    def _in_slot(self, slot: int, state: WorkerState) -> Optional[WorkerProcess]:
        for worker in self.workers.values():
            if worker.slot == slot and worker.state is state:
                return worker
        return None

    # -- workers -------------------------------------------------------------------

    def _spawn_missing(self, now: float) -> None:
        if now < self.spawn_not_before:
            return
        self.spawn_not_before = 0.0
        filled = {worker.slot for worker in self.workers.values() if worker.state in HOLDS_SLOT}
        if not self.ever_ready and filled:
            # Until one worker has been ready, one boots alone: an app that
            # cannot be imported (or whose startup fails) then says so once,
            # not once per worker.  The others fork as soon as it is ready.
            return
        for slot in range(self.target):
            if slot not in filled:
                self._spawn(slot, now)
                if not self.ever_ready:
                    return

    def _spawn(self, slot: int, now: float) -> WorkerProcess:
        listeners = self._listeners_for(slot)
        read_end, write_end = os.pipe()
        # A signal caught between fork() and the child's own handlers would
        # run the master's handler in the child and be lost: hold them until
        # each side has the handlers it should have.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(self._saved_handlers))
        try:
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                self._run_child(listeners, write_end, mask)   # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write_end)
        os.set_blocking(read_end, False)
        worker = WorkerProcess(pid, slot, read_end, now)
        self.workers[pid] = worker
        self.selector.register(read_end, selectors.EVENT_READ, self._on_message)
        log.debug("Started worker %d (slot %d)", pid, slot)
        return worker

    def _listeners_for(self, slot: int) -> List[socket.socket]:
        if not self.reuse_port:
            return self.listeners
        if slot not in self.slot_sockets:
            self.slot_sockets[slot] = [reuse_port_copy(sock, self.config.backlog)
                                       for sock in self.reuse_port]
        shared = [sock for sock in self.listeners if sock not in self.reuse_port]
        return shared + self.slot_sockets[slot]

    def _run_child(self, listeners: List[socket.socket], pipe: int, mask: Any) -> None:
        """In the forked worker: reset what belongs to the master, serve, ``_exit``."""
        code = EXIT_ERROR
        heartbeat = Heartbeat(pipe, os.getppid())
        try:
            signal.set_wakeup_fd(-1)
            for signum in self._saved_handlers:
                signal.signal(signum, signal.SIG_DFL)
            for name in ("SIGHUP", "SIGTTIN", "SIGTTOU"):
                # Meant for the master (sent to the whole process group, say).
                signal.signal(getattr(signal, name), signal.SIG_IGN)
            signal.signal(signal.SIGQUIT, _exit_at_once)
            # Until the worker's loop handles it (logs.reopen), SIGUSR1's
            # default would end the worker: remember it, and the loop
            # reopens the files when it takes over.
            signal.signal(signal.SIGUSR1, logs.owe_reopen)
            faulthandler.register(signal.SIGUSR2, all_threads=True)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(self.selector.fileno())   # not unregister(): the epoll set is shared
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)
            for other in self.workers.values():
                os.close(other.pipe)
            for sockets in self.slot_sockets.values():
                for sock in sockets:
                    if sock not in listeners:
                        sock.close()
            # After binding (port 80 needs root), before the app runs.
            drop_privileges(worker_identity(self.config))
            worker = Worker(self.config, listeners, heartbeat=heartbeat, close_listeners=True)
            code = worker.run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else EXIT_ERROR
        except BaseException:
            # Before it served, a failure is the app's (a SyntaxError at
            # import, say); after, it is a crash like any other.
            log.exception("Worker %d failed", os.getpid())
            code = EXIT_ERROR if heartbeat.was_ready else EXIT_APP_BOOT
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:   # a closed or broken stream: nothing left to tell
                    pass
            os._exit(code)

    def _on_message(self, fd: int) -> None:
        worker = self._worker_by_pipe(fd)
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if worker is None:
            return
        if not data:
            # The worker closed its end: it is exiting; _reap() finishes the job.
            self.selector.unregister(fd)
            return
        now = worker.last_heard = time.monotonic()
        if MESSAGE_READY in data and worker.state is BOOTING:
            self._advance(worker, READY, now)
        if MESSAGE_MAX_REQUESTS in data and self.stopping is None and allows(worker.state, RECYCLED):
            # It has stopped taking work already: its slot is filled at once.
            log.info("Worker %d reached --max-requests; replacing it", worker.pid)
            self._advance(worker, RECYCLED, now)

    def _worker_by_pipe(self, fd: int) -> Optional[WorkerProcess]:
        for worker in self.workers.values():
            if worker.pipe == fd:
                return worker
        return None

    def _kill(self, worker: WorkerProcess, signum: int) -> None:
        try:
            os.kill(worker.pid, signum)
        except ProcessLookupError:
            pass   # already gone; _reap() will see it

    def _reap(self, now: float) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._on_exit(pid, os.waitstatus_to_exitcode(status), now)

    def _on_exit(self, pid: int, code: int, now: float) -> None:
        """A child exited with ``code`` (negative: killed by that signal)."""
        worker = self.workers.pop(pid, None)
        if worker is None:
            return
        if worker.pipe in self.selector.get_map():
            self.selector.unregister(worker.pipe)
        os.close(worker.pipe)
        was = self._advance(worker, EXIT, now)
        how = describe_exit(code)
        if was in LEAVING or was is STUCK or was is KILLED or self.stopping is not None:
            # Asked to go (or killed, and said so then): its slot is already free.
            log.debug("Worker %d stopped (%s)", worker.pid, how)
            return
        if was is not BOOTING:
            log.warning("Worker %d died (%s); starting a new one", worker.pid, how)
            return
        if code == EXIT_APP_BOOT and not self.ever_ready:
            log.error("Worker %d failed to boot (see above); stopping", worker.pid)
            self.exit_code = EXIT_APP_BOOT
            self._stop(STOP, now)
            return
        predecessor = self._successor_failed(worker, now)
        if predecessor is not None:
            if code > 0:
                log.error("New worker %d failed to boot (%s); the old workers keep serving",
                          worker.pid, how)
                self.roll_queue.clear()
                return
            # Killed from outside, not broken: replace its predecessor again.
            self.roll_queue.appendleft(predecessor.pid)
        self.backoff_s = min(BACKOFF_MAX_S, self.backoff_s * 2 or BACKOFF_FIRST_S)
        self.spawn_not_before = now + self.backoff_s
        log.warning("Worker %d died while booting (%s); retrying in %.1fs",
                    worker.pid, how, self.backoff_s)

    def _check_workers(self, now: float) -> None:
        for worker in list(self.workers.values()):
            if worker.state in LEAVING:
                if now >= worker.deadline:
                    log.warning("Worker %d did not stop in time; killing it", worker.pid)
                    self._advance(worker, KILL, now)
            elif worker.state is STUCK:
                if now >= worker.deadline:
                    self._advance(worker, KILL, now)
            elif worker.state in HOLDS_SLOT and now - worker.last_heard > self.config.timeout_worker_s:
                log.error("Worker %d %s for %.0fs; its stack follows, then it is killed",
                          worker.pid, "did not boot" if worker.state is BOOTING else "was stuck",
                          now - worker.last_heard)
                if self._advance(worker, SILENT, now) is BOOTING and self._successor_failed(worker, now):
                    log.error("The old workers keep serving")
                    self.roll_queue.clear()

    # -- replacing workers -------------------------------------------------------------

    def _replace_all(self, reason: str) -> None:
        # A worker still booting may have imported the old code too.
        current = [w.pid for w in self.workers.values() if w.state in HOLDS_SLOT]
        log.info("%s: replacing %d worker(s), one at a time", reason, len(current))
        self.roll_queue.clear()
        self.roll_queue.extend(sorted(current))

    def _step_roll(self, now: float) -> None:
        """Start the next replacement once the previous one is serving."""
        if now < self.spawn_not_before:
            return
        if any(worker.state is REPLACING for worker in self.workers.values()):
            return
        while self.roll_queue:
            old = self.workers.get(self.roll_queue.popleft())
            if old is not None and old.state is BOOTING:
                self.roll_queue.appendleft(old.pid)   # replaced once it serves
                return
            if old is not None and old.state is SERVING:
                self._advance(old, REPLACE, now)
                self._spawn(old.slot, now)
                return

    def _poll_reload(self, now: float) -> None:
        if self.reloader is None or now < self.next_reload_poll:
            return
        self.next_reload_poll = now + RELOAD_POLL_S
        changed = self.reloader.changed()
        if changed:
            self.spawn_not_before = 0.0
            self._replace_all("Changed: %s" % changed)


def _exit_at_once(signum: int, frame: Any) -> None:
    """A worker's SIGQUIT: leave now; open connections are closed by the kernel."""
    os._exit(EXIT_OK)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit code %d" % code


class Reloader:
    """``--reload``: notices when a ``*.py`` file under the watched directories changes."""

    def __init__(self, directories: List[str]) -> None:
        self.directories = [os.path.abspath(directory) for directory in directories]
        self.mtimes = self.scan()

    def scan(self) -> Dict[str, float]:
        mtimes = {}
        for directory in self.directories:
            for root, dirs, files in os.walk(directory):
                dirs[:] = [d for d in dirs if not d.startswith(".") and d not in RELOAD_SKIP_DIRS]
                for name in files:
                    if name.endswith(".py"):
                        path = os.path.join(root, name)
                        try:
                            mtimes[path] = os.stat(path).st_mtime_ns
                        except OSError:
                            pass   # removed while we looked
        return mtimes

    def changed(self) -> Optional[str]:
        """The path of a file that changed, appeared or went away since the last call."""
        mtimes = self.scan()
        previous, self.mtimes = self.mtimes, mtimes
        for path in mtimes.keys() | previous.keys():
            if mtimes.get(path) != previous.get(path):
                return os.path.relpath(path)
        return None
