"""The no-op task of B2's baseline, loaded into a worker with `--include bench.noop_task`."""

from bench.applying import NOOP_TASK
from workers.app import celery


@celery.task(name=NOOP_TASK)
def noop(callback_id: int) -> None:
    """Takes what callbacks.process takes and does nothing with it."""
