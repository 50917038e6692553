"""A Bottle app: static files from a directory the test chooses (the video-hosting demo)."""

import bottle

app = bottle.Bottle()
app.config["static_root"] = "."


@app.route("/hello/<name>")
def hello(name):
    return "hello %s from bottle" % name


@app.route("/static/<filename:path>")
def static(filename):
    return bottle.static_file(filename, root=app.config["static_root"])
