"""A Flask app for the framework tests: routes, JSON, uploads, files, streams, abort."""

import hashlib

from flask import Flask, Response, abort, jsonify, request, send_file, stream_with_context

app = Flask(__name__)


@app.route("/")
def index():
    return "hello from flask"


@app.route("/users/<int:user_id>")
def user(user_id):
    return jsonify(id=user_id, script_root=request.script_root, path=request.path)


@app.post("/json")
def echo_json():
    data = request.get_json()
    return jsonify(received=data, count=len(data))


@app.post("/upload")
def upload():
    file = request.files["file"]
    data = file.read()
    return jsonify(name=file.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   note=request.form.get("note"))


@app.route("/file")
def download():
    return send_file(request.args["path"], mimetype="application/octet-stream")


@app.route("/stream")
def stream():
    count = int(request.args.get("count", "3"))

    def lines():
        for number in range(count):
            # request is still usable inside the generator (stream_with_context).
            yield "%s %d\n" % (request.args.get("word", "line"), number)

    return Response(stream_with_context(lines()), mimetype="text/plain")


@app.route("/teapot")
def teapot():
    abort(418)


@app.route("/crash")
def crash():
    raise RuntimeError("a bug in a view")
