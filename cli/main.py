"""The `payments` console script (DESIGN.md §3)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from config import ConfigError, Settings
from domain.errors import DomainError

SWEEPS = ("expire-payments", "expire-orders", "redeliver", "sync", "resend-refunds",
          "resend-payment-starts", "check-refunds", "purge-idempotency-keys")


def _resources() -> Any:
    from adapters.resources import Resources  # noqa: PLC0415 - keep `--help` fast

    return Resources(Settings.from_env())


def cmd_up(args: argparse.Namespace) -> int:
    from devstack.up import run  # noqa: PLC0415

    return run()


def cmd_keys_create(args: argparse.Namespace) -> int:
    from services.api_keys import create_api_key  # noqa: PLC0415

    res = _resources()
    try:
        key = create_api_key(res.uow(), args.role, user_id=args.user_id, name=args.name)
    finally:
        res.close()
    who = "admin" if args.role == "admin" else f"user {args.user_id}"
    print(f"created {args.role} key for {who}; it is shown once, store it now:")
    print(key)
    return 0


KEY_COLUMNS = ("id", "name", "role", "user_id", "prefix", "created_at", "last_used_at",
               "revoked_at")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value)


def cmd_keys_list(args: argparse.Namespace) -> int:
    """Every key (never its secret: only the hash is stored, and not shown either)."""
    from services.api_keys import list_api_keys  # noqa: PLC0415

    res = _resources()
    try:
        keys = list_api_keys(res.uow(), include_revoked=not args.active)
    finally:
        res.close()
    if args.json:
        print(json.dumps(keys, default=str))
        return 0
    rows = [KEY_COLUMNS, *([_cell(k[c]) for c in KEY_COLUMNS] for k in keys)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(KEY_COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from services.api_keys import revoke_api_key  # noqa: PLC0415

    res = _resources()
    try:
        key, now = revoke_api_key(res.uow(), args.key_id, actor="cli")
    finally:
        res.close()
    when = _cell(key["revoked_at"])
    print(f"key {key['id']} ({key['prefix']}...) " +
          (f"revoked at {when}; it is refused from now on" if now
           else f"was already revoked at {when}"))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from adapters.migrate import upgrade_to_head  # noqa: PLC0415

    upgrade_to_head(Settings.from_env().database_url)
    print("database is at the latest migration")
    return 0


def _sweep_function(job: str) -> Callable[..., Any]:
    from services import maintenance  # noqa: PLC0415

    return {
        "expire-payments": maintenance.expire_stale_payments,
        "expire-orders": maintenance.expire_stale_orders,
        "redeliver": maintenance.redeliver_stuck_callbacks,
        "sync": maintenance.sync_processing_payments,
        "resend-refunds": maintenance.resend_lost_refunds,
        "resend-payment-starts": maintenance.resend_lost_payment_starts,
        "check-refunds": maintenance.check_processing_refunds,
        "purge-idempotency-keys": maintenance.purge_idempotency_keys,
    }[job]


def cmd_sweep(args: argparse.Namespace) -> int:
    res = _resources()
    started = time.monotonic()
    try:
        result = _sweep_function(args.job)(res)
    finally:
        res.close()
    elapsed = time.monotonic() - started
    print(json.dumps({"job": args.job, "result": result, "seconds": round(elapsed, 3)},
                     default=str))
    return 0


def cmd_callbacks_replay(args: argparse.Namespace) -> int:
    from services.callbacks import replay_callback  # noqa: PLC0415

    res = _resources()
    try:
        outcome = replay_callback(res, args.callback_id, actor="cli")
    finally:
        res.close()
    print(json.dumps(outcome, default=str))
    return 0


def cmd_wallets_verify(args: argparse.Namespace) -> int:
    """Exit 1, naming each wallet, when any balance differs from its ledger."""
    from services.wallet.verification import verify_wallets  # noqa: PLC0415

    res = _resources()
    try:
        result = verify_wallets(res)
    finally:
        res.close()
    for difference in result.differences:
        print(difference.describe())
    print(f"{result.wallets} wallets checked, {len(result.differences)} differ from "
          "their ledger")
    return 0 if result.ok else 1


def cmd_webhooks_test(args: argparse.Namespace) -> int:
    """A signed `ping` to URL, with the secrets of the endpoint registered at that URL (or
    --secret); exits 0 when the receiver answered 2xx."""
    from services.webhooks.ping import send_ping  # noqa: PLC0415

    res = _resources()
    try:
        outcome = send_ping(res, args.url, secret=args.secret)
    finally:
        res.close()
    print(json.dumps(outcome))
    return 0 if outcome["delivered"] else 1


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Reconcile a day (default: yesterday in RECONCILE_TZ) now, for every routed provider
    or one; one JSON line per provider; exits 1 when any run failed."""
    from services.reconciliation.run import reconcile, routed_providers  # noqa: PLC0415

    res = _resources()
    try:
        if args.provider is not None and args.provider not in routed_providers(res):
            print(f"error: {args.provider!r} is not a routed provider here (routed: "
                  f"{', '.join(routed_providers(res))})", file=sys.stderr)
            return 2
        done, failed = reconcile(res, day=args.date,
                                 providers=[args.provider] if args.provider else None)
    finally:
        res.close()
    for summary in done:
        print(json.dumps(summary, default=str))
    for failure in failed:
        print(json.dumps({"provider": failure.provider, "date": failure.day.isoformat(),
                          "status": "failed", "error": failure.reason}))
    return 1 if failed else 0


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("up", help="run the whole stack in the foreground").set_defaults(func=cmd_up)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_cmd", required=True)
    create = keys.add_parser("create", help="create a key; prints it alone on the last line")
    create.add_argument("--role", choices=("admin", "user"), required=True)
    create.add_argument("--user-id", type=int, default=None)
    create.add_argument("--name", default=None)
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", help="every key: id, name, role, prefix, created, last "
                              "used (to within 5 minutes), revoked; never the key itself")
    listing.add_argument("--active", action="store_true", help="leave out revoked keys")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by id; refused from its next request")
    revoke.add_argument("key_id", type=int)
    revoke.set_defaults(func=cmd_keys_revoke)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_cmd", required=True)
    db.add_parser("upgrade", help="migrate to the latest schema").set_defaults(
        func=cmd_db_upgrade)

    sweep = sub.add_parser("sweep", help="run a maintenance job now")
    sweep.add_argument("job", choices=SWEEPS)
    sweep.set_defaults(func=cmd_sweep)

    callbacks = sub.add_parser("callbacks", help="provider callbacks").add_subparsers(
        dest="callbacks_cmd", required=True)
    replay = callbacks.add_parser("replay", help="process a stored callback again")
    replay.add_argument("callback_id", type=int)
    replay.set_defaults(func=cmd_callbacks_replay)

    wallets = sub.add_parser("wallets", help="wallets").add_subparsers(
        dest="wallets_cmd", required=True)
    wallets.add_parser("verify", help="check every wallet's balance against its ledger; "
                       "exits 1 naming any that differ").set_defaults(func=cmd_wallets_verify)

    webhooks = sub.add_parser("webhooks", help="merchant webhooks").add_subparsers(
        dest="webhooks_cmd", required=True)
    test = webhooks.add_parser("test", help="send a signed ping event to a receiver")
    test.add_argument("url")
    test.add_argument("--secret", default=None,
                      help="sign with this secret (default: the endpoint's at this URL)")
    test.set_defaults(func=cmd_webhooks_test)

    reconcile = sub.add_parser("reconcile", help="compare a day's provider statements with "
                               "our books now; exits 1 when a run failed")
    reconcile.add_argument("--date", type=_date, default=None,
                           help="YYYY-MM-DD (default: yesterday in RECONCILE_TZ)")
    reconcile.add_argument("--provider", default=None, help="only this routed provider")
    reconcile.set_defaults(func=cmd_reconcile)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, DomainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
