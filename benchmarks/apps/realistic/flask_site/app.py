"""Flask app of the realistic scenario: a Jinja catalogue page, the same as the Django site.

``GET /?q=...`` renders 20 items (templates/catalogue.html) with their total;
``GET /api`` returns the same as JSON.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flask import Flask, jsonify, render_template, request  # noqa: E402
from items import page  # noqa: E402

app = Flask(__name__)


@app.get("/")
def catalogue():
    return render_template("catalogue.html", **page(request.args.get("q", "")))


@app.get("/api")
def api():
    return jsonify(page(request.args.get("q", "")))
