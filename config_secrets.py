"""The service's own secrets, one per purpose, and what production demands of them.

In dev and test each has a documented default, so `make up` and the tests need none.
Anywhere else (APP_ENV defaults to production) a secret that is missing, shorter than
MIN_SECRET_BYTES, or one of the values this project ships (the dev defaults, the
`change-me-...` placeholders of docker-compose.yml) stops the start with its variable's
name: a deployment that forgot one must not run with a guessable key.

| variable | what it protects |
|---|---|
| CHECKOUT_TOKEN_SECRET | the cashier-page links' tokens (whoever has it can mint links) |
| FLOWER_BASIC_AUTH | `user:password` for Flower (the password is the secret) |
| METRICS_BEARER_TOKEN | GET /metrics outside dev/test (optional: unset, /metrics refuses) |
| SANDBOX_WEBHOOK_SECRET, SANDBOX_API_KEY | the sandbox's callbacks, its merchant API (dev only) |

Each real provider's keys belong to its connector (adapters/providers/<name>/).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MIN_SECRET_BYTES = 32

DEV_CHECKOUT_TOKEN_SECRET = "dev-checkout-token-secret"
DEV_FLOWER_AUTH = "admin:admin"
DEV_WEBHOOK_SECRET = "dev-sandbox-secret"
DEV_SANDBOX_API_KEY = "dev-sandbox-api-key"

# Every value this project writes down anywhere (code, README, docker-compose.yml).
SHIPPED_VALUES = frozenset({
    DEV_CHECKOUT_TOKEN_SECRET, DEV_FLOWER_AUTH, DEV_WEBHOOK_SECRET, DEV_SANDBOX_API_KEY,
    "admin", "change-me", "change-me-sandbox-secret", "change-me-checkout-token-secret",
    "change-me-metrics-token", "change-me-flower-password",
})


class SecretError(ValueError):
    """A secret is missing or weak; the message names its variable."""


@dataclass(frozen=True)
class Secrets:
    checkout_token_secret: str = DEV_CHECKOUT_TOKEN_SECRET
    flower_basic_auth: str = DEV_FLOWER_AUTH
    metrics_bearer_token: str | None = None  # None outside dev/test: /metrics refuses
    sandbox_webhook_secret: str = DEV_WEBHOOK_SECRET
    sandbox_api_key: str = DEV_SANDBOX_API_KEY


def read_secrets(env: Mapping[str, str], *, strict: bool) -> Secrets:
    """Dev/test (strict False): defaults for what is unset. Strict: every secret the
    running service uses must be set and strong; the sandbox's are not used there."""
    if not strict:
        return Secrets(
            checkout_token_secret=_value(env, "CHECKOUT_TOKEN_SECRET")
            or DEV_CHECKOUT_TOKEN_SECRET,
            flower_basic_auth=_value(env, "FLOWER_BASIC_AUTH") or DEV_FLOWER_AUTH,
            metrics_bearer_token=_value(env, "METRICS_BEARER_TOKEN"),
            sandbox_webhook_secret=_value(env, "SANDBOX_WEBHOOK_SECRET") or DEV_WEBHOOK_SECRET,
            sandbox_api_key=_value(env, "SANDBOX_API_KEY") or DEV_SANDBOX_API_KEY)
    flower = _required(env, "FLOWER_BASIC_AUTH")
    user, sep, password = flower.partition(":")
    if not sep or not user:
        raise SecretError("FLOWER_BASIC_AUTH must be user:password")
    _check_strength("FLOWER_BASIC_AUTH (its password)", password)
    token = _value(env, "METRICS_BEARER_TOKEN")
    if token is not None:
        _check_strength("METRICS_BEARER_TOKEN", token)
    return Secrets(checkout_token_secret=_required(env, "CHECKOUT_TOKEN_SECRET"),
                   flower_basic_auth=flower, metrics_bearer_token=token)


def _value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "")
    return value if value.strip() else None


def _required(env: Mapping[str, str], name: str) -> str:
    value = _value(env, name)
    if value is None:
        raise SecretError(f"{name} is required outside dev and test (APP_ENV)")
    if name != "FLOWER_BASIC_AUTH":
        _check_strength(name, value)
    return value


def _check_strength(name: str, value: str) -> None:
    if value in SHIPPED_VALUES or value.lower().startswith("change-me"):
        raise SecretError(f"{name} is a documented default; set a secret of your own")
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise SecretError(f"{name} must be at least {MIN_SECRET_BYTES} bytes "
                          f"(got {len(value.encode())})")
