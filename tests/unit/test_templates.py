"""Every template renders with the variables its code provides, and a template that
needs a variable the code does not provide fails loudly (StrictUndefined)."""

from __future__ import annotations

import datetime as dt
import uuid
from importlib import resources

import jinja2
import pytest
from jinja2 import meta

from service import i18n
from service.emails import EmailContent
from workers.mailer import MailSettings, Recipient, context_for

KINDS = (
    "activation",
    "invitation",
    "duplicate",
    "welcome",
    "username_taken",
    "password_recovery",
    "password_changed",
    "locked_out",
    "account_deleted",
)
PARTS = ("subject.txt", "txt", "html")
SETTINGS = MailSettings(
    activation_key=b"k" * 32,
    invitation_key=b"i" * 32,
    recovery_key=b"r" * 32,
    mail_from="x <x@example.com>",
    public_url="https://registrar.example",
    activation_valid_hours=48,
    recovery_valid_minutes=60,
)
RECIPIENT = Recipient(organization="Acme", default_locale="en")
# What the gateway's accept page views pass (service/gateway/accept.py).
PAGE_CONTEXT = {
    "invitation_form.html": {"lang", "organization", "email", "name", "errors"},
    "invitation_done.html": {"lang", "organization", "name", "email"},
    "invitation_message.html": {"lang", "organization", "reason"},
}


def email_request(kind: str) -> EmailContent:
    return EmailContent(
        email_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        kind=kind,
        to="a@example.com",
        locale="en",
        user_name="ann",
        name="Ann",
        activation_url="https://app.example/{activationToken}",
        activation_token_id=uuid.uuid4(),
        invitation_id=uuid.uuid4(),
        expires_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        user_created_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        recover_url="https://app.example/recover/{passwordRecoveryToken}",
        recovery_token_id=uuid.uuid4(),
        changed_at=dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
        locked_until=dt.datetime(2026, 11, 3, tzinfo=dt.UTC),
    )


def variables_of(package: str, name: str) -> set[str]:
    env = i18n.environment(package, ("en",))
    source = (resources.files(package) / "templates" / name).read_text()
    found = meta.find_undeclared_variables(env.parse(source))
    # The i18n extension's own names, and anything a parent template declares.
    return found - {"gettext", "ngettext", "_", "pgettext", "npgettext"}


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("kind", KINDS)
def test_the_mailer_provides_every_variable_each_email_template_uses(kind: str, part: str):
    context = context_for(email_request(kind), RECIPIENT, SETTINGS, "en")
    assert variables_of("workers", f"{kind}.{part}") <= set(context)


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("kind", KINDS)
def test_an_email_template_missing_a_variable_fails_to_render(kind: str, part: str):
    context = context_for(email_request(kind), RECIPIENT, SETTINGS, "en")
    template = i18n.environment("workers", ("en",)).get_template(f"{kind}.{part}")
    assert template.render(context).strip()
    for name in variables_of("workers", f"{kind}.{part}"):
        incomplete = {k: v for k, v in context.items() if k != name}
        with pytest.raises(jinja2.UndefinedError):
            template.render(incomplete)


@pytest.mark.parametrize(("name", "provided"), list(PAGE_CONTEXT.items()))
def test_the_accept_page_views_provide_every_variable_their_templates_use(name, provided):
    used = variables_of("service.gateway", name) | variables_of("service.gateway", "page.html")
    assert used <= provided | {"self"}
