"""The consumers: registration, mailer and the outbox relay."""
