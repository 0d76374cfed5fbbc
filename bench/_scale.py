"""The pure parts of `make bench-scale` (bench/scale.py), kept apart so that they can be
unit-tested without a database (tests/unit/test_bench_scale.py):

* `seed_rows` — the rows a tenant of N existing users has in every table that grows with
  its users, shaped like the rows a real registration (and activation) leaves behind;
* `sql_from` — a statement as the service runs it, read from its source file, so that the
  EXPLAIN phase never checks a stale copy (`statement_sql`: or composed by the service);
* `literal`, `summarize`, `problems` — EXPLAIN EXECUTE arguments and reading the plans;
* `append_row` — adding a row to a Markdown table that keeps its earlier rows.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Tables whose rows grow with the users of a tenant: a sequential scan of one of them on
# a hot path is O(users).
# The tables the benchmark seeds: what a registration (and activation) leaves per user.
SEEDED = (
    "users",
    "user_roles",
    "registration_requests",
    "activation_tokens",
    "emails",
    "outbox",
    "processed_messages",
)
GROWING = frozenset({*SEEDED, "invitations", "invite_requests", "captcha_solutions"})
# A node that reads and throws away more rows than this is O(n) even on an index.
DISCARD_LIMIT = 1000

FIRST = (
    "anna", "ben", "chloe", "david", "emma", "felix", "grace", "hugo", "ida", "jonas",
    "karla", "leon", "mia", "nils", "olga", "paul", "quinn", "rosa", "sven", "tara",
    "ugo", "vera", "wim", "xenia", "yusuf", "zoe", "ivan", "lucia", "marko", "petra",
)  # fmt: skip
LAST = (
    "novak", "horvat", "schmidt", "garcia", "martin", "rossi", "kovac", "weber", "lopez",
    "dubois", "jansen", "nowak", "smith", "bauer", "moreau", "silva", "babic", "fischer",
    "perez", "bernard", "costa", "meyer", "blazevic", "roux", "santos", "klein", "vidal",
    "hansen", "petrovic", "wagner",
)  # fmt: skip
# Never example.com: the benchmark's own registrations use it, and must never collide.
DOMAINS = ("mail.test", "post.test", "inbox.test", "corp.test", "uni.test")
LOCALES = ("en", "en", "en", "de", "fr", "es", "hr")
ACTIVATION_URL = "https://app.example.com/activate?t={activationToken}"
ACTIVATED = 0.7  # share of seeded users who activated their account
WITH_IDEMPOTENCY_KEY = 0.3  # share of registrations sent with an Idempotency-Key
REJECTED_EVERY = 25  # one in this many users also had a rejected duplicate attempt
SPREAD = dt.timedelta(days=3 * 365)  # created_at spans this much, ending a day ago
TOKEN_TTL = dt.timedelta(hours=48)

COLUMNS: dict[str, tuple[str, ...]] = {
    "users": (
        "id", "tenant_id", "user_name", "email", "name", "password_hash", "locale",
        "is_approved", "is_locked_out", "dashboard_settings", "source", "created_at",
        "updated_at",
    ),
    "user_roles": ("user_id", "role_id"),
    "registration_requests": (
        "id", "tenant_id", "idempotency_key", "body_fingerprint", "status", "user_id",
        "reason", "created_at", "decided_at", "email", "user_name", "locale", "shadow_user_id",
    ),
    "activation_tokens": (
        "id", "user_id", "token_hash", "expires_at", "used_at", "used_by", "revoked_at",
        "created_at", "activation_url",
    ),
    "emails": (
        "id", "tenant_id", "kind", "recipient", "status", "attempts", "sent_at", "created_at",
        "locale", "params",
    ),
    "outbox": ("event_id", "routing_key", "body", "created_at", "published_at", "available_at"),
    "processed_messages": ("consumer", "message_id", "processed_at"),
}  # fmt: skip


@dataclass(frozen=True)
class SeedContext:
    """What every seeded row of one tenant shares."""

    tenant_id: uuid.UUID
    role_id: uuid.UUID
    password_hash: str  # one precomputed argon2id hash for everyone
    now: dt.datetime


def person(n: int) -> tuple[str, str]:
    """(userName, email) of seeded user `n`: unique for every n, case-insensitively."""
    first = FIRST[n % len(FIRST)]
    last = LAST[(n // len(FIRST)) % len(LAST)]
    return f"{first}.{last}{n}", f"{first}.{last}.{n}@{DOMAINS[n % len(DOMAINS)]}"


def _iso(moment: dt.datetime) -> str:
    """As the service writes CloudEvents times (UTC, microseconds, Z)."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


