"""Settings, read once from the environment into a typed object and passed down.

Nothing here connects to anything. When DATABASE_URL / REDIS_URL are not set in
the environment, the values written by `make up` to `.run/stack.env` are used,
so the `payments` CLI works in a second terminal next to a running dev stack.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from config_secrets import SecretError, Secrets, read_secrets
from domain.money import STORED_DECIMALS, is_iso_currency, minor_units
from domain.webhooks import DEFAULT_RETRY_SCHEDULE, DISABLE_AFTER_SECONDS, parse_schedule

PROJECT_ROOT = Path(__file__).resolve().parent
# Only these run the lenient defaults and mount the stand-ins (sandbox, doubles); an
# unset or unknown APP_ENV is production, so a forgotten variable is never the dev setup.
DEV_ENVIRONMENTS = frozenset({"dev", "test"})
DEFAULT_ENVIRONMENT = "production"


class ConfigError(Exception):
    """A setting is missing or malformed."""


def normalize_database_url(url: str) -> str:
    """Accept postgres://, postgresql:// and postgresql+psycopg:// alike (psycopg 3)."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if url.startswith("postgresql+psycopg://"):
        return url
    raise ConfigError(f"DATABASE_URL must be a postgresql:// URL, got {url.split(':', 1)[0]}://")


def parse_listen_address(name: str, raw: str) -> tuple[str, int] | None:
    """`host:port` (or `:port`, all interfaces) -> (host, port); empty -> None."""
    if not raw:
        return None
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name} must be host:port, got {raw!r}")
    return host or "0.0.0.0", int(port)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as written by the dev supervisor."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number of seconds, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _currencies(raw: str) -> tuple[str, ...]:
    """SUPPORTED_CURRENCIES: ISO 4217 codes, comma-separated, the first the default.

    Amounts are stored as NUMERIC(14, 2), so a currency with three decimals (BHD,
    KWD, ...) is refused here rather than rounded in the database.
    """
    codes = tuple(dict.fromkeys(c.strip().upper() for c in raw.split(",") if c.strip()))
    if not codes:
        raise ConfigError("SUPPORTED_CURRENCIES must name at least one currency")
    for code in codes:
        if not is_iso_currency(code):
            raise ConfigError(f"SUPPORTED_CURRENCIES: {code!r} is not an ISO 4217 currency")
        if minor_units(code) > STORED_DECIMALS:
            raise ConfigError(
                f"SUPPORTED_CURRENCIES: {code} has {minor_units(code)} decimal places; "
                f"amounts are stored with at most {STORED_DECIMALS}")
    return codes


LOGO_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".webp", ".gif")


def _logo_file(raw: str | None) -> Path | None:
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"SHOP_LOGO_FILE: no such file: {raw}")
    if path.suffix.lower() not in LOGO_SUFFIXES:
        raise ConfigError(f"SHOP_LOGO_FILE must be an image ({', '.join(LOGO_SUFFIXES)}), "
                          f"got {path.name}")
    return path


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


@dataclass(frozen=True)
class WechatPaySettings:
    """WeChat Pay API v3 (DESIGN.md §6b), as given; its connector loads and checks the
    keys when it is routed (adapters/providers/wechatpay), naming any variable missing."""

    mchid: str | None = None
    appid: str | None = None
    apiv3_key: str | None = None
    merchant_private_key_file: str | None = None
    merchant_serial_no: str | None = None
    public_key_file: str | None = None
    public_key_id: str | None = None
    platform_certs_dir: str | None = None
    base_url: str = "https://api.mch.weixin.qq.com"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WechatPaySettings:
        return cls(
            mchid=_optional(env, "WECHATPAY_MCHID"),
            appid=_optional(env, "WECHATPAY_APPID"),
            apiv3_key=_optional(env, "WECHATPAY_APIV3_KEY"),
            merchant_private_key_file=_optional(env, "WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"),
            merchant_serial_no=_optional(env, "WECHATPAY_MERCHANT_SERIAL_NO"),
            public_key_file=_optional(env, "WECHATPAY_PUBLIC_KEY_FILE"),
            public_key_id=_optional(env, "WECHATPAY_PUBLIC_KEY_ID"),
            platform_certs_dir=_optional(env, "WECHATPAY_PLATFORM_CERTS_DIR"),
            base_url=(_optional(env, "WECHATPAY_BASE_URL")
                      or cls.base_url).rstrip("/"),
        )


