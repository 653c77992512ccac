from __future__ import annotations

import pytest

from config import ConfigError, Settings, normalize_database_url

BASE = {"DATABASE_URL": "postgresql://u@h:5432/db", "REDIS_URL": "redis://h:6379/0"}


@pytest.mark.parametrize("url", ["postgres://u@h/db", "postgresql://u@h/db",
                                 "postgresql+psycopg://u@h/db"])
def test_postgres_urls_are_normalised_to_psycopg3(url):
    assert normalize_database_url(url) == "postgresql+psycopg://u@h/db"


def test_other_databases_are_refused():
    with pytest.raises(ConfigError, match="postgresql"):
        normalize_database_url("mysql://u@h/db")


DEV = {**BASE, "APP_ENV": "dev"}
STRONG = "s" * 32
PRODUCTION = {**BASE, "CHECKOUT_TOKEN_SECRET": "c" * 32,
              "FLOWER_BASIC_AUTH": "ops:" + "p" * 32}


def test_defaults_match_the_design(tmp_path):
    s = Settings.from_env({**DEV, "RUN_DIR": str(tmp_path)})
    assert (s.payment_ttl_seconds, s.order_ttl_seconds, s.sweep_interval_seconds,
            s.callback_tolerance_seconds) == (1800, 86400, 60, 300)
    assert s.refund_review_after_seconds == 7 * 86400  # README: a week
    assert Settings.from_env({**DEV, "RUN_DIR": str(tmp_path),
                              "REFUND_REVIEW_AFTER_SECONDS": "3600"}
                             ).refund_review_after_seconds == 3600
    assert s.broker_url == BASE["REDIS_URL"]
    assert s.sandbox_webhook_secret == "dev-sandbox-secret"
    assert s.public_base_url == "http://127.0.0.1:8000"


def test_an_unset_app_env_is_production_not_dev(tmp_path):
    # A deployment that forgets APP_ENV gets the strict behaviour: here, secrets required.
    with pytest.raises(ConfigError, match="FLOWER_BASIC_AUTH"):
        Settings.from_env({**BASE, "RUN_DIR": str(tmp_path)})
    s = Settings.from_env({**PRODUCTION, "RUN_DIR": str(tmp_path)})
    assert s.environment == "production" and not s.is_dev


@pytest.mark.parametrize("name", ["CHECKOUT_TOKEN_SECRET", "FLOWER_BASIC_AUTH"])
@pytest.mark.parametrize("value, problem", [
    ("", "is required"), ("short-secret", "at least 32 bytes"),
    ("dev-checkout-token-secret", "documented default"), ("admin:admin", "documented default"),
    ("change-me-sandbox-secret", "documented default"),
    ("change-me-" + "x" * 40, "documented default"),
])
def test_outside_dev_a_weak_or_default_secret_stops_the_start_naming_it(
        name, value, problem, tmp_path):
    env = {**PRODUCTION, "RUN_DIR": str(tmp_path)}
    env[name] = value if name != "FLOWER_BASIC_AUTH" or ":" in value or not value \
        else f"ops:{value}"
    with pytest.raises(ConfigError, match=name) as info:
        Settings.from_env(env)
    assert problem in str(info.value)


def test_metrics_token_is_optional_but_never_weak(tmp_path):
    env = {**PRODUCTION, "RUN_DIR": str(tmp_path)}
    assert Settings.from_env(env).metrics_bearer_token is None
    with pytest.raises(ConfigError, match="METRICS_BEARER_TOKEN"):
        Settings.from_env({**env, "METRICS_BEARER_TOKEN": "abc"})
    assert Settings.from_env({**env, "METRICS_BEARER_TOKEN": STRONG}).metrics_bearer_token \
        == STRONG


def test_one_secret_per_purpose(tmp_path):
    s = Settings.from_env({**DEV, "RUN_DIR": str(tmp_path)})
    values = [s.checkout_token_secret, s.sandbox_webhook_secret, s.sandbox_api_key,
              s.flower_basic_auth]
    assert len(set(values)) == len(values)
    rotated = Settings.from_env({**DEV, "RUN_DIR": str(tmp_path),
                                 "SANDBOX_WEBHOOK_SECRET": STRONG})
    assert rotated.checkout_token_secret == s.checkout_token_secret


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_bad_durations_are_refused_with_the_setting_named(value, tmp_path):
    with pytest.raises(ConfigError, match="PAYMENT_TTL_SECONDS"):
        Settings.from_env({**DEV, "PAYMENT_TTL_SECONDS": value, "RUN_DIR": str(tmp_path)})


def test_missing_urls_fall_back_to_the_dev_stack_file(tmp_path):
    (tmp_path / "stack.env").write_text(
        "DATABASE_URL=postgresql://postgres@127.0.0.1:55432/payments\n"
        "REDIS_URL=redis://127.0.0.1:56379/0\n")
    s = Settings.from_env({"RUN_DIR": str(tmp_path), "APP_ENV": "dev"})
    assert s.database_url == "postgresql+psycopg://postgres@127.0.0.1:55432/payments"
    assert s.redis_url == "redis://127.0.0.1:56379/0"