# CloudEvent bodies as the outbox keeps them (jsonb text), formatted from templates: the
# seeder writes millions of them. Every value put in is a UUID, an ISO time, a locale, or
# a seeded name or address (letters, digits, dots, @), so none needs JSON escaping.
_ENVELOPE = (
    '{{"id": "{id}", "data": {data}, "time": "{time}", "type": "registrar.{kind}.v1", '
    '"source": "urn:registrar",{subject} "specversion": "1.0", '
    '"datacontenttype": "application/json"}}'
)
_REGISTER = (
    '{{"email": "{email}", "locale": "{locale}", "tenantId": "{tenant}", '
    '"userName": "{user_name}", "requestId": "{request}", "activationUrl": "{url}"}}'
)
_REGISTERED = (
    '{{"name": "", "email": "{email}", "roles": ["User"], "locale": "{locale}", '
    '"source": "self", "userId": "{user}", "tenantId": "{tenant}", "userName": "{user_name}", '
    '"requestId": "{request}", "isApproved": false, "registeredAt": "{at}"}}'
)
_EMAIL_REQUESTED = '{{"emailId": "{email_id}", "tenantId": "{tenant}"}}'
_DELIVERED = (
    '{{"to": "{email}", "kind": "activation", "emailId": "{email_id}", "attempts": 1, '
    '"tenantId": "{tenant}"}}'
)
_ACTIVATED = '{{"userId": "{user}", "tenantId": "{tenant}", "activatedAt": "{at}"}}'
_PARAMS = (
    '{{"user_name": "{user_name}", "activation_url": "{url}", "activation_token_id": "{token}"}}'
)


def _event(event_id: object, kind: str, data: str, moment: dt.datetime, subject=None) -> str:
    return _ENVELOPE.format(
        id=event_id,
        data=data,
        time=_iso(moment),
        kind=kind,
        subject="" if subject is None else f' "subject": "{subject}",',
    )


