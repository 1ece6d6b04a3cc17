"""The entrypoint: a Flask app (detected as `flask`: app.py imports flask and defines `app`).

    /            an HTML page
    /api/info    JSON about this worker
    /greet       calls the greeter application through the mesh
"""

import os

import httpx
from flask import Flask, jsonify, render_template_string, request

app = Flask(__name__)

PAGE = """<!doctype html>
<title>Watt + Flask</title>
<h1>Hello from Flask, inside Watt</h1>
<p>This page comes from a Flask app running in {{ where }}.</p>
<ul>
  <li><a href="/api/info">/api/info</a> — JSON about this worker</li>
  <li><a href="/greet?name=Ada">/greet?name=Ada</a> — a call to http://greeter.plt.local</li>
</ul>
"""


def where() -> str:
    try:
        import _interpreters

        interp = _interpreters.get_current()[0]
    except ImportError:
        interp = 0
    return f"subinterpreter {interp}" if interp else f"process {os.getpid()}"


@app.get("/")
def home():
    return render_template_string(PAGE, where=where())


@app.get("/api/info")
def info():
    return jsonify(app="web", framework="flask", pid=os.getpid(), runs_in=where())


@app.get("/greet")
def greet():
    # Flask views run on a worker thread, so a plain synchronous client works;
    # greeter.plt.local is answered over an in-memory channel, not the network.
    reply = httpx.get("http://greeter.plt.local/hello",
                      params={"name": request.args.get("name", "world")})
    return jsonify(via="mesh", greeter=reply.json())
