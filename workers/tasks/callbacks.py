"""Celery tasks for the callbacks queue."""
