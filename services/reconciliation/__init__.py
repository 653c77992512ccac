"""The daily reconciliation against the providers' statements (issue #17).

books (our side of a provider's day), apply (a statement's success through the
callbacks' settlement), results (the run and its items, events and metrics), run (the
use case: fetch, compare, apply, store), views (the admin API's listings).
"""
