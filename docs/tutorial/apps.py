"""An ASGI app for the exercises: a response too big to fit in any buffer.

    python3 -m selectserver --app-dir docs/tutorial apps:app

GET /big?MIB streams MIB mebibytes in 64 KiB pieces and says on stderr how
far it got, every 4 MiB.  When the client does not read, ``await send()``
stops returning once the server's buffers are full, and the count stops:
that is backpressure, seen from the app.
"""

import sys

PIECE = b"x" * 65536


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    mebibytes = int(scope["query_string"] or b"64")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", b"%d" % (mebibytes << 20))]})
    for number in range(1, mebibytes * 16 + 1):
        await send({"type": "http.response.body", "body": PIECE, "more_body": True})
        if number % 64 == 0:
            print("app: %d MiB handed to send()" % (number // 16), file=sys.stderr, flush=True)
    await send({"type": "http.response.body", "body": b""})
