"""Proof that every wallet agrees with its ledger (`payments wallets verify`).

For each wallet: its balance equals the sum of its entries; the entries, in the
order they were written (ids grow under the wallet's row lock), chain — each
balance_after is the one before plus its amount; and the last balance_after is the
balance. One statement, so one snapshot: concurrent payments cannot make it lie.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text

from adapters.resources import Resources

_DIFFERING = text("""
WITH chained AS (
    SELECT user_id, amount, balance_after,
           sum(amount) OVER (PARTITION BY user_id ORDER BY id) AS running,
           row_number() OVER (PARTITION BY user_id ORDER BY id DESC) AS newest
    FROM wallet_entries
), per_wallet AS (
    SELECT user_id, sum(amount) AS total, count(*) AS entries,
           count(*) FILTER (WHERE running <> balance_after) AS broken_links,
           max(balance_after) FILTER (WHERE newest = 1) AS last_after
    FROM chained GROUP BY user_id
)
SELECT w.user_id, w.balance, coalesce(p.total, 0) AS ledger_total,
       coalesce(p.entries, 0) AS entries, coalesce(p.broken_links, 0) AS broken_links,
       coalesce(p.last_after, 0) AS last_after
FROM wallets w LEFT JOIN per_wallet p USING (user_id)
WHERE w.balance <> coalesce(p.total, 0) OR coalesce(p.broken_links, 0) > 0
   OR w.balance <> coalesce(p.last_after, 0)
ORDER BY w.user_id
""")
_COUNT = text("SELECT count(*) FROM wallets")


@dataclass(frozen=True)
class WalletDifference:
    user_id: int
    balance: Decimal
    ledger_total: Decimal
    entries: int
    broken_links: int

    def describe(self) -> str:
        return (f"wallet {self.user_id}: balance {self.balance}, ledger sums to "
                f"{self.ledger_total} over {self.entries} entries"
                + (f", {self.broken_links} entries whose balance_after does not follow"
                   if self.broken_links else ""))


@dataclass(frozen=True)
class Verification:
    wallets: int
    differences: list[WalletDifference]

    @property
    def ok(self) -> bool:
        return not self.differences


def verify_wallets(res: Resources) -> Verification:
    with res.uow() as uow:
        session = uow.session
        # REPEATABLE READ: the count and the check see the same snapshot.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        wallets = session.execute(_COUNT).scalar_one()
        rows = session.execute(_DIFFERING).all()
    return Verification(wallets, [
        WalletDifference(r.user_id, Decimal(r.balance), Decimal(r.ledger_total), r.entries,
                         r.broken_links) for r in rows])
