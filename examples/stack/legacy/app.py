"""A Flask app behind the gateway at /legacy; the route keeps the prefix
(``stripPrefix: false``), so Flask's own routes start with /legacy."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/legacy/")
def home():
    return jsonify(app="legacy", path=request.path)


@app.get("/legacy/hello")
def hello():
    return jsonify(message=f"hello {request.args.get('name', 'world')}")
