"""Access to the app's Resources from inside a request."""

from __future__ import annotations

from flask import current_app

from adapters.resources import Resources


def resources() -> Resources:
    res: Resources = current_app.extensions["payments"]
    return res
