"""RFC 7240 `Prefer` header: how long the client is willing to wait for the outcome."""

from __future__ import annotations

from dataclasses import dataclass

MAX_WAIT_S = 60.0


@dataclass(frozen=True)
class Preference:
    respond_async: bool = False
    wait: float | None = None


def parse_prefer(values: list[str], *, max_wait: float = MAX_WAIT_S) -> Preference:
    """Read `respond-async` and `wait=N` from every Prefer header; ignore the rest."""
    respond_async = False
    wait: float | None = None
    for value in values:
        for token in value.split(","):
            name, _, arg = token.split(";")[0].strip().partition("=")
            name = name.strip().lower()
            if name == "respond-async":
                respond_async = True
            elif name == "wait":
                try:
                    seconds = float(arg.strip().strip('"'))
                except ValueError:
                    continue
                if seconds >= 0 and wait is None:  # RFC 7240 §2: the first one counts
                    wait = min(seconds, max_wait)
    return Preference(respond_async=respond_async, wait=wait)
