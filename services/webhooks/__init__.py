"""Merchant webhooks and the events feed (DESIGN.md §9), one module per job:

- outbox.py: events (and their deliveries and notifications) written in the
  transaction of the change they tell of;
- views.py: the API view of a payment, order or refund, built in SQL for that;
- feed.py: GET /events, manual redelivery;
- endpoints.py: the admin's endpoints and their secrets;
- delivery.py: one attempt at a delivery, its record, the retry schedule, the sweep.
"""
