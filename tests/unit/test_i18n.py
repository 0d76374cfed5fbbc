"""Translations: the locale fallback chain and the shipped gettext catalogues (SPEC §7)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from service import i18n

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "service" / "locales"
TRANSLATED = sorted(
    {po.parts[-3] for po in LOCALES.glob("*/LC_MESSAGES/messages.po")}
    | (set(i18n.SHIPPED) - {i18n.BASE})
)  # a shipped locale without a catalogue fails each test below (SPEC §7)
KNOWN = "Activate your account"
GERMAN = {KNOWN: "Aktivieren Sie Ihr Konto"}


def template_msgids() -> set[str]:
    """Every msgid `make messages` would extract from the templates (babel.cfg)."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found = extract_from_dir(str(ROOT), method_map, options_map)
    return {msg if isinstance(msg, str) else msg[0] for _, _, msg, _, _ in found}


def pot_msgids() -> set[str]:
    with (LOCALES / "messages.pot").open("rb") as pot:
        return {m.id for m in read_po(pot) if m.id}


# --- fallback chain --------------------------------------------------------------------


def test_fallback_chain_goes_region_then_language_then_tenant_default_then_english() -> None:
    assert i18n.fallback_chain("de_AT", default="fr") == ("de", "fr", "en")


def test_fallback_chain_of_a_shipped_language_only_locale_starts_with_it() -> None:
    assert i18n.fallback_chain("de", default="en") == ("de", "en")


def test_fallback_chain_skips_an_unknown_locale_for_the_tenant_default() -> None:
    assert i18n.fallback_chain("xx_YY", default="de") == ("de", "en")
    assert i18n.fallback_chain("it_IT", default="de_CH") == ("de", "en")


def test_fallback_chain_ends_in_english_when_nothing_else_is_shipped() -> None:
    assert i18n.fallback_chain("it_IT", default="pt") == ("en",)
    assert i18n.fallback_chain(None) == ("en",)
    assert i18n.fallback_chain("", default="") == ("en",)


def test_fallback_chain_has_no_duplicates() -> None:
    assert i18n.fallback_chain("de_DE", default="de") == ("de", "en")
    assert i18n.fallback_chain("en_US", default="en") == ("en",)
    assert i18n.fallback_chain("de_AT", default="en_GB") == ("de", "en")
    for locale in ("de_AT", "en", "fr_FR", "xx"):
        for default in (None, "de", "en", "fr"):
            chain = i18n.fallback_chain(locale, default=default)
            assert len(chain) == len(set(chain)), chain


def test_fallback_chain_only_names_shipped_locales() -> None:
    chain = i18n.fallback_chain("hr_HR", default="es_MX")
    assert chain == ("hr", "es", "en")
    assert set(chain) <= set(i18n.SHIPPED)


# --- catalogues ------------------------------------------------------------------------


@pytest.mark.parametrize("locale", [s for s in i18n.SHIPPED if s != i18n.BASE])
def test_every_shipped_locale_has_a_catalogue(locale: str) -> None:
    assert i18n.catalogue_path(locale).is_file()


def test_the_template_catalogue_matches_the_msgids_of_the_templates() -> None:
    """A new or changed {% trans %} block without `make messages` fails here."""
    assert pot_msgids() == template_msgids()


def read_catalogue(locale: str) -> Catalog:
    with (LOCALES / locale / "LC_MESSAGES" / "messages.po").open("rb") as file:
        return read_po(file, locale=locale)


@pytest.mark.parametrize("locale", TRANSLATED)
def test_each_catalogue_compiles_without_format_errors(locale: str) -> None:
    catalogue = read_catalogue(locale)
    assert list(catalogue.check()) == []
    buffer = io.BytesIO()
    write_mo(buffer, catalogue)
    assert buffer.getvalue()


@pytest.mark.parametrize("locale", TRANSLATED)
def test_each_catalogue_translates_every_message_of_the_templates(locale: str) -> None:
    catalogue = read_catalogue(locale)
    missing = sorted(m for m in pot_msgids() if m not in catalogue or not catalogue[m].string)
    fuzzy = sorted(m.id for m in catalogue if m.id and m.fuzzy)
    assert (missing, fuzzy) == ([], [])


@pytest.mark.parametrize("locale", TRANSLATED)
def test_translations_of_each_catalogue_translate_a_known_msgid(locale: str) -> None:
    translated = i18n.translations((locale,)).gettext(KNOWN)
    assert translated != KNOWN
    if locale == "de":
        assert translated == GERMAN[KNOWN]


def test_translations_fall_back_along_the_chain() -> None:
    german = i18n.translations(("de", "en"))
    assert german.gettext(KNOWN) == GERMAN[KNOWN]
    assert german.gettext("not a msgid") == "not a msgid"


def test_an_english_only_chain_returns_the_msgids() -> None:
    assert i18n.translations(("en",)).gettext(KNOWN) == KNOWN


def test_environment_renders_templates_in_the_first_locale_of_the_chain() -> None:
    env = i18n.environment("workers", ("de", "en"))
    subject = env.get_template("invitation.subject.txt").render(organization="Acme")
    assert subject.strip() == "Sie sind eingeladen, Acme beizutreten"


@pytest.mark.parametrize("locale", [s for s in i18n.SHIPPED if s != i18n.BASE])
def test_an_english_reader_of_a_tenant_with_another_default_reads_english(locale: str) -> None:
    chain = i18n.fallback_chain("en_US", default=locale)
    assert chain == ("en",)  # English is complete: the chain stops there
    assert i18n.translations(chain).gettext(KNOWN) == KNOWN


def test_using_one_chain_does_not_change_what_another_chain_translates() -> None:
    i18n.translations(("en", "de"))
    assert i18n.translations(("en",)).gettext(KNOWN) == KNOWN


def test_building_the_same_chain_twice_keeps_unknown_msgids_untranslated() -> None:
    """environment() is cached per package, so the gateway and the mailer both build
    ("de", "en") in a `registrar run` process."""
    i18n.environment("workers", ("de", "en"))
    i18n.environment("service.gateway", ("de", "en"))
    assert i18n.translations(("de", "en")).gettext("not a msgid") == "not a msgid"
    assert i18n.translations(("en",)).gettext(KNOWN) == KNOWN