def seed_rows(ctx: SeedContext, start: int, count: int, seed: int = 0) -> dict[str, list[tuple]]:
    """Rows of users start .. start+count-1 for every table in COLUMNS (column order).

    Per user, what a registration leaves: the user, its default role, the (decided)
    registration request, the activation token, the activation email (sent), four outbox
    rows (register.requested with the sealed password stripped, user.registered,
    email.requested, email.delivered; all published) and the registration consumer's
    processed message. Activated users (ACTIVATED) also have a used token, an approved
    user, user.activated and a second processed message; every REJECTED_EVERY-th user a
    rejected duplicate request (with its command and processed message).
    Deterministic for a given (start, seed).
    """
    rng = random.Random(seed * 1_000_003 + start)
    rows: dict[str, list[tuple]] = {table: [] for table in COLUMNS}
    users, user_roles = rows["users"], rows["user_roles"]
    requests, tokens = rows["registration_requests"], rows["activation_tokens"]
    emails = rows["emails"]
    outbox, processed = rows["outbox"], rows["processed_messages"]
    tenant = ctx.tenant_id
    newest = ctx.now - dt.timedelta(days=1)
    spread_s = SPREAD.total_seconds()
    uniform, bits, randbytes = rng.uniform, rng.getrandbits, rng.randbytes
    td = dt.timedelta

    def new_id() -> uuid.UUID:
        return uuid.UUID(int=bits(128), version=4)

    for n in range(start, start + count):
        user_name, email = person(n)
        locale = LOCALES[n % len(LOCALES)]
        user_id, request_id, token_id, email_id = new_id(), new_id(), new_id(), new_id()
        requested = newest - td(seconds=uniform(0, spread_s))
        created = requested + td(milliseconds=uniform(20, 400))  # hashed and decided
        activated = rng.random() < ACTIVATED
        activated_at = created + td(seconds=uniform(60, 40 * 3600))
        sent = created + td(milliseconds=uniform(10, 3000))
        published = created + td(milliseconds=uniform(2, 30))
        activation_id = new_id() if activated else None

        users.append(
            (
                user_id, tenant, user_name, email, "", ctx.password_hash, locale, activated,
                rng.random() < 0.005, "{}", "self", created,
                activated_at if activated else created,
            )
        )  # fmt: skip
        user_roles.append((user_id, ctx.role_id))
        key = str(new_id()) if rng.random() < WITH_IDEMPOTENCY_KEY else None
        requests.append(
            (
                request_id, tenant, key, randbytes(32), "registered", user_id, None,
                requested, created, email, user_name, locale, None,
            )
        )  # fmt: skip
        tokens.append(
            (
                token_id, user_id, randbytes(32), created + TOKEN_TTL,
                activated_at if activated else None, activation_id, None, created,
                ACTIVATION_URL,
            )
        )  # fmt: skip
        params = _PARAMS.format(user_name=user_name, url=ACTIVATION_URL, token=token_id)
        emails.append(
            (email_id, tenant, "activation", email, "sent", 1, sent, created, locale, params)
        )
        command = _REGISTER.format(
            email=email, locale=locale, tenant=tenant, user_name=user_name,
            request=request_id, url=ACTIVATION_URL,
        )  # fmt: skip
        outbox.append(
            (
                request_id, "register.requested",
                _event(request_id, "register.requested", command, requested),
                requested, requested + td(milliseconds=uniform(2, 20)), requested + td(seconds=30),
            )
        )  # fmt: skip
        registered_id, requested_id, delivered_id = new_id(), new_id(), new_id()
        registered = _REGISTERED.format(
            email=email, locale=locale, user=user_id, tenant=tenant, user_name=user_name,
            request=request_id, at=_iso(created),
        )  # fmt: skip
        outbox.append(
            (
                registered_id, "user.registered",
                _event(registered_id, "user.registered", registered, created, user_id),
                created, published, created,
            )
        )  # fmt: skip
        email_requested = _EMAIL_REQUESTED.format(email_id=email_id, tenant=tenant)
        outbox.append(
            (
                requested_id, "email.requested",
                _event(requested_id, "email.requested", email_requested, created),
                created, published, created,
            )
        )  # fmt: skip
        delivered = _DELIVERED.format(email=email, email_id=email_id, tenant=tenant)
        outbox.append(
            (
                delivered_id, "email.delivered",
                _event(delivered_id, "email.delivered", delivered, sent, email_id),
                sent, sent + td(milliseconds=uniform(1, 20)), sent,
            )
        )  # fmt: skip
        processed.append(("registration", request_id, created))
        if activated:
            event_id = new_id()
            body = _ACTIVATED.format(user=user_id, tenant=tenant, at=_iso(activated_at))
            outbox.append(
                (
                    event_id, "user.activated",
                    _event(event_id, "user.activated", body, activated_at, user_id),
                    activated_at, activated_at + td(milliseconds=uniform(2, 30)), activated_at,
                )
            )  # fmt: skip
            processed.append(("registration", activation_id, activated_at))
        if n % REJECTED_EVERY == 0:  # somebody tried the same address again, later
            again = created + td(seconds=uniform(60, 86400))
            rejected_id = new_id()
            requests.append(
                (
                    rejected_id, tenant, None, randbytes(32), "rejected", None,
                    "email_taken", again, again + td(milliseconds=uniform(20, 400)), email,
                    f"{user_name}x", locale, new_id(),
                )
            )  # fmt: skip
            outbox.append(
                (
                    rejected_id, "register.requested",
                    _event(rejected_id, "register.requested", command, again),
                    again, again + td(milliseconds=uniform(2, 20)), again + td(seconds=30),
                )
            )  # fmt: skip
            processed.append(("registration", rejected_id, again))
    return rows


# --- the statements, as the service runs them ------------------------------------------