@dataclass(frozen=True)
class AlipaySettings:
    """Alipay open platform (DESIGN.md §6b), as given; checked by its connector."""

    app_id: str | None = None
    app_private_key_file: str | None = None
    alipay_public_key_file: str | None = None
    gateway_url: str = "https://openapi.alipay.com/gateway.do"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlipaySettings:
        return cls(
            app_id=_optional(env, "ALIPAY_APP_ID"),
            app_private_key_file=_optional(env, "ALIPAY_APP_PRIVATE_KEY_FILE"),
            alipay_public_key_file=_optional(env, "ALIPAY_PUBLIC_KEY_FILE"),
            gateway_url=_optional(env, "ALIPAY_GATEWAY_URL") or cls.gateway_url,
        )


@dataclass(frozen=True)
class WebhookSettings:
    """Merchant webhooks (DESIGN.md §9): the retry schedule (seconds after each failed
    attempt; then the delivery is failed) and whether private networks may be targets."""

    retry_schedule_seconds: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    allow_private_networks: bool = False
    # An endpoint whose every delivery failed for this long is disabled.
    disable_after_seconds: int = DISABLE_AFTER_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookSettings:
        raw = (env.get("WEBHOOK_RETRY_SCHEDULE_SECONDS") or "").strip()
        try:
            schedule = parse_schedule(raw) if raw else cls.retry_schedule_seconds
        except ValueError as exc:
            raise ConfigError(f"WEBHOOK_RETRY_SCHEDULE_SECONDS {exc}") from None
        allow = (env.get("WEBHOOK_ALLOW_PRIVATE_NETWORKS") or "").strip().lower()
        if allow not in ("", "0", "1", "true", "false"):
            raise ConfigError(f"WEBHOOK_ALLOW_PRIVATE_NETWORKS must be 0 or 1, got {allow!r}")
        return cls(retry_schedule_seconds=schedule,
                   allow_private_networks=allow in ("1", "true"),
                   disable_after_seconds=_int(env, "WEBHOOK_DISABLE_AFTER_SECONDS",
                                              cls.disable_after_seconds))


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    broker_url: str
    environment: str = DEFAULT_ENVIRONMENT
    payment_ttl_seconds: int = 1800
    order_ttl_seconds: int = 86400
    sweep_interval_seconds: int = 60
    callback_tolerance_seconds: int = 300
    # A refund still without an outcome this long after it was requested is flagged for
    # review and no longer asked of its provider (services/refunds.check_refund). A week:
    # WeChat Pay takes up to 3 working days to refund to a bank card, and a week covers
    # weekends and public holidays, so a slow provider is never mistaken for a lost refund.
    refund_review_after_seconds: int = 7 * 86400
    secrets: Secrets = Secrets()
    public_base_url: str = "http://127.0.0.1:8000"
    # method=provider pairs; empty means the sandbox serves every method.
    payment_providers: str = ""
    # host:port where a worker serves its own /metrics (workers/metrics_endpoint.py); off
    # when unset, as under `make up`, where the web's /metrics already shows the worker's.
    worker_metrics_address: tuple[str, int] | None = None
    # Prepended to every out_trade_no / out_refund_no (domain/references.py).
    out_trade_no_prefix: str = ""
    wechatpay: WechatPaySettings = WechatPaySettings()
    alipay: AlipaySettings = AlipaySettings()
    # Bad-signature callbacks one client address may send before it gets 429s.
    callback_auth_failure_limit: str = "30 per minute"
    # How many proxies in front of us set X-Forwarded-For (0: the peer is the client).
    trusted_proxies: int = 0
    webhooks: WebhookSettings = WebhookSettings()
    # The provider doubles' retry schedules are multiplied by this (tests: 0.01).
    standin_retry_scale: float = 1.0
    run_dir: Path = PROJECT_ROOT / ".run"
    # ISO 4217 codes orders may be in; the first is the default.
    supported_currencies: tuple[str, ...] = ("CNY",)
    # What the cashier page shows its customers: the shop's name and, optionally, its logo
    # (a local image file, served by us: the page fetches nothing from elsewhere).
    shop_name: str = "Demo shop"
    shop_logo_file: Path | None = None
    # The daily reconciliation (issue #17): beat sends it at this time of day ("HH:MM")
    # in this zone, which is also where our books' days are cut, as the providers cut
    # theirs (WeChat Pay and Alipay: Beijing time; their bills are ready by 10:00).
    reconcile_at: tuple[int, int] = (10, 0)
    reconcile_tz: str = "Asia/Shanghai"

    @property
    def is_dev(self) -> bool:
        return self.environment in DEV_ENVIRONMENTS

    # The secrets by name, as the code that uses each one asks for it.
    @property
    def sandbox_webhook_secret(self) -> str:
        return self.secrets.sandbox_webhook_secret

    @property
    def sandbox_api_key(self) -> str:
        return self.secrets.sandbox_api_key

    @property
    def checkout_token_secret(self) -> str:
        return self.secrets.checkout_token_secret

    @property
    def flower_basic_auth(self) -> str:
        return self.secrets.flower_basic_auth

    @property
    def metrics_bearer_token(self) -> str | None:
        return self.secrets.metrics_bearer_token

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        run_dir = Path(env.get("RUN_DIR") or PROJECT_ROOT / ".run")
        if not env.get("DATABASE_URL") or not env.get("REDIS_URL"):
            for key, value in read_env_file(run_dir / "stack.env").items():
                env.setdefault(key, value)
                if not env[key]:
                    env[key] = value
        database_url = env.get("DATABASE_URL")
        redis_url = env.get("REDIS_URL")
        if not database_url:
            raise ConfigError("DATABASE_URL is not set (and no .run/stack.env from `make up`)")
        if not redis_url:
            raise ConfigError("REDIS_URL is not set (and no .run/stack.env from `make up`)")
        environment = (env.get("APP_ENV") or DEFAULT_ENVIRONMENT).strip()
        try:
            secrets = read_secrets(env, strict=environment not in DEV_ENVIRONMENTS)
        except SecretError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            database_url=normalize_database_url(database_url),
            redis_url=redis_url,
            broker_url=env.get("BROKER_URL") or redis_url,
            environment=environment,
            payment_ttl_seconds=_int(env, "PAYMENT_TTL_SECONDS", 1800),
            order_ttl_seconds=_int(env, "ORDER_TTL_SECONDS", 86400),
            sweep_interval_seconds=_int(env, "SWEEP_INTERVAL_SECONDS", 60),
            callback_tolerance_seconds=_int(env, "CALLBACK_TOLERANCE_SECONDS", 300),
            refund_review_after_seconds=_int(env, "REFUND_REVIEW_AFTER_SECONDS", 7 * 86400),
            secrets=secrets,
            public_base_url=(env.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
            payment_providers=env.get("PAYMENT_PROVIDERS", ""),
            worker_metrics_address=parse_listen_address(
                "WORKER_METRICS_ADDRESS", env.get("WORKER_METRICS_ADDRESS", "")),
            out_trade_no_prefix=_out_trade_no_prefix(env),
            wechatpay=WechatPaySettings.from_env(env),
            alipay=AlipaySettings.from_env(env),
            webhooks=WebhookSettings.from_env(env),
            standin_retry_scale=_scale(env, "STANDIN_RETRY_SCALE"),
            callback_auth_failure_limit=_rate(env, "CALLBACK_AUTH_FAILURE_LIMIT",
                                              "30 per minute"),
            trusted_proxies=_count(env, "TRUSTED_PROXIES"),
            run_dir=run_dir,
            supported_currencies=_currencies(env.get("SUPPORTED_CURRENCIES") or "CNY"),
            shop_name=(env.get("SHOP_NAME") or "Demo shop").strip()[:80],
            shop_logo_file=_logo_file(env.get("SHOP_LOGO_FILE")),
            reconcile_at=_time_of_day(env, "RECONCILE_AT", "10:00"),
            reconcile_tz=_time_zone(env, "RECONCILE_TZ", "Asia/Shanghai"),
        )


