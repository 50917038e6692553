"""Chapter 4, aside: what a trusted proxy says about the client.

Behind a reverse proxy the peer of every connection is the proxy; the
client's address, the scheme it used and the host it asked for arrive in
headers: ``X-Forwarded-For``/``-Proto``/``-Host``, or RFC 7239
``Forwarded``.  Anyone can send those headers, so they count only when the
peer is a proxy we were told to trust (``--forwarded-allow-ips``: IPs,
CIDRs or ``*``).  Connections over a Unix socket are trusted: the socket
file's permissions already decide who may connect.

Pure functions and one small class: no sockets, no config object.  The
WSGI adapter calls ``TrustedProxies.trusts()`` once per request (a dict
lookup after the first request from an address) and, only for a trusted
peer, ``resolve()`` on the request's headers; the ASGI adapter hands the
peer to ``resolve()``, which asks ``trusts()`` only when the request carries
a proxy field, and calls ``forwarded_to_scope()`` only when there is
something to apply (``apply_to_scope()`` is the two together).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# Forget cached decisions past this many peer addresses (a scan must not grow memory).
_CACHE_MAX_ENTRIES = 4096

# The fields a proxy speaks through (the WSGI handler looks for them by name too).
FIELDS = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"))
_SCHEMES = frozenset(("http", "https", "ws", "wss"))
_WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}

# RFC 9110 §7.2 Host = uri-host [ ":" port ]: reg-name, IPv4 or [IPv6]
# characters only; anything else in a forwarded host is ignored.
_HOST = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=%-]*(\[[0-9A-Fa-f:.]+\])?(:[0-9]{1,5})?$")


class TrustedProxies:
    """The peers whose proxy headers count: ``"127.0.0.1,10.0.0.0/8,::1"`` or ``"*"``.

    Raises ``ValueError`` naming an entry that is neither an IP nor a CIDR.
    """

    __slots__ = ("trust_all", "addresses", "networks", "_decisions")

    def __init__(self, spec: str) -> None:
        self.trust_all = False
        self.addresses: set = set()
        self.networks: List[Network] = []
        self._decisions: Dict[str, bool] = {}
        for entry in spec.split(","):
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                self.trust_all = True
            elif "/" in entry:
                try:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError("forwarded_allow_ips: %r is not a CIDR" % entry) from None
            else:
                try:
                    self.addresses.add(ipaddress.ip_address(entry))
                except ValueError:
                    raise ValueError("forwarded_allow_ips: %r is not an IP address" % entry) from None

    def trusts(self, client: Optional[Tuple[str, int]]) -> bool:
        """Whether the peer of a connection (``None``: a Unix socket) is a trusted proxy."""
        if client is None or self.trust_all:
            return True
        host = client[0]
        decision = self._decisions.get(host)
        if decision is None:
            if len(self._decisions) >= _CACHE_MAX_ENTRIES:
                self._decisions.clear()
            decision = self._decisions[host] = self.trusts_host(host)
        return decision

    def trusts_host(self, host: str) -> bool:
        """Whether ``host`` (an address as text) is trusted; a non-address never is."""
        if self.trust_all:
            return True
        address = parse_address(host)
        if address is None:
            return False
        return address in self.addresses or any(address in network for network in self.networks)


def parse_address(host: str) -> Optional[Address]:
    """An IP address from text, IPv4-mapped IPv6 (a dual-stack peer) as IPv4; None if not one."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Forwarded:
    """What trusted proxy headers say: each part None when they do not say it."""

    __slots__ = ("client", "scheme", "host")

    def __init__(self, client: Optional[Tuple[str, int]] = None, scheme: Optional[str] = None,
                 host: Optional[str] = None) -> None:
        self.client = client
        self.scheme = scheme
        self.host = host

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Forwarded) and (
            (self.client, self.scheme, self.host) == (other.client, other.scheme, other.host))

    def __repr__(self) -> str:
        return "Forwarded(client=%r, scheme=%r, host=%r)" % (self.client, self.scheme, self.host)


def from_config(config: Any) -> Optional[TrustedProxies]:
    """The trusted proxies, or None when ``--proxy-headers`` is off."""
    return TrustedProxies(config.forwarded_allow_ips) if config.proxy_headers else None


# resolve()'s default ``peer``: the caller already knows the peer is trusted.
TRUSTED_PEER: Any = object()


