"""The wallet's part of the OpenAPI document (DESIGN.md §10): its paths and schemas.

web/openapi.py merges them, handing over its operation builders so that these entries
read like the others (and take Idempotency-Key the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.wallet import WALLET_CURRENCY, EntryKind
from web.openapi_schemas import ID, TIMESTAMP, Schema, array, nullable, obj, ref, string

API = "/api/v1"
TAG = "wallets"
NOT_FOUND = ("No such user, or another user's wallet (`wallet_not_found`): existence "
             "does not leak")
USER_ID: Schema = {"name": "user_id", "in": "path", "required": True,
                   "description": "The wallet's user", "schema": ID}

WALLET_SCHEMAS: dict[str, Schema] = {
    "Wallet": obj(["user_id", "balance", "currency"], user_id=ID, balance=ref("Money"),
                  currency=string(enum=[WALLET_CURRENCY]),
                  updated_at=nullable(TIMESTAMP) | {
                      "description": "null for a wallet never used (balance 0)"}),
    "WalletEntry": obj(
        ["id", "amount", "balance_after", "kind"], id=ID, user_id=ID,
        amount=string("Signed, two decimals: negative when money left the wallet",
                      pattern=r"^-?\d+\.\d{2}$", examples=["-30.00"]),
        balance_after=ref("Money"), kind=string(enum=[k.value for k in EntryKind]),
        payment_id=nullable(ID), refund_id=nullable(ID), reason=nullable(string()),
        created_at=TIMESTAMP),
    "WalletLedgerPage": obj(["items", "page", "page_size", "total"],
                            items=array(ref("WalletEntry")),
                            page={"type": "integer", "minimum": 1},
                            page_size={"type": "integer", "minimum": 1, "maximum": 100},
                            total={"type": "integer", "minimum": 0}),
    "WalletCredit": obj(["amount", "reason"], amount=ref("AmountInput"),
                        reason=string(maxLength=500)),
}


def wallet_paths(*, operation: Callable[..., Schema], api_post: Callable[..., Schema],
                 ok: Callable[..., Schema]) -> dict[str, dict[str, Schema]]:
    page: Any = {"name": "page", "in": "query", "required": False, "description": "Page",
                 "schema": {"type": "integer", "minimum": 1, "default": 1}}
    page_size: Any = {"name": "page_size", "in": "query", "required": False,
                      "description": "Entries per page",
                      "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                 "default": 20}}
    return {
        f"{API}/wallets/{{user_id}}": {"get": operation(
            "getWallet", "A user's wallet balance", TAG, params=[USER_ID],
            ok={200: ok("The wallet (balance 0 when never used)", ref("Wallet"))},
            errors={404: NOT_FOUND})},
        f"{API}/wallets/{{user_id}}/ledger": {"get": operation(
            "getWalletLedger", "A wallet's ledger, newest first", TAG,
            params=[USER_ID, page, page_size],
            description="Append-only: every movement with the balance after it. The "
                        "balance always equals the sum of the entries.",
            ok={200: ok("One page of entries", ref("WalletLedgerPage"))},
            errors={400: "A malformed page (`invalid_field`)", 404: NOT_FOUND})},
        f"{API}/wallets/{{user_id}}/credits": {"post": api_post(
            "creditWallet", "Put money into a user's wallet", TAG, auth="admin",
            params=[USER_ID], body="WalletCredit", body_required=True,
            ok={201: ok("The ledger entry (kind credit)", ref("WalletEntry"))},
            errors={400: "`invalid_amount`, `invalid_field` (reason), `balance_limit`",
                    403: "Not an admin key (`admin_only`), or an admin key crediting its "
                         "own user (`self_credit_not_allowed`)",
                    404: "No such user (`wallet_not_found`)"})},
    }
