"""Translations: gettext catalogues (.po, compiled in memory at first use) and Jinja2
environments per locale, with the fallback chain de_AT -> de -> tenant default -> en."""

from __future__ import annotations

import io
from functools import cache, lru_cache
from importlib import resources

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

SHIPPED = ("en", "de", "fr", "es", "hr")
BASE = "en"  # msgids are English: the base locale needs no catalogue lookups


def fallback_chain(locale: str | None, *, default: str | None = None) -> tuple[str, ...]:
    """Shipped locales to try, best first: de_AT -> de -> default -> en."""
    chain: list[str] = []
    for candidate in (locale, default):
        if not candidate:
            continue
        for tag in (candidate, candidate.split("_")[0]):
            if tag in SHIPPED and tag not in chain:
                chain.append(tag)
    if BASE not in chain:
        chain.append(BASE)
    # English is complete by construction (msgids are English): nothing after it is used.
    return tuple(chain[: chain.index(BASE) + 1])


def catalogue_path(locale: str):
    return resources.files("service") / "locales" / locale / "LC_MESSAGES" / "messages.po"


@cache
def _compiled(locale: str) -> bytes:
    """The locale's .po compiled to .mo bytes, once per process."""
    with catalogue_path(locale).open("rb") as po:
        catalog = read_po(po, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    return buffer.getvalue()


def _catalogue(locale: str) -> NullTranslations:
    # A fresh object every time: add_fallback links objects together, so a shared,
    # cached one would end up chained into every other locale's fallbacks.
    if locale == BASE:
        return NullTranslations()
    return Translations(fp=io.BytesIO(_compiled(locale)))


def translations(chain: tuple[str, ...]) -> NullTranslations:
    """Translations for the first locale of `chain`, falling back along the rest."""
    first = Translations()  # an empty catalogue that only delegates
    for locale in chain:
        first.add_fallback(_catalogue(locale))
    return first


@lru_cache(maxsize=64)
def environment(package: str, chain: tuple[str, ...]) -> Environment:
    """A Jinja2 environment for `package`'s templates, translating along `chain`."""
    env = Environment(
        loader=PackageLoader(package, "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,  # a template with a missing variable fails loudly
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(chain), newstyle=True)
    return env
