"""A local double of Alipay's open platform (DESIGN.md §6b): the gateway (gateway.py)
with precreate, query, close, refund and refund query (trades.py), the page a QR code
leads to (pages.py), signed notifications on Alipay's retry schedule (notify.py), its
RSA2 side (crypto.py), keys made under RUN_DIR/doubles/alipay (keys.py), and a few
test-only views (testing.py)."""
