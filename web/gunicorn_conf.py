"""gunicorn's settings, the same wherever the web starts (`make up`, the Dockerfile, tests):

    gunicorn -c python:web.gunicorn_conf web.wsgi:app --bind HOST:PORT

Environment:
    WEB_WORKERS  worker processes (default 2; the Dockerfile sets 4)
    WEB_THREADS  threads per worker (default 4)

No `bind` here: each caller chooses its own address on the command line.
"""

import os

workers = int(os.environ.get("WEB_WORKERS", "2"))
# Requests mostly wait on PostgreSQL and Redis: threads overlap that waiting cheaply.
threads = int(os.environ.get("WEB_THREADS", "4"))

# On SIGTERM (a deploy, a scale-down) workers stop accepting and finish the requests they
# hold for up to this long: longer than any request takes (a provider call is capped at
# 3 + 10 s), shorter than the stop_grace_period in docker-compose.yml. gunicorn's default,
# stated because tests/faults/test_sigterm.py and the compose file depend on it.
graceful_timeout = 30

# "-" is stdout: `make up` (.run/logs/web.log) and Docker collect it with the app's lines.
accesslog = "-"
# JSON access and error lines, like every other log line of the service.
logger_class = "web.gunicorn_logging.JsonLogger"
# gunicorn 27's control socket defaults to one path per user: several gunicorns on one
# machine (tests, benchmarks, `make up`) would share it. Nothing of ours uses it.
control_socket_disable = True
