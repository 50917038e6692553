"""Chapter 4, part 3: WebSockets on the same loop (RFC 6455, RFC 7692).

Three modules, in reading order:

* ``frames``: framing and permessage-deflate without I/O -- bytes in,
  events out, and messages out as bytes;
* ``handshake``: the opening handshake and the extension negotiation,
  also without I/O;
* ``asgi``: the ASGI ``websocket`` cycle that drives both over an upgraded
  ``Connection``.

This package imports none of them here, so that the sans-IO parts load
without the connection layer.
"""
