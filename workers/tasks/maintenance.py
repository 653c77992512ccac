"""Celery tasks for the maintenance queue."""
