"""The audit, from outside: what each accepted request left behind, and the verdict.

Three witnesses per accepted item, none of them the service's own say-so:

* row — registrations: rows in `users` with the address (same tenant, any letter case);
  invitations: rows in `invitations` with the address (any status).
* event — distinct CloudEvents ids on the harness's audit queue: `user.registered`
  (registrations) or `invitation.sent` (invitations) whose `data.email` is the address.
* email — messages the SMTP sink received for the address.

Verdicts, counted per item; one item may fall under several:

* lost — accepted, and at least one witness shows none.
* duplicated — accepted, and at least one witness shows more than one.
* stuck — accepted, and the service's own tables still show it unfinished after the
  drain: its `registration_requests` row still 'pending', or an `emails` row for the
  address still 'pending' or 'sending' (neither sent nor given up). A stuck item is
  usually lost as well; stuck says the work is hanging rather than dropped or failed.
* registered / events / emails — accepted items whose row / event / email is present.

With a webhook endpoint (webhook_receiver_outage), a fourth witness: webhook — requests
the webhook receiver verified with `standardwebhooks` for the item's event (same type,
same address). Missing counts as lost, more than one as duplicated, and a delivery row
still 'pending' as stuck.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import asyncpg

from schemas.events import EVENTS
from tests.faults.broker import EventLog
from tests.faults.receiver import Receiver
from tests.faults.sink import Sink
from tests.faults.traffic import Item

EVENT_OF = {"register": "user.registered", "invite": "invitation.sent"}
CLOUDEVENT_TYPE_OF = {kind: EVENTS[key][0] for kind, key in EVENT_OF.items()}
ROW_TABLE = {"register": "users", "invite": "invitations"}
UNFINISHED_EMAIL = ("pending", "sending")


@dataclass(frozen=True)
class Witnesses:
    """What one accepted item left behind."""

    rows: int
    events: int
    emails: int
    request_status: str | None = None  # registrations: status of the request row
    email_statuses: tuple[str, ...] = ()  # the `emails` rows for the address
    webhooks: int | None = None  # verified webhook requests; None: no endpoint audited
    webhook_statuses: tuple[str, ...] = ()  # the `webhook_deliveries` rows of the event

    @property
    def lost(self) -> bool:
        return min(self.rows, self.events, self.emails) == 0 or self.webhooks == 0

    @property
    def duplicated(self) -> bool:
        return max(self.rows, self.events, self.emails, self.webhooks or 0) > 1

    @property
    def stuck(self) -> bool:
        return (
            self.request_status == "pending"
            or any(status in UNFINISHED_EMAIL for status in self.email_statuses)
            or "pending" in self.webhook_statuses
        )

    @property
    def settled(self) -> bool:
        """Nothing more to wait for: every witness present and nothing in progress."""
        return not self.lost and not self.stuck

    def describe(self) -> str:
        described = (
            f"rows={self.rows} events={self.events} emails={self.emails} "
            f"request={self.request_status} email_rows={list(self.email_statuses)}"
        )
        if self.webhooks is not None:
            described += f" webhooks={self.webhooks} deliveries={list(self.webhook_statuses)}"
        return described


@dataclass
class Result:
    """One scenario's verdict; `line()` is the contract's output line."""

    name: str
    items: list[Item]
    witnesses: dict[str, Witnesses]
    notes: list[str] = field(default_factory=list)
    # Processes that did not exit 0 on SIGTERM: no part of the verdict, but worth a look.
    process_failures: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> list[Item]:
        return [item for item in self.items if item.accepted]

    def _count(self, predicate) -> int:
        return sum(1 for item in self.accepted if predicate(self.witnesses[item.key]))

    def counts(self) -> dict[str, int]:
        return {
            "accepted": len(self.accepted),
            "registered": self._count(lambda w: w.rows > 0),
            "events": self._count(lambda w: w.events > 0),
            "emails": self._count(lambda w: w.emails > 0),
            "lost": self._count(lambda w: w.lost),
            "duplicated": self._count(lambda w: w.duplicated),
            "stuck": self._count(lambda w: w.stuck),
        }

    def line(self) -> str:
        values = " ".join(f"{name}={value}" for name, value in self.counts().items())
        return f"scenario={self.name} {values}"

    @property
    def harness_errors(self) -> list[Item]:
        return [item for item in self.items if item.harness_error]

    @property
    def ok(self) -> bool:
        """The verdict: nothing lost, duplicated or stuck, and the run proved something."""
        counts = self.counts()
        clean = counts["lost"] == counts["duplicated"] == counts["stuck"] == 0
        return clean and counts["accepted"] > 0 and not self.harness_errors

    def bad(self) -> list[tuple[Item, Witnesses]]:
        """Accepted items that are lost, duplicated or stuck, in arrival order."""
        found = [(item, self.witnesses[item.key]) for item in self.accepted]
        return [(item, w) for item, w in found if w.lost or w.duplicated or w.stuck]


async def _count_by_email(
    conn: asyncpg.Connection, table: str, tenant_id: uuid.UUID, emails: list[str]
) -> Counter[str]:
    rows = await conn.fetch(
        f"SELECT lower(email) AS email, count(*) AS n FROM {table}"
        " WHERE tenant_id = $1 AND lower(email) = ANY($2::text[]) GROUP BY 1",
        tenant_id,
        emails,
    )
    return Counter({row["email"]: row["n"] for row in rows})


async def _request_statuses(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, keys: list[str]
) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT idempotency_key, status FROM registration_requests"
        " WHERE tenant_id = $1 AND idempotency_key = ANY($2::text[])",
        tenant_id,
        keys,
    )
    return {row["idempotency_key"]: row["status"] for row in rows}


async def _statuses_by_email(
    conn: asyncpg.Connection, query: str, *args: object
) -> dict[str, tuple[str, ...]]:
    """(email, status) rows of `query`, grouped: every status per address, in order."""
    statuses: dict[str, list[str]] = defaultdict(list)
    for row in await conn.fetch(query, *args):
        statuses[row["email"]].append(row["status"])
    return {email: tuple(found) for email, found in statuses.items()}


async def _email_statuses(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, emails: list[str]
) -> dict[str, tuple[str, ...]]:
    return await _statuses_by_email(
        conn,
        "SELECT lower(recipient) AS email, status FROM emails"
        " WHERE tenant_id = $1 AND lower(recipient) = ANY($2::text[]) ORDER BY created_at",
        tenant_id,
        emails,
    )


async def _delivery_statuses(
    conn: asyncpg.Connection, endpoint_id: uuid.UUID, emails: list[str]
) -> dict[str, tuple[str, ...]]:
    """The endpoint's deliveries of events about each address (the statuses)."""
    return await _statuses_by_email(
        conn,
        "SELECT lower(o.body -> 'data' ->> 'email') AS email, d.status"
        " FROM webhook_deliveries d JOIN outbox o ON o.id = d.outbox_id"
        " WHERE d.endpoint_id = $1 AND lower(o.body -> 'data' ->> 'email') = ANY($2::text[])"
        " ORDER BY d.id",
        endpoint_id,
        emails,
    )


