"""Sending mail over SMTP with aiosmtplib, reusing one connection between messages."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

log = logging.getLogger(__name__)
TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    use_tls: bool = False
    start_tls: bool = False
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    # A CA bundle for servers with a private CA; certificates are always verified.
    cafile: str | None = None

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """smtp://[user:pass@]host[:port][?starttls=true][&cafile=PATH][&timeout=S]
        or smtps://[user:pass@]host[:465][?cafile=PATH]."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"unsupported SMTP URL scheme {parts.scheme!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (465 if tls else 25),
            use_tls=tls,
            start_tls=query.get("starttls", "").lower() in TRUE,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=float(query.get("timeout", 30)),
            cafile=query.get("cafile"),
        )


class _Client(aiosmtplib.SMTP):
    """An SMTP client that remembers whether the current transaction reached DATA.

    Before DATA the server holds no message, so a connection found dead there (a pooled
    connection the server dropped while idle) can be replaced and the message sent again
    at once. From DATA on, the server may have accepted the message even if we never saw
    its reply: resending then could deliver it twice, so that is left to the caller."""

    data_started = False

    async def data(self, *args, **kwargs):
        self.data_started = True
        return await super().data(*args, **kwargs)


class SmtpSender:
    """One reused SMTP connection. A connection whose transaction failed or was
    interrupted (cancelled mid-DATA, say) is closed, never reused: its state is unknown,
    and a late reply would be paired with the next message's commands."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._client: _Client | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> _Client:
        c = self._config
        client = _Client(
            hostname=c.host,
            port=c.port,
            use_tls=c.use_tls,
            start_tls=c.start_tls if c.start_tls else False,
            timeout=c.timeout,
            cert_bundle=c.cafile,
        )
        try:
            await client.connect()
            if c.username:
                await client.login(c.username, c.password or "")
        except BaseException:
            client.close()  # e.g. a refused login: do not leak the socket
            raise
        return client

    def _drop(self) -> None:
        """Forget the connection, closing it without a QUIT (that could wait on a server
        still busy with an interrupted transaction)."""
        if self._client is not None:
            self._client.close()
        self._client = None

    async def send(self, message: EmailMessage) -> None:
        """Send one message; raises aiosmtplib.SMTPException / OSError on failure."""
        async with self._lock:
            try:
                await self._send(message)
            except BaseException:
                self._drop()
                raise

    async def _send(self, message: EmailMessage) -> None:
        reused = self._client is not None and self._client.is_connected
        if not reused:
            self._drop()
            self._client = await self._connect()
        client = self._client
        client.data_started = False
        try:
            await client.send_message(message)
        except aiosmtplib.SMTPServerDisconnected:
            # `is_connected` only knows what the event loop has seen: a connection the
            # server closed while idle can still look alive until the first command.
            if not reused or client.data_started:
                raise
            log.info("pooled SMTP connection was stale; reconnecting")
            self._drop()
            self._client = await self._connect()
            await self._client.send_message(message)

    async def close(self) -> None:
        if self._client is not None and self._client.is_connected:
            try:
                await self._client.quit()
            except (aiosmtplib.SMTPException, OSError):
                self._client.close()
        self._client = None


class SmtpPool:
    """A few reused connections, so several emails go out at once without a new TCP and
    TLS handshake (and login) per message."""

    def __init__(self, config: SmtpConfig, *, size: int) -> None:
        self._senders: asyncio.Queue[SmtpSender] = asyncio.Queue()
        self._all = [SmtpSender(config) for _ in range(size)]
        for sender in self._all:
            self._senders.put_nowait(sender)

    async def send(self, message: EmailMessage) -> None:
        sender = await self._senders.get()
        try:
            await sender.send(message)
        finally:  # also when cancelled: the sender has dropped a broken connection itself
            self._senders.put_nowait(sender)

    async def close(self) -> None:
        for sender in self._all:
            await sender.close()
