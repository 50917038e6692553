"""Chapter 5, part 3: the master process.

The master binds the listeners, forks the workers that serve them, and
from then on only supervises (DESIGN.md decision 7).  It never imports the
application and never runs an event loop of asyncio's: its loop is one
``selectors`` call over a signal wake-up pipe and one pipe per worker.

* Signals: handlers only append the signal number to a queue; the loop
  handles it.  SIGTERM/SIGINT stop gracefully, a second SIGINT or SIGQUIT
  stops at once, SIGHUP replaces every worker, SIGTTIN/SIGTTOU add or
  remove one.
* Workers write one byte per tick to their pipe: ``R`` when ready, ``.``
  as a heartbeat, ``M`` when they reached ``--max-requests``.  A worker
  that stays silent past ``--timeout-worker`` is stuck and is killed.
* Replacing a worker (SIGHUP, ``--reload``, ``--max-requests``) is rolling:
  the new worker is started first and the old one is told to drain only
  once the new one is ready, one worker at a time.  The listeners stay open
  in the master throughout, so no connection is ever refused.

Invariant: every worker slot (``0 .. workers-1``) has a live worker, or a
restart of it is scheduled, unless the master is stopping.
"""

from __future__ import annotations

import collections
import errno
import faulthandler
import logging
import os
import random
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
from .worker import AppLoadError, Worker, load_app

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

