"""Stand-ins for outside systems: what a real provider would be, run locally.

Nothing here ships to production as part of our service: these are the other side
of the wire, for `make up` and the tests. Each one is reached only over HTTP, like
the real thing, and keeps its own tables.

- sandbox: the built-in sandbox provider (DESIGN.md §6a), our own simple protocol.
- wechatpay, alipay: local doubles of WeChat Pay API v3 and Alipay (§6b), speaking
  their published protocols with keys of their own made under .run/doubles/.
- notifications: the doubles' signed notifications, sent with each provider's
  retry schedule.
"""
