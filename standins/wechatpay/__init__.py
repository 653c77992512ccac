"""A local double of WeChat Pay API v3 (DESIGN.md §6b): Native orders, query, close,
refunds, a pay page, and signed, encrypted notifications on WeChat Pay's retry schedule.

keys (made once under RUN_DIR/doubles/wechatpay), protocol (its side of the signatures
and encryption), orders and refunds (its state), notify (its notifications), api and
pages (HTTP), web (the blueprint).
"""