def string_constants(path: Path) -> list[str]:
    """Every string literal of a Python file (implicit concatenations joined)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def sql_from(path: Path, marker: str) -> str:
    """The one string literal of `path` that contains `marker` (or equals it, when several
    contain it). ValueError when none or several do: the source changed, update the
    marker rather than run a stale statement."""
    found = [s for s in string_constants(path) if marker in s]
    exact = [s for s in found if s == marker]
    if len(exact) == 1:
        return exact[0]
    if len(found) != 1:
        raise ValueError(f"{path.name}: {len(found)} string literals contain {marker!r}")
    return found[0]


def statement_sql(path: Path, marker: str | Callable[[], str]) -> str:
    """A statement of the benchmark: the string literal of `path` that `marker` picks
    (sql_from), or, where the service composes a statement from the query (the back
    office's listing), what `marker()` composes with the service's own function."""
    return marker() if callable(marker) else sql_from(path, marker)


def literal(value: object) -> str:
    """`value` as an SQL literal for EXPLAIN EXECUTE (the parameter types come from the
    prepared statement, so untyped quoted literals are coerced to them)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, bytes):
        return f"'\\x{value.hex()}'"
    if isinstance(value, dt.timedelta):
        return f"'{value.total_seconds()} seconds'"
    if isinstance(value, dt.datetime):
        return _quote(value.isoformat())
    if isinstance(value, list | tuple):
        return _quote("{" + ",".join(_element(v) for v in value) + "}")
    if isinstance(value, dict):
        return _quote(json.dumps(value))
    return _quote(str(value))


def _element(value: object) -> str:
    """One element of an array literal: NULL, or a double-quoted, escaped value."""
    if value is None:
        return "NULL"
    text = f"\\x{value.hex()}" if isinstance(value, bytes) else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- reading plans -----------------------------------------------------------------------


def nodes(plan: dict) -> Iterable[dict]:
    """Every node of an EXPLAIN (FORMAT JSON) plan tree, depth first."""
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def _describe(node: dict) -> str:
    # ModifyTable: "Insert", "Update", "Delete" (index maintenance and unique checks of
    # an insert happen inside it: its time and buffers include them).
    text = node.get("Operation", node["Node Type"])
    if "Index Name" in node:
        text += f" using {node['Index Name']}"
    if "Relation Name" in node:
        text += f" on {node['Relation Name']}"
    return text


def summarize(plan: dict) -> str:
    """One line: the nodes top-down, children in parentheses."""
    children = [summarize(child) for child in plan.get("Plans", ())]
    text = _describe(plan)
    return f"{text} ({'; '.join(children)})" if children else text


def problems(plan: dict) -> list[str]:
    """What makes a statement O(rows of a growing table): a sequential scan of one, or a
    node that reads and discards more than DISCARD_LIMIT rows (filter or recheck)."""
    found = []
    for node in nodes(plan):
        relation = node.get("Relation Name")
        if node["Node Type"] == "Seq Scan" and relation in GROWING:
            found.append(f"sequential scan on {relation}")
        discarded = node.get("Rows Removed by Filter", 0) + node.get(
            "Rows Removed by Index Recheck", 0
        )
        if discarded > DISCARD_LIMIT:
            found.append(f"{_describe(node)} discards {discarded} rows")
    return found


def buffers(plan: dict) -> tuple[int, int]:
    """(shared blocks hit, shared blocks read) of the top node (it includes its children)."""
    return plan.get("Shared Hit Blocks", 0), plan.get("Shared Read Blocks", 0)


# --- SCALE.md ------------------------------------------------------------------------------


def append_row(text: str, table_header: str, cells: Sequence[str]) -> str:
    """`text` with one more row at the end of the Markdown table whose header line starts
    with `table_header` (earlier rows kept). ValueError when there is no such table."""
    lines = text.split("\n")
    try:
        at = next(i for i, line in enumerate(lines) if line.startswith(table_header))
    except StopIteration:
        raise ValueError(f"no table starting {table_header!r}") from None
    end = at + 1
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines.insert(end, "| " + " | ".join(cells) + " |")
    return "\n".join(lines)
