"""The PgBouncer variant (REGISTRAR_TEST_PGBOUNCER=1, the second run of `make test`): the
gateway's and workers' pools really go through PgBouncer in transaction-pooling mode,
and outcomes announced by NOTIFY still reach the gateway over its direct LISTEN."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.conftest import THROUGH_PGBOUNCER
from tests.e2e.test_self_registration import new_body, register_url

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not THROUGH_PGBOUNCER, reason="the PgBouncer variant only"),
]


def transactions(pgbouncer, database: str) -> int:
    (row,) = [row for row in pgbouncer.show("STATS") if row["database"] == database]
    return int(row["total_xact_count"])


async def test_processes_pool_through_pgbouncer_and_hear_outcomes_directly(
    service, tenant, http, pgbouncer, e2e_settings
):
    assert urlsplit(e2e_settings.database_url).port == pgbouncer.port
    assert urlsplit(e2e_settings.database_session_url).port != pgbouncer.port
    database = urlsplit(e2e_settings.database_url).path.lstrip("/")
    before = transactions(pgbouncer, database)

    # 200 with the user, not 202: the worker's decision, NOTIFYed in its transaction
    # through PgBouncer, reached the gateway's LISTEN connection while the request waited.
    async with http.post(register_url(service, tenant), json=new_body()) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["roles"]

    assert transactions(pgbouncer, database) > before
    clients = [c for c in pgbouncer.show("CLIENTS") if c["database"] == database]
    servers = [s for s in pgbouncer.show("SERVERS") if s["database"] == database]
    assert len(clients) >= 2  # the gateway's pool and the workers' pool at least
    assert len(servers) <= 8  # default_pool_size in tests/conftest.py's ini
