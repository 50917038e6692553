"""Chapter 5: the listening sockets.

Listeners are made before workers exist (by the master, or by the one
process that serves), so that every worker accepts from the same kernel
queue and a restarted worker finds the socket already there: while the
master holds a listener, a connection that arrives between a worker's
death and its replacement waits in the queue instead of being refused.

Here: TCP over IPv4 and IPv6 (``::`` is dual stack), Unix domain sockets,
inherited descriptors (``--fd`` and systemd socket activation),
SO_REUSEPORT copies (one per worker), and the TLS context.  Every listener
is non-blocking; accepting is the worker's job, and so is the TLS handshake.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import stat
from typing import Any, List, Optional, Tuple

# systemd's sd_listen_fds(3): inherited sockets start at descriptor 3.
SD_LISTEN_FDS_START = 3


class BindError(OSError):
    """A listener could not be created; the message names the address."""


class TLSConfigError(ValueError):
    """The certificate, key or CA file cannot be loaded; the message says why."""


def create_listeners(config: Any, environ: Optional[dict] = None) -> List[socket.socket]:
    """Every listener the options ask for.

    Sockets handed over by systemd (``LISTEN_FDS``), ``--fd``, ``--uds`` and
    each ``--bind``; ``--host``/``--port`` only when none of those is given.
    Raises ``BindError``; nothing stays open when it does.
    """
    listeners: List[socket.socket] = []
    try:
        listeners.extend(activated_sockets(os.environ if environ is None else environ))
        if config.fd is not None:
            listeners.append(from_fd(config.fd))
        if config.uds:
            listeners.append(bind_unix(config.uds, config.backlog, config.uds_permissions))
        for spec in config.binds:
            listeners.append(bind_spec(spec, config))
        if not listeners:
            listeners.append(bind_tcp(config.host, config.port, config.backlog, config.reuse_port))
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def activated_sockets(environ: Any) -> List[socket.socket]:
    """The sockets systemd passed us (``LISTEN_FDS``/``LISTEN_PID``), if any.

    The variables are removed once read, so that a process we start does not
    take the sockets for its own (sd_listen_fds(3) with ``unset_environment``).
    """
    count = environ.get("LISTEN_FDS")
    if not count:
        return []
    pid = environ.get("LISTEN_PID")
    if pid and pid != str(os.getpid()):
        return []   # meant for another process (our parent, say)
    if not count.isdigit() or int(count) < 1:
        raise BindError(errno.EINVAL, "socket activation: LISTEN_FDS=%r is not a count" % count)
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    return [from_fd(fd) for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count))]


def bind_spec(spec: str, config: Any) -> socket.socket:
    """``unix:/path``, ``fd://3`` or ``host:port`` (``[::1]:8000`` for IPv6)."""
    if spec.startswith("unix:"):
        return bind_unix(spec[5:], config.backlog, config.uds_permissions)
    if spec.startswith("fd://"):
        return from_fd(_parse_int(spec[5:], spec))
    host, port = split_host_port(spec, config.port)
    return bind_tcp(host, port, config.backlog, config.reuse_port)


def split_host_port(spec: str, default_port: int) -> Tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; a bare IPv6 address keeps the default port."""
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        return host, _parse_int(rest[1:], spec) if rest.startswith(":") else default_port
    if spec.count(":") == 1:
        host, _, port = spec.partition(":")
        return host, _parse_int(port, spec)
    return spec, default_port


def _parse_int(text: str, spec: str) -> int:
    if not text.isdigit():
        raise BindError(errno.EINVAL, "cannot listen on %r: %r is not a number" % (spec, text))
    return int(text)


def bind_tcp(host: str, port: int, backlog: int = 2048, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; ``host`` may be a name, an IPv4 or an IPv6 address."""
    try:
        family, address = _resolve(host, port)
    except socket.gaierror as exc:
        raise BindError(errno.EADDRNOTAVAIL, "cannot listen on %s:%s: %s" % (host, port, exc.strerror)) from exc
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            # "--host ::" means every address, IPv4 included (dual stack).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, "cannot listen on %s:%s: %s" % (host, port, exc.strerror)) from exc
    sock.setblocking(False)
    return sock


def _resolve(host: str, port: int) -> Tuple[int, Any]:
    if host in ("", "::") or ":" in host:
        return socket.AF_INET6, (host, port)
    family, _, _, _, address = socket.getaddrinfo(
        host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    return family, address


def reuse_port_copy(sock: socket.socket, backlog: int) -> socket.socket:
    """Another SO_REUSEPORT socket on the address ``sock`` listens on.

    The kernel spreads new connections over all of them, so each worker
    accepts from its own queue (no thundering herd, no lock).
    """
    host, port = sock.getsockname()[:2]
    return bind_tcp(host, port, backlog, reuse_port=True)


def is_reuse_port(sock: socket.socket) -> bool:
    return (sock.family in (socket.AF_INET, socket.AF_INET6)
            and bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)))