def test_the_stack_file_carries_a_rabbitmq_broker_to_the_cli(tmp_path):
    """`BROKER_URL=amqp://... make up`: a `payments` command in another terminal must
    publish where the workers consume, not to the locks' Redis."""
    from devstack.up import _write_stack_env

    _write_stack_env(tmp_path, {"DATABASE_URL": "postgresql://postgres@127.0.0.1:55432/p",
                                "REDIS_URL": "redis://127.0.0.1:56379/0",
                                "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/payments"})
    s = Settings.from_env({"RUN_DIR": str(tmp_path), "APP_ENV": "dev"})
    assert s.broker_url == "amqp://guest:guest@127.0.0.1:5672/payments"
    assert s.redis_url == "redis://127.0.0.1:56379/0"
    _write_stack_env(tmp_path, {"DATABASE_URL": "postgresql://postgres@127.0.0.1:55432/p",
                                "REDIS_URL": "redis://127.0.0.1:56379/0"})
    assert Settings.from_env({"RUN_DIR": str(tmp_path), "APP_ENV": "dev"}).broker_url == (
        "redis://127.0.0.1:56379/0")


def test_missing_urls_without_a_stack_file_are_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="DATABASE_URL is not set"):
        Settings.from_env({"RUN_DIR": str(tmp_path)})


def test_supported_currencies_default_to_cny_and_are_iso_4217(tmp_path):
    base = {**DEV, "RUN_DIR": str(tmp_path)}
    assert Settings.from_env(base).supported_currencies == ("CNY",)
    assert Settings.from_env({**base, "SUPPORTED_CURRENCIES": "cny, jpy,KRW"}
                             ).supported_currencies == ("CNY", "JPY", "KRW")
    with pytest.raises(ConfigError, match="not an ISO 4217"):
        Settings.from_env({**base, "SUPPORTED_CURRENCIES": "CNY,ABC"})


def test_three_decimal_currencies_are_refused_at_start(tmp_path):
    # Amounts are NUMERIC(14, 2): a fils of BHD could not be stored.
    with pytest.raises(ConfigError, match="BHD has 3 decimal places"):
        Settings.from_env({**DEV, "RUN_DIR": str(tmp_path), "SUPPORTED_CURRENCIES": "BHD"})


def test_the_shop_name_and_logo_file_are_read_and_checked(tmp_path):
    base = {**DEV, "RUN_DIR": str(tmp_path)}
    assert Settings.from_env(base).shop_name == "Demo shop"
    assert Settings.from_env(base).shop_logo_file is None
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n")
    s = Settings.from_env({**base, "SHOP_NAME": "Lotus Tea House", "SHOP_LOGO_FILE": str(logo)})
    assert (s.shop_name, s.shop_logo_file) == ("Lotus Tea House", logo.resolve())
    with pytest.raises(ConfigError, match="no such file"):
        Settings.from_env({**base, "SHOP_LOGO_FILE": str(tmp_path / "missing.png")})
    (tmp_path / "logo.txt").write_text("not an image")
    with pytest.raises(ConfigError, match="must be an image"):
        Settings.from_env({**base, "SHOP_LOGO_FILE": str(tmp_path / "logo.txt")})


def test_worker_metrics_address_is_off_unless_set_and_checked(tmp_path):
    env = {**DEV, "RUN_DIR": str(tmp_path)}
    assert Settings.from_env(env).worker_metrics_address is None
    assert Settings.from_env({**env, "WORKER_METRICS_ADDRESS": "127.0.0.1:9808"}
                             ).worker_metrics_address == ("127.0.0.1", 9808)
    assert Settings.from_env({**env, "WORKER_METRICS_ADDRESS": ":9808"}
                             ).worker_metrics_address == ("0.0.0.0", 9808)
    for bad in ("9808x", "host:", "host:70000"):
        with pytest.raises(ConfigError, match="WORKER_METRICS_ADDRESS"):
            Settings.from_env({**env, "WORKER_METRICS_ADDRESS": bad})


def test_the_reconciliation_time_and_zone(tmp_path):
    s = Settings.from_env({**DEV, "RUN_DIR": str(tmp_path)})
    assert (s.reconcile_at, s.reconcile_tz) == ((10, 0), "Asia/Shanghai")
    s = Settings.from_env({**DEV, "RUN_DIR": str(tmp_path), "RECONCILE_AT": "7:05",
                           "RECONCILE_TZ": "Europe/Berlin"})
    assert (s.reconcile_at, s.reconcile_tz) == ((7, 5), "Europe/Berlin")


@pytest.mark.parametrize(("name", "value"), [
    ("RECONCILE_AT", "25:00"), ("RECONCILE_AT", "10"), ("RECONCILE_AT", "10:5"),
    ("RECONCILE_TZ", "Mars/Olympus"), ("RECONCILE_TZ", "../etc"),
])
def test_a_bad_reconciliation_setting_stops_the_start_naming_it(name, value, tmp_path):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**DEV, "RUN_DIR": str(tmp_path), name: value})
