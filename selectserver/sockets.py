"""Chapter 5: the listening sockets.

Listeners are made before workers exist (by the master, or by the one
process that serves), so that every worker accepts from the same kernel
queue and a restarted worker finds the socket already there.  Here:
TCP over IPv4 and IPv6, Unix domain sockets and inherited descriptors.
Every listener is non-blocking; accepting is the worker's job.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Any, List, Optional, Tuple


class BindError(OSError):
    """A listener could not be created; the message names the address."""


def create_listeners(config: Any) -> List[socket.socket]:
    """Every listener the options ask for (``--fd``, ``--uds``, else host/port)."""
    listeners = []
    if config.fd is not None:
        listeners.append(from_fd(config.fd))
    if config.uds:
        listeners.append(bind_unix(config.uds, config.backlog, config.uds_permissions))
    for spec in config.binds:
        listeners.append(bind_spec(spec, config))
    if not listeners:
        listeners.append(bind_tcp(config.host, config.port, config.backlog, config.reuse_port))
    return listeners


def bind_spec(spec: str, config: Any) -> socket.socket:
    """``unix:/path``, ``fd://3`` or ``host:port`` (``[::1]:8000`` for IPv6)."""
    if spec.startswith("unix:"):
        return bind_unix(spec[5:], config.backlog, config.uds_permissions)
    if spec.startswith("fd://"):
        return from_fd(int(spec[5:]))
    host, port = split_host_port(spec, config.port)
    return bind_tcp(host, port, config.backlog, config.reuse_port)


def split_host_port(spec: str, default_port: int) -> Tuple[str, int]:
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if spec.count(":") == 1:
        host, _, port = spec.partition(":")
        return host, int(port)
    return spec, default_port


def bind_tcp(host: str, port: int, backlog: int = 2048, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            # "--host ::" means every address, IPv4 included (dual stack).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, "cannot listen on %s:%s: %s" % (host, port, exc.strerror)) from exc
    sock.setblocking(False)
    return sock


def bind_unix(path: str, backlog: int = 2048, permissions: Optional[int] = None) -> socket.socket:
    if os.path.exists(path):
        # A socket file left by an earlier run is in the way; anything else
        # at that path is not ours to remove.
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
        else:
            raise BindError(17, "cannot listen on unix:%s: a non-socket file exists there" % path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if permissions is not None:
            os.chmod(path, permissions)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, "cannot listen on unix:%s: %s" % (path, exc.strerror)) from exc
    sock.setblocking(False)
    return sock


def from_fd(fd: int) -> socket.socket:
    """A listener inherited as descriptor ``fd`` (its family is asked of the kernel)."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


def describe(sock: socket.socket) -> str:
    """An address as a person would type it: ``http://127.0.0.1:8000``."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return "unix:%s" % (name if isinstance(name, str) else name.decode())
    host, port = name[0], name[1]
    if sock.family == socket.AF_INET6:
        host = "[%s]" % host
    return "http://%s:%d" % (host, port)
