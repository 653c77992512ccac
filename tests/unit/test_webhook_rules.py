"""The rules of merchant webhooks (domain/webhooks.py, domain/webhook_signature.py)."""

from __future__ import annotations

import pytest

from config import ConfigError, Settings
from domain.errors import InvalidInput
from domain.statuses import OrderStatus, PaymentStatus
from domain.webhook_signature import sign, verify
from domain.webhooks import (
    DEFAULT_RETRY_SCHEDULE,
    EventType,
    check_events,
    check_url,
    order_event,
    parse_event_id,
    payment_event,
    refused_address,
    refused_addresses,
    retry_delay,
)

ENV = {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://localhost", "APP_ENV": "dev"}


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"), ("10.0.0.1", "private"), ("172.16.5.4", "private"),
    ("192.168.1.1", "private"), ("fd12::1", "private"), ("169.254.169.254", "metadata"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("100.100.100.200", "metadata"), ("fd00:ec2::254", "metadata"),
    ("100.64.0.1", "shared"), ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"),
])
def test_private_loopback_link_local_and_metadata_addresses_are_refused(address, why):
    reason = refused_address(address)
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "203.0.114.1", "2606:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert refused_address(address) is None


def test_a_name_is_refused_when_any_of_its_addresses_is():
    assert refused_addresses("shop.example", ["8.8.8.8", "10.1.2.3"]) == (
        "shop.example resolves to 10.1.2.3 is a private address")
    assert refused_addresses("shop.example", ["8.8.8.8"]) is None
    assert "does not resolve" in refused_addresses("nowhere.example", [])


@pytest.mark.parametrize("url", ["ftp://shop.example/hook", "file:///etc/passwd", "shop/hook",
                                 "", None, 42, "http://", "http://user:pw@shop.example/",
                                 "http://shop.example:99999/", "http://a b.example/",
                                 "https://shop.example/" + "x" * 3000])
def test_only_http_and_https_urls_with_a_host_are_accepted(url):
    with pytest.raises(InvalidInput) as raised:
        check_url(url)
    assert raised.value.code == "invalid_url"


def test_a_url_gives_the_host_and_port_to_vet():
    assert check_url("https://shop.example/hook") == ("shop.example", 443)
    assert check_url("http://10.0.0.1:8080/x?y=1") == ("10.0.0.1", 8080)


def test_event_names_are_known_ones_or_the_wildcard_alone():
    assert check_events(["*"]) == ["*"]
    assert check_events(["order.paid", "order.paid", "payment.failed"]) == [
        "order.paid", "payment.failed"]
    for bad, code in ([[], "invalid_events"], ["order.paid", "invalid_events"],
                      [["*", "order.paid"], "invalid_events"], [[1], "invalid_events"],
                      [["order.shipped"], "unknown_event"], [["ping"], "unknown_event"]):
        with pytest.raises(InvalidInput) as raised:
            check_events(bad)
        assert raised.value.code == code


def test_which_changes_are_events():
    assert payment_event(PaymentStatus.SUCCEEDED) is EventType.PAYMENT_SUCCEEDED
    assert payment_event(PaymentStatus.EXPIRED) is EventType.PAYMENT_EXPIRED
    assert payment_event(PaymentStatus.PROCESSING) is None
    assert payment_event(PaymentStatus.PARTIALLY_REFUNDED) is None  # refund.succeeded says it
    assert order_event(OrderStatus.PENDING, OrderStatus.PAID) is EventType.ORDER_PAID
    # a refund that failed puts the order back to paid: not a second order.paid
    assert order_event(OrderStatus.REFUNDING, OrderStatus.PAID) is None
    assert order_event(OrderStatus.REFUNDING, OrderStatus.REFUNDED) is EventType.ORDER_REFUNDED
    assert order_event(OrderStatus.PAID, OrderStatus.SHIPPED) is None


def test_the_retry_schedule_then_failed():
    assert retry_delay(DEFAULT_RETRY_SCHEDULE, 1) == 60
    assert retry_delay(DEFAULT_RETRY_SCHEDULE, 10) == 86400
    assert retry_delay(DEFAULT_RETRY_SCHEDULE, 11) is None
    # §9 says "about 3.7 days"; the listed numbers add up to 3.9: longer than the 3 days
    # after which an endpoint failing everything is disabled, either way.
    assert 3.5 < sum(DEFAULT_RETRY_SCHEDULE) / 86400 < 4
    assert retry_delay((5,), 1) == 5 and retry_delay((5,), 2) is None


def test_settings_read_the_schedule_and_the_private_network_switch():
    settings = Settings.from_env({**ENV, "WEBHOOK_RETRY_SCHEDULE_SECONDS": "1, 2,3",
                                  "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1"})
    assert settings.webhooks.retry_schedule_seconds == (1, 2, 3)
    assert settings.webhooks.allow_private_networks
    assert Settings.from_env(ENV).webhooks.retry_schedule_seconds == DEFAULT_RETRY_SCHEDULE
    for bad in ({"WEBHOOK_RETRY_SCHEDULE_SECONDS": "1,x"},
                {"WEBHOOK_RETRY_SCHEDULE_SECONDS": "0"},
                {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "yes please"}):
        with pytest.raises(ConfigError):
            Settings.from_env({**ENV, **bad})


def test_event_ids_parse_strictly():
    assert parse_event_id("evt_42") == 42
    for bad in ("42", "evt_", "evt_x", "evt_-1", "evt_0", "evt_99999999999999999999"):
        with pytest.raises(InvalidInput):
            parse_event_id(bad)


def test_a_signature_verifies_with_any_live_secret_and_not_when_tampered_or_stale():
    body = b'{"id":"evt_1"}'
    header = sign(["whsec_new", "whsec_old"], body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=") and header.count("v1=") == 2
    assert verify(header, body, "whsec_new", now=1_700_000_010)
    assert verify(header, body, "whsec_old", now=1_700_000_010)
    assert not verify(header, body, "whsec_other", now=1_700_000_010)
    assert not verify(header, body + b" ", "whsec_new", now=1_700_000_010)
    assert not verify(header, body, "whsec_new", now=1_700_000_000 + 301)
