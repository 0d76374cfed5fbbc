"""Merge translations into service/locales/LANG/LC_MESSAGES/messages.po from the .pot.

Usage: python scripts/translate.py LANG TRANSLATIONS.json
TRANSLATIONS.json maps each msgid of messages.pot to its translation. Entries already in
the .po are kept unless the JSON gives a new one; msgids no longer in the .pot are dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

LOCALES = Path(__file__).resolve().parent.parent / "service" / "locales"


def main(lang: str, translations_file: str) -> None:
    template = read_po((LOCALES / "messages.pot").open("rb"))
    po_path = LOCALES / lang / "LC_MESSAGES" / "messages.po"
    existing = (
        read_po(po_path.open("rb"), locale=lang) if po_path.exists() else Catalog(locale=lang)
    )
    given = json.loads(Path(translations_file).read_text(encoding="utf-8"))
    catalog = Catalog(locale=lang, project="registrar", fuzzy=False)
    for message in template:
        if not message.id:
            continue
        old = existing.get(message.id)
        string = given.get(message.id) or (old.string if old else "")
        catalog.add(message.id, string=string)
    po_path.parent.mkdir(parents=True, exist_ok=True)
    with po_path.open("wb") as out:
        write_po(out, catalog, omit_header=False, sort_output=True, width=100)
    missing = [m.id for m in catalog if m.id and not m.string]
    print(f"{lang}: {len(catalog)} messages, {len(missing)} untranslated")


if __name__ == "__main__":
    main(*sys.argv[1:])
