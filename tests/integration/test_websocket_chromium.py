"""A real browser: headless Chromium loads a page from the server whose
script opens websockets back to it, echoes, and closes both ways.  The page
writes what it saw into the DOM and reports it over one more websocket;
the test waits for that report, then ends the browser."""

import os
import signal
import subprocess
import tempfile

import pytest

from tests.apps.ws_apps import EVENTS

PAGE = b"""<!doctype html>
<html><body><pre id="log">pending</pre><script>
const log = [];
function done() {
  document.getElementById("log").textContent = log.join("\\n");
  const report = new WebSocket("ws://" + location.host + "/report");
  report.onopen = () => { report.send(log.join("\\n")); report.close(); };
}

function second() {
  // The server closes this one, with a code and a reason.
  const ws = new WebSocket("ws://" + location.host + "/server-closes");
  ws.onclose = (e) => { log.push("server closed " + e.code + " " + e.reason + " " + e.wasClean); done(); };
}

const ws = new WebSocket("ws://" + location.host + "/echo", ["echo.v1"]);
ws.binaryType = "arraybuffer";
ws.onopen = () => {
  log.push("open " + ws.protocol + " " + ws.extensions);
  ws.send("hello \\u2603 " + "x".repeat(5000));
};
ws.onmessage = (e) => {
  if (typeof e.data === "string") {
    log.push("text " + e.data.length + " " + e.data.slice(0, 7));
    ws.send(new Uint8Array([1, 2, 3, 250]));
  } else {
    log.push("bytes " + Array.from(new Uint8Array(e.data)).join(","));
    ws.close(4000, "browser done");
  }
};
ws.onclose = (e) => { log.push("closed " + e.code + " " + e.wasClean); second(); };
</script></body></html>
"""

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-extensions", "--mute-audio"]


async def page_and_sockets(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                (b"content-length", b"%d" % len(PAGE))]})
        await send({"type": "http.response.body", "body": PAGE})
        return
    if scope["type"] != "websocket":
        return
    await receive()
    if scope["path"] == "/report":
        await send({"type": "websocket.accept"})
        EVENTS.put(("report", (await receive())["text"]))
        return
    if scope["path"] == "/server-closes":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "server done"})
        return
    offered = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
    while True:
        message = await receive()
        EVENTS.put(message)
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"),
                    "bytes": message.get("bytes")})


class Chromium:
    """Headless Chromium on a page, in its own process group; ``stop()`` ends it."""

    def __init__(self, path, url):
        self.profile = tempfile.TemporaryDirectory()
        command = [path] + CHROMIUM_FLAGS + ["--user-data-dir=" + self.profile.name, url]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self):
        # The browser's helper processes share the group we created for it.
        for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self.profile.cleanup()


@pytest.mark.requires_program("chromium")
def test_chromium_echoes_and_closes(serve, program):
    EVENTS.clear()
    server = serve(page_and_sockets)
    host, port = server.address[:2]
    browser = Chromium(program("chromium"), "http://%s:%d/" % (host, port))
    try:
        seen = [EVENTS.get(timeout=60) for _ in range(4)]
    finally:
        browser.stop()
    assert seen[0]["text"] == "hello \u2603 " + "x" * 5000
    assert seen[1]["bytes"] == b"\x01\x02\x03\xfa"
    assert seen[2] == {"type": "websocket.disconnect", "code": 4000, "reason": "browser done"}
    kind, report = seen[3]
    assert kind == "report"
    assert report.splitlines() == [
        "open echo.v1 permessage-deflate",      # Chromium offers compression; we accept
        "text 5008 hello \u2603",
        "bytes 1,2,3,250",
        "closed 4000 true",
        "server closed 4001 server done true",
    ]
