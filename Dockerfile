# One image for every role: web, worker, beat, flower and the one-shot migrate job.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 APP_ENV=production
WORKDIR /app

COPY pyproject.toml README.md ./
COPY config.py config_secrets.py beat_schedule.py ./
COPY domain/ domain/
COPY services/ services/
COPY adapters/ adapters/
COPY web/ web/
COPY workers/ workers/
COPY cli/ cli/
COPY devstack/ devstack/
COPY standins/ standins/
COPY migrations/ migrations/
RUN pip install . && useradd --system --uid 10001 payments
USER payments

# 8000 web, 5555 flower, 9808 a worker's /metrics (WORKER_METRICS_ADDRESS)
EXPOSE 8000 5555 9808
# gunicorn's settings live in web/gunicorn_conf.py; a container gets more workers than make up.
ENV WEB_WORKERS=4
CMD ["gunicorn", "-c", "python:web.gunicorn_conf", "web.wsgi:app", "--bind", "0.0.0.0:8000"]
