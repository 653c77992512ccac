"""A second whole stack whose WeChat Pay and Alipay methods go to the local doubles.

Its own database and Redis (so its worker never takes the sandbox stack's tasks, nor
the other way round), its own live server and Celery worker, both doubles' keys under
its own run dir. The tests of the real-provider connectors run against it end to end.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.resources import Resources
from config import Settings
from devstack.embedded import free_port
from devstack.scratch_servers import fresh_database, redis_database, stop_process_group
from standins.keys import doubles_environment
from tests.support.live_server import Api, serve
from tests.support.worker import start_worker


@dataclass
class DoublesStack:
    settings: Settings
    resources: Resources
    env: dict[str, str]
    live_url: str
    run_dir: Path

    @property
    def api(self) -> Api:
        return Api(self.live_url)

    def admin_key(self) -> str:
        from services.api_keys import create_api_key

        return create_api_key(self.resources.uow(), "admin", name="doubles admin")

    def user_key(self, user_id: int) -> str:
        from services.api_keys import create_api_key

        return create_api_key(self.resources.uow(), "user", user_id=user_id,
                              name=f"doubles user {user_id}")


@contextmanager
def doubles_stack(server_url: str, run_dir: Path) -> Iterator[DoublesStack]:
    run_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_database(server_url, "payments_doubles"))
        redis_url = stack.enter_context(redis_database(run_dir))
        env = {k: v for k, v in os.environ.items() if k != "BROKER_URL"}
        env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, APP_ENV="test",
                   RUN_DIR=str(run_dir), PYTHONUNBUFFERED="1", PUBLIC_BASE_URL=public_url,
                   # The providers' real schedules wait minutes between tries.
                   STANDIN_RETRY_SCALE="0.01")
        env.update(doubles_environment(run_dir, public_url))
        settings = Settings.from_env(env)
        resources = Resources(settings)
        stack.callback(resources.close)
        from web.app import create_app

        live_url = stack.enter_context(serve(create_app(settings, resources), port=port))
        worker = start_worker(env, run_dir / "worker.log")
        stack.callback(stop_process_group, worker, signal.SIGTERM)
        yield DoublesStack(settings, resources, env, live_url, run_dir)
