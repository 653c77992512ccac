"""The wallet (DESIGN.md §10): balances, the ledger, balance payments, top-ups.

- ledger.py: the one way money moves (a locked wallet row and an entry), shared by all.
- accounts.py: reading a wallet and its ledger; admin credits.
- balance_payments.py: paying an order from the balance; refunding such a payment.
- topups.py: a top-up order credits the wallet when paid; its refund takes it back.
- verification.py: balance = sum of entries, for every wallet (`payments wallets verify`).

Every function that takes a Session runs in the caller's transaction, after the caller
has locked the order and the payment (when there are any): order, payment, wallet is
the one lock order, so no two writers wait on each other in a cycle.
"""
