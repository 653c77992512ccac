"""Celery tasks for the payments queue."""