def bind_unix(path: str, backlog: int = 2048, permissions: Optional[int] = None) -> socket.socket:
    """A listening Unix domain socket at ``path``, with mode ``permissions``.

    A socket file left by an earlier run is replaced; one a live server
    listens on (it accepts a connection) is not: ``BindError``, as for a
    TCP port in use.
    """
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            # Anything else at that path is not ours to remove.
            raise BindError(errno.EEXIST, "cannot listen on unix:%s: a non-socket file exists there" % path)
        if unix_socket_is_live(path):
            raise BindError(errno.EADDRINUSE,
                            "cannot listen on unix:%s: another server is listening there" % path)
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if permissions is not None:
            # Before listen(): nobody can connect while the mode is still the
            # umask's.  chmod, not the umask: the mode is the same whatever
            # umask the server was started with.
            os.chmod(path, permissions)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, "cannot listen on unix:%s: %s" % (path, exc.strerror)) from exc
    sock.setblocking(False)
    return sock


def unix_socket_is_live(path: str) -> bool:
    """Whether a server accepts connections on the socket file ``path``.

    A stale file refuses at once (ECONNREFUSED); a live server's backlog
    takes the connection even while it is busy.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        # EAGAIN (a full backlog), a timeout, EACCES: someone is there, or we
        # cannot tell; never remove what may be another server's.
        return True
    finally:
        probe.close()
    return True


def from_fd(fd: int) -> socket.socket:
    """A listener inherited as descriptor ``fd`` (its family is asked of the kernel).

    Raises ``BindError`` when ``fd`` is not an open, listening stream socket.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(exc.errno, "cannot listen on fd %d: %s" % (fd, exc.strerror)) from exc
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening = 1   # no SO_ACCEPTCONN here (macOS): let accept() tell
    if sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()   # not ours to close
        raise BindError(errno.EINVAL, "cannot listen on fd %d: not a listening stream socket" % fd)
    sock.setblocking(False)
    return sock


def close_listener(sock: socket.socket) -> None:
    """Close ``sock``, and remove its socket file if it is a Unix socket we bound."""
    path = None
    if sock.family == socket.AF_UNIX:
        try:
            name = sock.getsockname()
            path = name if isinstance(name, str) and name and not name.startswith("\0") else None
        except OSError:
            pass
    sock.close()
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def describe(sock: socket.socket, scheme: str = "http") -> str:
    """An address as a person would type it: ``http://127.0.0.1:8000``."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return "unix:%s" % (name if isinstance(name, str) else name.decode())
    host, port = name[0], name[1]
    if sock.family == socket.AF_INET6:
        host = "[%s]" % host
    return "%s://%s:%d" % (scheme, host, port)


def create_ssl_context(config: Any) -> ssl.SSLContext:
    """The server's TLS context from the ``ssl_*`` options.

    Raises ``TLSConfigError`` naming the flag and the file that cannot be
    used.  An encrypted key without ``--ssl-keyfile-password`` fails at
    once: OpenSSL would otherwise ask for the password on the terminal.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    password = config.ssl_keyfile_password
    try:
        context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile,
                                _no_password if password is None else password)
    except _PasswordNeeded:
        raise TLSConfigError("--ssl-keyfile %s is encrypted: give its password with "
                             "--ssl-keyfile-password" % (config.ssl_keyfile or config.ssl_certfile)
                             ) from None
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(_explain_cert_chain_error(config, exc)) from None
    context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    if config.ssl_ca_certs:
        try:
            context.load_verify_locations(config.ssl_ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError("--ssl-ca-certs %s: %s" % (config.ssl_ca_certs, _reason(exc))) from None
    if config.ssl_ciphers:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError as exc:
            raise TLSConfigError("invalid --ssl-ciphers %r: %s" % (config.ssl_ciphers, _reason(exc))) from None
    return context


class _PasswordNeeded(Exception):
    pass


def _no_password() -> bytes:
    # Called by OpenSSL for an encrypted key when no password was given;
    # raising here stops it from prompting on the terminal.
    raise _PasswordNeeded()


def _explain_cert_chain_error(config: Any, exc: BaseException) -> str:
    """Which of ``--ssl-certfile``/``--ssl-keyfile`` is at fault, and why.

    OpenSSL says "PEM lib" for most faults; looking at the files says more.
    """
    certfile, keyfile = config.ssl_certfile, config.ssl_keyfile
    key_flag = "--ssl-keyfile" if keyfile else "--ssl-certfile"
    texts = {}
    for name, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if path is None:
            continue
        try:
            with open(path, "rb") as file:
                texts[name] = file.read()
        except OSError as error:
            return "%s %s: %s" % (name, path, error.strerror or error)
    key_text = texts.get("--ssl-keyfile", texts["--ssl-certfile"])
    key_path = keyfile or certfile
    if b"-----BEGIN CERTIFICATE-----" not in texts["--ssl-certfile"]:
        return "--ssl-certfile %s: no PEM certificate in it" % certfile
    if b"PRIVATE KEY-----" not in key_text:
        return "%s %s: no PEM private key in it" % (key_flag, key_path)
    if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
        return "%s %s is not the key of --ssl-certfile %s" % (key_flag, key_path, certfile)
    if b"ENCRYPTED" in key_text and config.ssl_keyfile_password is not None:
        return "%s %s: cannot decrypt it with --ssl-keyfile-password (wrong password?)" % (
            key_flag, key_path)
    return "--ssl-certfile %s, %s %s: %s" % (certfile, key_flag, key_path, _reason(exc))


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
