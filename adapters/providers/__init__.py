"""Payment providers behind one interface (base.Provider), chosen per method (registry).

A real provider gets its own module next to sandbox.py; services only ever see
base.Provider, its dataclasses and its two error types.
"""