def _time_of_day(env: Mapping[str, str], name: str, default: str) -> tuple[int, int]:
    raw = (env.get(name) or "").strip() or default
    hours, sep, minutes = raw.partition(":")
    if (not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2
            or not 0 <= int(hours) < 24 or not 0 <= int(minutes) < 60):
        raise ConfigError(f"{name} must be a time of day HH:MM, got {raw!r}")
    return int(hours), int(minutes)


def _time_zone(env: Mapping[str, str], name: str, default: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    raw = (env.get(name) or "").strip() or default
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name} must be an IANA time zone such as Asia/Shanghai, "
                          f"got {raw!r}") from None
    return raw


def _out_trade_no_prefix(env: Mapping[str, str]) -> str:
    from domain.references import PREFIX_PATTERN

    prefix = (env.get("OUT_TRADE_NO_PREFIX") or "").strip()
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise ConfigError("OUT_TRADE_NO_PREFIX must be at most 12 of A-Z, a-z, 0-9 and _, "
                          f"got {prefix!r}")
    return prefix


def _scale(env: Mapping[str, str], name: str) -> float:
    raw = (env.get(name) or "").strip()
    try:
        value = float(raw) if raw else 1.0
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not 0 < value <= 1000:
        raise ConfigError(f"{name} must be above 0 and at most 1000, got {raw!r}")
    return value


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    from limits import parse_many

    value = (env.get(name) or "").strip() or default
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name} must be a rate such as '30 per minute', got {value!r}"
                          ) from None
    return value


def _count(env: Mapping[str, str], name: str) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return 0
    if not raw.isdigit() or int(raw) > 10:
        raise ConfigError(f"{name} must be a whole number from 0 to 10, got {raw!r}")
    return int(raw)
