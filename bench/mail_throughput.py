"""Emails per second to a local SMTP sink: reused connections against one connection per
message. Prints rates and ratios measured in one run, rounds interleaved so machine noise
hits every variant alike; compare the ratios, not the absolute rates.

    .venv/bin/python bench/mail_throughput.py [--messages 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import socket
import subprocess
import sys
import time
import uuid

import aiosmtplib
from _report import free_port, print_ratios

from service.emails import EmailContent
from workers.mailer import MailSettings, Recipient, render
from workers.smtp import SmtpConfig, SmtpPool, SmtpSender


def start_sink(port: int) -> subprocess.Popen:
    """aiosmtpd's Sink handler in its own process, so it does not share our GIL."""
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-c",
            "aiosmtpd.handlers.Sink",
            "-l",
            f"127.0.0.1:{port}",
        ],
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return sink
        except OSError:
            time.sleep(0.05)
    sink.kill()
    raise RuntimeError("the SMTP sink did not start")


def messages(count: int):
    """Real activation emails, rendered as the mailer renders them."""
    settings = MailSettings(
        activation_key=b"k" * 32,
        invitation_key=b"i" * 32,
        recovery_key=b"r" * 32,
        mail_from="bench <bench@example.com>",
        public_url="http://127.0.0.1:8080",
        activation_valid_hours=48,
        recovery_valid_minutes=60,
    )
    recipient = Recipient(organization="Bench", default_locale="en")
    return [
        render(
            EmailContent(
                email_id=uuid.uuid4(),
                tenant_id=uuid.uuid4(),
                kind="activation",
                to=f"user{i}@example.com",
                locale="de",
                user_name=f"user{i}",
                activation_url="https://app.example/{activationToken}",
                activation_token_id=uuid.uuid4(),
                expires_at=dt.datetime.now(dt.UTC),
            ),
            recipient=recipient,
            settings=settings,
        )
        for i in range(count)
    ]


async def one_connection_per_message(port: int, batch) -> None:
    for message in batch:
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port)


async def one_reused_connection(port: int, batch) -> None:
    sender = SmtpSender(SmtpConfig.from_url(f"smtp://127.0.0.1:{port}"))
    for message in batch:
        await sender.send(message)
    await sender.close()


async def pool_of_three(port: int, batch) -> None:
    pool = SmtpPool(SmtpConfig.from_url(f"smtp://127.0.0.1:{port}"), size=3)
    await asyncio.gather(*(pool.send(message) for message in batch))
    await pool.close()


VARIANTS = {
    "new connection per message": one_connection_per_message,
    "one reused connection": one_reused_connection,
    "pool of 3 reused connections": pool_of_three,
}


async def main(count: int, rounds: int) -> None:
    port = free_port()
    sink = start_sink(port)
    try:
        batch = messages(count)
        await one_reused_connection(port, batch[:20])  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for round_no in range(1, rounds + 1):
            for name, variant in VARIANTS.items():
                started = time.perf_counter()
                await variant(port, batch)
                rates[name].append(count / (time.perf_counter() - started))
            print(f"round {round_no}/{rounds} done", file=sys.stderr)
    finally:
        sink.terminate()
        sink.wait()

    print_ratios(
        f"{count} emails x {rounds} rounds to a local aiosmtpd sink (median)",
        rates,
        unit="emails/s",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rounds))
