"""Black-box fault injection: real registrar processes, real PostgreSQL, RabbitMQ and SMTP,
one fault per scenario, and an audit from outside. `make faults` runs all seven;
`python -m tests.faults worker_kill smtp_outage` a subset (see __main__ for options).

A run owns a database (registrar_faults_<id>), an AMQP prefix (faults_<id>), a sealing key
pair, an SMTP sink in its own process, a tenant and a `users:invite` token. Per scenario:
a fresh gateway and `worker all` (two for dup_race); a steady stream of registrations
(`Prefer: respond-async`, accepted on 202/200) and invitations (accepted on 204), each
with a unique address and an Idempotency-Key, retried with the same key and body after
connection errors, 5xx and 429 until accepted or its deadline; one fault part-way
through; then the drain and the audit (tests/faults/audit.py).

What the audit counts, per accepted item (requests never accepted are not counted):

* registered / events / emails — items whose row (`users` for a registration,
  `invitations` for an invitation), event (`user.registered` / `invitation.sent` on the
  harness's own queue bound to `{prefix}.events` with `#`, distinct CloudEvents ids) and
  email (received by the sink for the address) are present.
* lost — at least one of the three is missing.
* duplicated — more than one of any of the three: two rows, two event ids, two emails.
* stuck — the service's own tables still show the item unfinished after the drain: its
  `registration_requests` row is still 'pending', or an `emails` row for the address is
  still 'pending' or 'sending'. Stuck items are usually lost too; the categories overlap.

webhook_receiver_outage also gives the tenant a webhook endpoint (user.registered and
invitation.sent) at a receiver of the harness in its own process, which verifies each
request with `standardwebhooks`; a fourth witness per item — the verified webhook for
its event — joins the three (missing: lost, two: duplicated, a delivery row still
'pending': stuck). The output line stays the same.

The drain ends when every accepted item has all three witnesses and nothing is stuck
(and dup_race's copies are all out), or after a minute without any change, or at its
timeout; five more seconds let late duplicates arrive before the final audit.

Faults: worker_kill, broker_restart, db_restart, smtp_outage, gateway_kill, dup_race,
webhook_receiver_outage (tests/faults/scenarios.py). broker_restart and db_restart
restart this machine's shared RabbitMQ / PostgreSQL, so they never run under pytest
(test_faults.py runs worker_kill and smtp_outage, shortened).

`make cluster` (tests/faults/cluster.py) runs one more scenario, cluster_node_loss, on a
three-node RabbitMQ cluster of its own (tests/faults/rabbit_cluster.py) with the same
environment, stream, drain and audit; see docs/broker-cluster.md.
"""
