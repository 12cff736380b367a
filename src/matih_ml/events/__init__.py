"""Lifecycle events: the catalog, the outbox, the dispatcher and its sinks.

See docs/events.md.
"""
