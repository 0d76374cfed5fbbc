"""STARTTLS, implicit TLS and AUTH, all taken from REGISTRAR_SMTP_URL, against a real
aiosmtpd server that demands them."""

from __future__ import annotations

import ssl
import subprocess
from email.message import EmailMessage

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.conftest import Mailbox
from workers.mailer import is_permanent
from workers.smtp import SmtpConfig, SmtpSender

USER, PASSWORD = "mailer", "s3cret/with@chars"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


class SecureMailbox(Mailbox):
    def __init__(self, certificate: tuple[str, str], *, implicit_tls: bool) -> None:
        super().__init__()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        self.logins: list[tuple[str, bool]] = []
        options = (
            {"ssl_context": context}
            if implicit_tls
            else {"tls_context": context, "require_starttls": True}
        )
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self.authenticate,
            # aiosmtpd counts only STARTTLS as TLS for this check; with implicit TLS the
            # whole connection is encrypted from the first byte anyway.
            auth_require_tls=not implicit_tls,
            auth_required=True,
            **options,
        )
        if implicit_tls:
            # The controller's readiness probe speaks plain TCP; point it at TLS instead.
            self.controller.ssl_context = context

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (auth_data.login.decode(), auth_data.password.decode()) == (USER, PASSWORD)
        self.logins.append((auth_data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)


def message(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", to, "secure"
    msg.set_content("hello")
    return msg


@pytest.fixture
def starttls_server(certificate):
    box = SecureMailbox(certificate, implicit_tls=False)
    box.controller.start()
    yield box
    box.controller.stop()


async def test_starttls_and_login_from_the_url(starttls_server, certificate):
    url = (
        f"smtp://{USER}:s3cret%2Fwith%40chars@127.0.0.1:{starttls_server.port}"
        f"?starttls=true&cafile={certificate[0]}"
    )
    sender = SmtpSender(SmtpConfig.from_url(url))
    await sender.send(message("tls@example.com"))
    await sender.send(message("tls2@example.com"))  # same connection, still authenticated
    await sender.close()
    assert len(starttls_server.received(lambda m: m["To"].startswith("tls"))) == 2
    assert starttls_server.logins == [(USER, True)]


async def test_a_wrong_password_is_retried_not_dead_lettered(starttls_server, certificate):
    """535 is our configuration's fault, not the message's: it waits in the retry queues
    (and then the DLQ, replayable) while an operator fixes REGISTRAR_SMTP_URL."""
    url = f"smtp://{USER}:wrong@127.0.0.1:{starttls_server.port}?starttls=true&cafile={certificate[0]}"
    sender = SmtpSender(SmtpConfig.from_url(url))
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        await sender.send(message("x@example.com"))
    assert not is_permanent(refused.value)


async def test_an_untrusted_certificate_is_refused(starttls_server):
    url = f"smtp://{USER}:x@127.0.0.1:{starttls_server.port}?starttls=true"
    sender = SmtpSender(SmtpConfig.from_url(url))
    with pytest.raises((aiosmtplib.SMTPException, ssl.SSLError)):
        await sender.send(message("x@example.com"))


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls_smtps_url(certificate):
    box = SecureMailbox(certificate, implicit_tls=True)
    box.controller.start()
    try:
        url = f"smtps://{USER}:s3cret%2Fwith%40chars@127.0.0.1:{box.port}?cafile={certificate[0]}"
        sender = SmtpSender(SmtpConfig.from_url(url))
        await sender.send(message("smtps@example.com"))
        await sender.close()
        assert box.received(lambda m: m["To"] == "smtps@example.com")
    finally:
        box.controller.stop()


def test_the_smtp_password_stays_out_of_reprs():
    config = SmtpConfig.from_url(f"smtp://{USER}:hunter2@127.0.0.1:25")
    assert "hunter2" not in repr(config)
    assert config.password == "hunter2"
