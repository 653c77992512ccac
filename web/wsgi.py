"""The WSGI entry point for gunicorn: `gunicorn -c python:web.gunicorn_conf web.wsgi:app`.

The process's logging is set up here, not by the app factory: JSON lines on stderr
(adapters/logging_setup.py). gunicorn's own error and access lines are JSON too, through
the logger class that web/gunicorn_conf.py names (web/gunicorn_logging.py).
"""

from adapters.logging_setup import configure_json_logging
from web.app import create_app

configure_json_logging()
app = create_app()
