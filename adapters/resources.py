"""The process-wide handles every entry point needs, built from Settings.

Building them connects to nothing: engines and clients connect on first use.
"""

from __future__ import annotations

from functools import cached_property

import redis
from celery import Celery
from redis import Redis

from adapters.amqp_broker import AmqpBroker
from adapters.celery_app import is_amqp, make_celery
from adapters.db import Database, UnitOfWork
from adapters.providers.registry import ProviderRegistry, build_registry
from adapters.redis_client import make_redis
from adapters.task_queue import TaskQueue
from config import Settings


class Resources:
    def __init__(self, settings: Settings, celery_app: Celery | None = None,
                 db_pool_size: int = 5) -> None:
        self.settings = settings
        self._celery_app = celery_app
        self._db_pool_size = db_pool_size

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url, pool_size=self._db_pool_size)

    @cached_property
    def redis(self) -> redis.Redis:
        return make_redis(self.settings.redis_url)

    @cached_property
    def broker(self) -> Redis | AmqpBroker:
        """The Celery broker, for looking at (readiness, queue depths), not for sending
        (that is `queue`): the locks' Redis when BROKER_URL is unset or the same."""
        url = self.settings.broker_url
        if is_amqp(url):
            return AmqpBroker(url)
        return self.redis if url == self.settings.redis_url else make_redis(url)

    @cached_property
    def celery(self) -> Celery:
        return self._celery_app or make_celery(self.settings)

    @cached_property
    def providers(self) -> ProviderRegistry:
        """Payment providers by method or name; PAYMENT_PROVIDERS is checked here."""
        return build_registry(self.settings, self.settings.payment_providers)

    @cached_property
    def queue(self) -> TaskQueue:
        return TaskQueue(self.celery)

    def uow(self) -> UnitOfWork:
        # Tasks deferred inside the transaction (adapters.db.defer_task) go to our queue.
        return self.db.uow(task_sender=lambda name, *args: self.queue.send(name, *args))

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
        if "redis" in self.__dict__:
            self.redis.close()
        if "broker" in self.__dict__:
            self.broker.close()
