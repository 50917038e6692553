"""Step 2: non-blocking sockets and select().

Every socket is non-blocking: recv(), send() and accept() return at once,
with data or with BlockingIOError.  The one place the server waits is
select(), which asks the kernel which sockets are ready.  A client that
sends nothing no longer holds up the others.

This step is still naive on purpose: it trusts one recv() to bring a whole
request and one send() to take a whole response.  Both are false, and the
tests show it; step 3 fixes them (docs/tutorial/step2_select.md).

    python3 docs/tutorial/step2_select.py --port 8002
"""

import select
import sys

from step1_blocking import main, parse_head, response


def app(method, target):
    if target.startswith("/big?"):
        return b"x" * int(target[5:])
    return b"Hello from step 2: " + method.encode() + b" " + target.encode() + b"\n"


# region: on_readable
def on_readable(sock, clients):
    """One recv() on a client socket, and the answer if it holds a request."""
    try:
        data = sock.recv(65536)           # never blocks: select() said "readable"
    except ConnectionError:
        data = b""
    if not data:                          # EOF: the client has gone
        clients.remove(sock)
        sock.close()
        return
    if b"\r\n\r\n" in data:
        method, target, version, fields = parse_head(data.partition(b"\r\n\r\n")[0])
        answer = response("200 OK", app(method, target), keep_alive=False)
    else:
        # Naive: a head cut in two by the network is taken for a bad one.
        answer = response("400 Bad Request", b"incomplete request\n", keep_alive=False)
    try:
        # Naive: send() takes what fits in the socket's buffer and returns
        # how much that was; here the rest is silently lost.
        sock.send(answer)
    except (BlockingIOError, ConnectionError):
        pass
    clients.remove(sock)
    sock.close()
# endregion: on_readable


# region: serve
def serve(listener):
    listener.setblocking(False)
    clients = []
    while True:
        # The only blocking call: sleep until the listener or a client is readable.
        readable, _, _ = select.select([listener] + clients, [], [])
        for sock in readable:
            if sock is listener:
                try:
                    client, address = listener.accept()
                except BlockingIOError:   # another process took it first
                    continue
                client.setblocking(False)
                clients.append(client)
            else:
                on_readable(sock, clients)
# endregion: serve


if __name__ == "__main__":
    sys.exit(main(serve, __doc__, 8002))
