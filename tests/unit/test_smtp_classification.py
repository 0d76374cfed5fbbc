"""Which SMTP failures are final: only a definite 55x refusal of the recipient, the sender
or the content. Everything else (connection trouble, 4xx, and 5xx replies that mean our
connection state or configuration was off) is retried."""

from __future__ import annotations

import aiosmtplib
import pytest

from workers.mailer import is_permanent


def rcpt(code: int, recipient: str = "a@example.com") -> aiosmtplib.SMTPRecipientRefused:
    return aiosmtplib.SMTPRecipientRefused(code, "reply", recipient)


PERMANENT = [
    *(rcpt(code) for code in (550, 551, 552, 553, 554, 555, 556, 559)),
    aiosmtplib.SMTPRecipientsRefused([rcpt(550, "a@example.com"), rcpt(553, "b@example.com")]),
    aiosmtplib.SMTPDataError(552, "message too big"),
    aiosmtplib.SMTPDataError(554, "transaction failed: spam"),
    aiosmtplib.SMTPSenderRefused(553, "sender address rejected", "from@example.com"),
    aiosmtplib.SMTPSenderRefused(550, "not allowed to send as", "from@example.com"),
]

RETRYABLE = [
    # the connection
    aiosmtplib.SMTPConnectError("refused"),
    aiosmtplib.SMTPServerDisconnected("Connection lost"),
    aiosmtplib.SMTPReadTimeoutError("timed out"),
    aiosmtplib.SMTPConnectTimeoutError("timed out"),
    ConnectionRefusedError(111, "refused"),
    ConnectionResetError(104, "reset"),
    TimeoutError(),
    # every 4xx
    aiosmtplib.SMTPSenderRefused(421, "closing connection", "from@example.com"),
    rcpt(450),
    rcpt(451),
    rcpt(452),
    aiosmtplib.SMTPDataError(451, "local error"),
    aiosmtplib.SMTPDataError(452, "insufficient storage"),
    aiosmtplib.SMTPRecipientsRefused([rcpt(450)]),
    # sequence and syntax: our side of the conversation was off
    aiosmtplib.SMTPSenderRefused(503, "nested MAIL command", "from@example.com"),
    rcpt(503),
    aiosmtplib.SMTPDataError(503, "bad sequence of commands"),
    aiosmtplib.SMTPSenderRefused(500, "command unrecognized", "from@example.com"),
    aiosmtplib.SMTPSenderRefused(501, "syntax error in parameters", "from@example.com"),
    aiosmtplib.SMTPDataError(502, "command not implemented"),
    rcpt(504),
    # not a refusal of this message: authentication, greeting, a plain reply
    aiosmtplib.SMTPAuthenticationError(535, "bad credentials"),
    aiosmtplib.SMTPHeloError(550, "go away"),
    aiosmtplib.SMTPResponseException(554, "no SMTP service here"),
    # mixed: one recipient might still take it
    aiosmtplib.SMTPRecipientsRefused([rcpt(550, "a@example.com"), rcpt(451, "b@example.com")]),
    aiosmtplib.SMTPRecipientsRefused([]),
    # codes outside 550-559
    rcpt(560),
    aiosmtplib.SMTPDataError(530, "authentication required"),
]


@pytest.mark.parametrize("exc", PERMANENT, ids=repr)
def test_a_definite_refusal_is_permanent(exc: BaseException) -> None:
    assert is_permanent(exc)


@pytest.mark.parametrize("exc", RETRYABLE, ids=repr)
def test_anything_else_is_retried(exc: BaseException) -> None:
    assert not is_permanent(exc)
