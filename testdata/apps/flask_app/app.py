"""A small Flask app for bridge's end-to-end tests (Flask 2.2, python3-flask).

Routes: JSON GET/POST, a form POST, a file upload that answers the upload's
size and sha256, a streaming response (stream_with_context with sleeps), a
redirect, Flask's own 404, and a route that raises (Flask answers 500 and
logs the traceback to wsgi.errors).

Run: bridge serve --runner python:app:application --chdir testdata/apps/flask_app ...
"""
import hashlib
import time

from flask import Flask, Response, jsonify, redirect, request, stream_with_context

app = Flask(__name__)
application = app


@app.get("/api/items/<int:item_id>")
def get_item(item_id):
    return jsonify(id=item_id, name="item-%d" % item_id, q=request.args.get("q"))


@app.post("/api/echo")
def echo():
    data = request.get_json()
    return jsonify(received=data, content_type=request.content_type), 201


@app.post("/form")
def form():
    return jsonify(form=request.form.to_dict(flat=False))


@app.post("/upload")
def upload():
    f = request.files["file"]
    h = hashlib.sha256()
    size = 0
    while True:
        chunk = f.stream.read(1 << 16)
        if not chunk:
            break
        h.update(chunk)
        size += len(chunk)
    return jsonify(filename=f.filename, size=size, sha256=h.hexdigest(),
                   fields=request.form.to_dict())


@app.get("/stream")
def stream():
    n = request.args.get("n", 3, type=int)
    delay = request.args.get("delay", 1.0, type=float)

    @stream_with_context
    def gen():
        for i in range(n):
            if i:
                time.sleep(delay)
            # request is usable here thanks to stream_with_context
            yield "chunk %d of %d %s\n" % (i, n, request.path)

    return Response(gen(), mimetype="text/plain")


@app.get("/redirect")
def moved():
    return redirect("/api/items/7?q=moved")


@app.get("/boom")
def boom():
    raise RuntimeError("flask-secret-boom")