MESSAGE_READY = b"R"
MESSAGE_BEAT = b"."
MESSAGE_MAX_REQUESTS = b"M"

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
            return Worker(config, listeners, on_ready=lambda: announce(listeners, config)).run(
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


class WorkerProcess:
    """The master's view of one worker."""

    __slots__ = ("pid", "slot", "pipe", "started_at", "last_heard", "ready", "retiring",
                 "replaces", "kill_at", "killed")

    def __init__(self, pid: int, slot: int, pipe: int, now: float) -> None:
        self.pid = pid
        self.slot = slot
        self.pipe = pipe                 # read end of the worker's message pipe
        self.started_at = now
        self.last_heard = now
        self.ready = False
        self.retiring = False            # told to stop; its slot is free
        self.replaces: Optional["WorkerProcess"] = None   # the worker it takes over from
        self.kill_at = 0.0               # when stopping: SIGKILL after this
        self.killed = False


class Master:
    """Forks and supervises ``config.workers`` workers on shared ``listeners``."""

    def __init__(self, config: Config, listeners: List[socket.socket]) -> None:
        self.config = config
        self.listeners = listeners
        self.target = config.workers
        self.workers: Dict[int, WorkerProcess] = {}
        self.selector = selectors.DefaultSelector()
        self.signals: Deque[int] = collections.deque()
        self.stopping = ""               # "", "graceful" or "immediate"
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

    def run(self) -> int:
        self._install_signal_handlers()
        try:
            self._spawn_missing(time.monotonic())
            while self.workers or not self.stopping:
                for key, _ in self.selector.select(self._select_timeout()):
                    key.data(key.fd)
                now = time.monotonic()
                while self.signals:
                    self._on_signal(self.signals.popleft(), now)
                self._reap(now)
                self._check_workers(now)
                if not self.stopping:
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
            for slot, sockets in self.slot_sockets.items():
                if slot:
                    for sock in sockets:
                        sock.close()
        log.info("Stopped.")
        return self.exit_code

    def _select_timeout(self) -> float:
        timeout = 1.0
        if self.reloader is not None:
            timeout = RELOAD_POLL_S
        if self.spawn_not_before:
            timeout = min(timeout, max(0.0, self.spawn_not_before - time.monotonic()))
        return timeout

    # -- signals: handlers only enqueue ---------------------------------------------

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

    def _on_signal(self, signum: int, now: float) -> None:
        if signum == signal.SIGCHLD:
            return   # _reap() runs on every turn
        name = signal.Signals(signum).name
        if signum == signal.SIGQUIT or (signum == signal.SIGINT and self.stopping):
            if self.stopping != "immediate":
                log.info("Stopping at once (%s).", name)
                self._stop("immediate", now)
        elif signum in (signal.SIGINT, signal.SIGTERM):
            if not self.stopping:
                log.info("Shutting down gracefully (%s); a second CTRL+C stops at once.", name)
                self._stop("graceful", now)
        elif signum == signal.SIGUSR1:
            log.info("SIGUSR1: reopening the log files")
            logs.reopen()
            for worker in self.workers.values():
                self._kill(worker, signal.SIGUSR1)
        elif self.stopping:
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
                    if worker.slot >= self.target and not worker.retiring:
                        self._retire(worker, now)
                for sock in self.slot_sockets.pop(self.target, []):
                    sock.close()

    def _stop(self, how: str, now: float) -> None:
        self.stopping = how
        self.roll_queue.clear()
        if how == "graceful":
            grace_s = self.config.timeout_graceful_shutdown_s + LIFESPAN_SHUTDOWN_MARGIN_S
            signum = signal.SIGTERM
        else:
            grace_s = IMMEDIATE_STOP_S
            signum = signal.SIGQUIT
        for worker in self.workers.values():
            deadline = now + grace_s
            worker.kill_at = min(worker.kill_at, deadline) if worker.kill_at else deadline
            self._kill(worker, signum)

    # -- workers -------------------------------------------------------------------

    def _spawn_missing(self, now: float) -> None:
        if now < self.spawn_not_before:
            return
        self.spawn_not_before = 0.0
        filled = {worker.slot for worker in self.workers.values() if not worker.retiring}
        for slot in range(self.target):
            if slot not in filled:
                self._spawn(slot, now)

    def _spawn(self, slot: int, now: float) -> WorkerProcess:
        listeners = self._listeners_for(slot)
        read_end, write_end = os.pipe()
        max_requests = self.config.max_requests
        if max_requests:
            max_requests += random.randint(0, self.config.max_requests_jitter)
        # A signal caught between fork() and the child's own handlers would
        # run the master's handler in the child and be lost: hold them until
        # each side has the handlers it should have.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(self._saved_handlers))
        try:
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                self._run_child(listeners, write_end, max_requests, mask)   # never returns
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

    def _run_child(self, listeners: List[socket.socket], pipe: int, max_requests: int,
                   mask: Any) -> None:
        """In the forked worker: reset what belongs to the master, serve, ``_exit``."""
        code = EXIT_ERROR
        heartbeat = Heartbeat(pipe, max_requests, os.getppid())
        try:
            signal.set_wakeup_fd(-1)
            for signum in self._saved_handlers:
                signal.signal(signum, signal.SIG_DFL)
            for name in ("SIGHUP", "SIGTTIN", "SIGTTOU"):
                # Meant for the master (sent to the whole process group, say).
                signal.signal(getattr(signal, name), signal.SIG_IGN)
            signal.signal(signal.SIGQUIT, _exit_at_once)
            # Until the worker's loop handles it (logs.reopen), SIGUSR1's
            # default would end the worker.
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
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
            worker = Worker(self.config, listeners, on_ready=heartbeat.ready)
            worker.heartbeat = heartbeat
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
        worker.last_heard = time.monotonic()
        if MESSAGE_READY in data and not worker.ready:
            self._on_ready(worker, worker.last_heard)
        if MESSAGE_MAX_REQUESTS in data and not worker.retiring and not self.stopping:
            log.info("Worker %d reached --max-requests; replacing it", worker.pid)
            being_replaced = any(w.replaces is worker for w in self.workers.values())
            if worker.pid not in self.roll_queue and not being_replaced:
                self.roll_queue.append(worker.pid)

    def _worker_by_pipe(self, fd: int) -> Optional[WorkerProcess]:
        for worker in self.workers.values():
            if worker.pipe == fd:
                return worker
        return None

    def _on_ready(self, worker: WorkerProcess, now: float) -> None:
        worker.ready = True
        self.ever_ready = True
        self.backoff_s = 0.0
        log.info("Worker %d serving", worker.pid)
        if not self.announced:
            self.announced = True
            announce(self.listeners, self.config)
        old, worker.replaces = worker.replaces, None
        if old is not None and old.pid in self.workers and not old.retiring:
            self._retire(old, now)

    def _retire(self, worker: WorkerProcess, now: float) -> None:
        """Ask ``worker`` to drain and exit; its slot is free at once."""
        worker.retiring = True
        worker.kill_at = now + self.config.timeout_graceful_shutdown_s + LIFESPAN_SHUTDOWN_MARGIN_S
        self._kill(worker, signal.SIGTERM)

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
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            if worker.pipe in self.selector.get_map():
                self.selector.unregister(worker.pipe)
            os.close(worker.pipe)
            self._on_exit(worker, os.waitstatus_to_exitcode(status), now)

    def _on_exit(self, worker: WorkerProcess, code: int, now: float) -> None:
        how = describe_exit(code)
        if self.stopping or worker.retiring:
            log.debug("Worker %d stopped (%s)", worker.pid, how)
            return
        if worker.ready:
            log.warning("Worker %d died (%s); starting a new one", worker.pid, how)
            return
        if code == EXIT_APP_BOOT and not self.ever_ready:
            log.error("Worker %d failed to boot (see above); stopping", worker.pid)
            self.exit_code = EXIT_APP_BOOT
            self._stop("graceful", now)
            return
        if worker.replaces is not None:
            log.error("New worker %d failed to boot (%s); the old workers keep serving",
                      worker.pid, how)
            self.roll_queue.clear()
        self.backoff_s = min(BACKOFF_MAX_S, self.backoff_s * 2 or BACKOFF_FIRST_S)
        self.spawn_not_before = now + self.backoff_s
        log.warning("Worker %d died while booting (%s); retrying in %.1fs",
                    worker.pid, how, self.backoff_s)

    def _check_workers(self, now: float) -> None:
        for worker in self.workers.values():
            if worker.killed:
                continue
            if worker.kill_at:
                if now >= worker.kill_at:
                    log.warning("Worker %d did not stop in time; killing it", worker.pid)
                    worker.killed = True
                    self._kill(worker, signal.SIGKILL)
            elif now - worker.last_heard > self.config.timeout_worker_s:
                log.error("Worker %d %s for %.0fs; its stack follows, then it is killed",
                          worker.pid, "was stuck" if worker.ready else "did not boot",
                          now - worker.last_heard)
                # faulthandler writes from its C signal handler, even while
                # the worker's Python code is stuck; the kill follows later.
                self._kill(worker, signal.SIGUSR2)
                worker.kill_at = now + STACK_DUMP_S

    # -- replacing workers -------------------------------------------------------------

    def _replace_all(self, reason: str) -> None:
        current = [w.pid for w in self.workers.values() if not w.retiring and w.replaces is None]
        log.info("%s: replacing %d worker(s), one at a time", reason, len(current))
        self.roll_queue.clear()
        self.roll_queue.extend(sorted(current))

    def _step_roll(self, now: float) -> None:
        """Start the next replacement once the previous one is serving."""
        if now < self.spawn_not_before:
            return
        if any(worker.replaces is not None for worker in self.workers.values()):
            return
        while self.roll_queue:
            old = self.workers.get(self.roll_queue.popleft())
            if old is not None and not old.retiring:
                new = self._spawn(old.slot, now)
                new.replaces = old
                return

    def _poll_reload(self, now: float) -> None:
        if self.reloader is None or now < self.next_reload_poll:
            return
        self.next_reload_poll = now + RELOAD_POLL_S
        changed = self.reloader.changed()
        if changed:
            self.spawn_not_before = 0.0
            self._replace_all("Changed: %s" % changed)


class Heartbeat:
    """The worker's end of its pipe to the master; the worker calls it every tick."""

    def __init__(self, pipe: int, max_requests: int, master_pid: int) -> None:
        self.pipe = pipe
        self.max_requests = max_requests
        self.master_pid = master_pid
        self.was_ready = False
        self._asked_to_recycle = False
        self._orphaned = False
        os.set_blocking(pipe, False)

    def ready(self) -> None:
        self.was_ready = True
        self.send(MESSAGE_READY)

    def __call__(self, worker: Worker) -> None:
        message = MESSAGE_BEAT
        if (self.max_requests and not self._asked_to_recycle
                and worker.state.requests_served >= self.max_requests):
            self._asked_to_recycle = True
            message = MESSAGE_MAX_REQUESTS
        self.send(message)
        if os.getppid() != self.master_pid and not self._orphaned:
            # Nobody would restart or stop us any more.
            self._orphaned = True
            log.warning("Worker %d: the master process is gone; stopping", os.getpid())
            worker.stop()

    def send(self, message: bytes) -> None:
        try:
            os.write(self.pipe, message)
        except BlockingIOError:
            pass   # the master is behind; the next tick's byte will do
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise


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
