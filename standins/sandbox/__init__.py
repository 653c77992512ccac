"""The built-in sandbox payment provider (DESIGN.md §6a).

A pretend provider that lives inside our web app under /sandbox but is reached
only over HTTP, like a real one: a merchant API (create, status, close, refund),
a pay page with Approve and Decline, and signed callbacks delivered to
PUBLIC_BASE_URL/callbacks/sandbox with retries until a 2xx. It keeps its own
tables (sandbox_*) and never reads or writes ours.

Modules: models (tables), options (test knobs), events (callback bodies),
tickets (payments and refunds at the sandbox), delivery (sending callbacks),
routes (the blueprint).
"""