@dataclass(frozen=True)
class WebhookWitness:
    """The endpoint the webhook scenario registered, and its receiver."""

    endpoint_id: uuid.UUID
    receiver: Receiver


async def observe(
    database_url: str,
    tenant_id: str,
    items: list[Item],
    events: EventLog,
    sink: Sink,
    webhooks: WebhookWitness | None = None,
) -> dict[str, Witnesses]:
    """Witnesses for every accepted item, keyed by its Idempotency-Key.

    A fresh connection each time: the audit must work after db_restart, and an error
    (database still down) propagates to the caller, which retries.
    """
    accepted = [item for item in items if item.accepted]
    tenant = uuid.UUID(tenant_id)
    by_kind = {kind: [i.email for i in accepted if i.kind == kind] for kind in ROW_TABLE}
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = {
            kind: await _count_by_email(conn, table, tenant, by_kind[kind])
            for kind, table in ROW_TABLE.items()
        }
        keys = [i.key for i in accepted if i.kind == "register"]
        requests = await _request_statuses(conn, tenant, keys)
        email_rows = await _email_statuses(conn, tenant, [i.email for i in accepted])
        deliveries = (
            await _delivery_statuses(conn, webhooks.endpoint_id, [i.email for i in accepted])
            if webhooks is not None
            else {}
        )
    finally:
        await conn.close()
    mail = sink.counts()
    hooks = webhooks.receiver.counts() if webhooks is not None else None
    return {
        item.key: Witnesses(
            rows=rows[item.kind][item.email],
            events=len(events.ids(EVENT_OF[item.kind], item.email)),
            emails=mail[item.email],
            request_status=requests.get(item.key) if item.kind == "register" else None,
            email_statuses=email_rows.get(item.email, ()),
            webhooks=None if hooks is None else hooks[CLOUDEVENT_TYPE_OF[item.kind], item.email],
            webhook_statuses=deliveries.get(item.email, ()),
        )
        for item in accepted
    }
