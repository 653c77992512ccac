"""The hello-world baseline of B1, B3 and B5: a Flask app that reads a POST's body and
answers a small JSON object, nothing else. Served by the same gunicorn settings as the
real app (`web/gunicorn_conf.py`), so the ratio isolates what our views add."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/hello")
def hello():
    return jsonify({"received": len(request.get_data())})