def resolve(headers: Sequence[Tuple[bytes, bytes]], trusted: TrustedProxies,
            peer: Any = TRUSTED_PEER) -> Optional[Forwarded]:
    """Read the proxy headers of a request that came from a trusted peer.

    ``Forwarded`` wins over the ``X-Forwarded-*`` family when both are sent.
    The client is the rightmost address that is not itself a trusted proxy
    (every proxy appends the peer it saw), or the leftmost if all are.
    Returns None when the request carries no proxy header, or when
    ``peer`` (a connection's client address) is given and not trusted.
    """
    forwarded = forwarded_for = proto = host = None
    for name, value in headers:
        if name in FIELDS:
            # Repeated fields form one list (RFC 9110 §5.3).
            if name == b"forwarded":
                forwarded = value if forwarded is None else forwarded + b"," + value
            elif name == b"x-forwarded-for":
                forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
            elif name == b"x-forwarded-proto":
                proto = value
            else:
                host = value
    if forwarded is None and forwarded_for is None and proto is None and host is None:
        return None
    if peer is not TRUSTED_PEER and not trusted.trusts(peer):
        return None   # anyone may send the fields: they count from a trusted proxy only
    if forwarded is not None:
        return _from_forwarded(forwarded.decode("latin-1"), trusted)
    result = Forwarded()
    if forwarded_for is not None:
        nodes = [_split_node(entry.strip()) for entry in forwarded_for.decode("latin-1").split(",")]
        chosen = _client_index([node[0] for node in nodes], trusted)
        if chosen is not None:
            result.client = nodes[chosen]
    if proto is not None:
        # The nearest proxy's view: with a list, the last entry.
        result.scheme = _scheme(proto.decode("latin-1").rsplit(",", 1)[-1])
    if host is not None:
        result.host = _host(host.decode("latin-1").rsplit(",", 1)[-1])
    return result


def _client_index(hosts: List[str], trusted: TrustedProxies) -> Optional[int]:
    chosen = None
    for index in range(len(hosts) - 1, -1, -1):
        if not hosts[index]:
            continue
        chosen = index
        if not trusted.trusts_host(hosts[index]):
            break
    return chosen


def _from_forwarded(value: str, trusted: TrustedProxies) -> Forwarded:
    """RFC 7239 §4: ``Forwarded: for=192.0.2.60;proto=https;host=a.example, for=...``."""
    elements = [_parse_element(text) for text in _split_outside_quotes(value, ",")]
    nodes = [_split_node(element.get("for", "")) for element in elements]
    chosen = _client_index([node[0] for node in nodes], trusted)
    result = Forwarded()
    if chosen is None:
        return result
    element = elements[chosen]
    result.client = nodes[chosen]
    if "proto" in element:
        result.scheme = _scheme(element["proto"])
    if "host" in element:
        result.host = _host(element["host"])
    return result


def _split_outside_quotes(text: str, separator: str) -> List[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _parse_element(text: str) -> Dict[str, str]:
    """``for=a;proto=https`` -> ``{"for": "a", "proto": "https"}`` (quotes removed)."""
    pairs = {}
    for pair in _split_outside_quotes(text, ";"):
        name, equals, value = pair.partition("=")
        if not equals:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])   # RFC 9110 §5.6.4 quoted-pair
        pairs.setdefault(name.strip().lower(), value)
    return pairs


def _split_node(node: str) -> Tuple[str, int]:
    """RFC 7239 §6 node: ``192.0.2.43``, ``192.0.2.43:47011``, ``[2001:db8::1]:4711``, ``unknown``."""
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        host, _, port = node.partition(":")
    else:
        host, port = node, ""
    return host, int(port) if port.isdigit() and len(port) <= 5 else 0


def _scheme(value: str) -> Optional[str]:
    value = value.strip().lower()
    return value if value in _SCHEMES else None


def _host(value: str) -> Optional[str]:
    value = value.strip()
    return value if value and _HOST.match(value) else None


def scheme_for(scope_type: str, scheme: str) -> str:
    """``https`` for an ``http`` scope is ``wss`` for a ``websocket`` scope, and back."""
    table = _WEBSOCKET_SCHEMES if scope_type == "websocket" else _HTTP_SCHEMES
    return table[scheme]


def apply_to_scope(scope: Dict[str, Any], trusted: TrustedProxies,
                   peer: Any = TRUSTED_PEER) -> None:
    """Adjust an ASGI ``http``/``websocket`` scope from a trusted peer's proxy
    headers (with ``peer``, the connection's client: if it is trusted)."""
    forwarded = resolve(scope["headers"], trusted, peer)
    if forwarded is not None:
        forwarded_to_scope(scope, forwarded)


def forwarded_to_scope(scope: Dict[str, Any], forwarded: Forwarded) -> None:
    """Adjust an ASGI ``http``/``websocket`` scope to what ``resolve()`` found."""
    if forwarded.client is not None:
        scope["client"] = forwarded.client
    if forwarded.scheme is not None:
        scope["scheme"] = scheme_for(scope["type"], forwarded.scheme)
    if forwarded.host is not None:
        host = forwarded.host.encode("latin-1")
        scope["headers"] = [(name, host if name == b"host" else value)
                            for name, value in scope["headers"]]
        if not any(name == b"host" for name, _ in scope["headers"]):
            scope["headers"].append((b"host", host))


def apply_to_environ(environ: Dict[str, Any], headers: Sequence[Tuple[bytes, bytes]],
                     trusted: TrustedProxies) -> None:
    """Adjust a WSGI environ (PEP 3333) from a trusted peer's proxy headers."""
    forwarded = resolve(headers, trusted)
    if forwarded is None:
        return
    if forwarded.client is not None:
        environ["REMOTE_ADDR"] = forwarded.client[0]
        environ["REMOTE_PORT"] = str(forwarded.client[1])
    if forwarded.scheme is not None:
        environ["wsgi.url_scheme"] = _HTTP_SCHEMES[forwarded.scheme]
    if forwarded.host is not None:
        environ["HTTP_HOST"] = forwarded.host
