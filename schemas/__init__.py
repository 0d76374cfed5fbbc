"""Contracts only: HTTP bodies, event payloads, routing keys and SQL migrations. No I/O."""
