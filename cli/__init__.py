"""The `registrar` command: the composition root of every process."""
