"""The handbook cannot drift from the code: generated pages are current, every setting is
documented (with its real default), and every relative link stays inside the repository
and lands on a file (and heading) that exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic_core import PydanticUndefined

from scripts import gen_docs
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = ROOT / "docs" / "configuration.md"
HANDBOOK = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
VARIABLE = re.compile(r"REGISTRAR_[A-Z0-9_]+")


# ------------------------------------------------------------------ generated pages


# Named here, not computed at collection: a generator error fails these tests, not the run.
@pytest.mark.parametrize("path", [gen_docs.HTTP_API, gen_docs.EVENTS], ids=lambda p: p.name)
def test_the_generated_pages_are_up_to_date(path):
    assert path.read_text() == gen_docs.outputs()[path], (
        f"{path.relative_to(ROOT)} is stale: run `make docs` (python -m scripts.gen_docs)"
    )


def test_every_operation_and_event_is_on_its_page():
    api = (ROOT / "docs" / "http-api.md").read_text()
    for path, item in gen_docs.build_openapi()["paths"].items():
        for method in item:
            assert f"### `{method.upper()} {path}`" in api
    events = (ROOT / "docs" / "events.md").read_text()
    for channel in json.loads(gen_docs.ASYNCAPI.read_text())["channels"].values():
        assert f"\n## {channel['address']}\n" in events


# ------------------------------------------------------------------- configuration


def _configuration_rows() -> dict[str, list[str]]:
    """Variable -> the cells of its row, for every table row that starts with one."""
    rows: dict[str, list[str]] = {}
    for line in CONFIGURATION.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `REGISTRAR_"):
            name = cells[0].strip("`")
            assert name not in rows, f"{name} has two rows"
            rows[name] = cells
    return rows


def _variable(field: str) -> str:
    return f"REGISTRAR_{field.upper()}"


def test_every_setting_has_a_row_and_every_row_is_a_setting():
    documented = set(_configuration_rows())
    fields = {_variable(name) for name in Settings.model_fields}
    assert fields - documented == set(), "settings without a row in docs/configuration.md"
    assert documented - fields == set(), "rows in docs/configuration.md that are no setting"
    mentioned = set(VARIABLE.findall(CONFIGURATION.read_text()))
    assert mentioned - fields == set(), "docs/configuration.md names variables that do not exist"


def _documented_default(cell: str) -> str | None:
    match = re.search(r"`([^`]*)`", cell)
    return match.group(1) if match else None


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_the_documented_default_is_the_codes(field):
    info = Settings.model_fields[field]
    cell = _configuration_rows()[_variable(field)][1]
    if info.default is PydanticUndefined:  # a default_factory: described in words
        assert _documented_default(cell) is None, cell
        return
    default = info.default
    if default is None or default == ():
        assert cell == "unset"
        return
    token = _documented_default(cell)
    assert token is not None, f"{_variable(field)}: no `default` in {cell!r}"
    if isinstance(default, bool):
        assert token == str(default).lower()
    elif isinstance(default, int | float):
        assert float(token) == default
    elif isinstance(default, tuple):
        assert json.loads(token) == list(default)
    else:
        assert token == str(default)


# ----------------------------------------------------------------------------- links


def _prose(path: Path) -> str:
    """The Markdown without fenced code blocks (their `#` lines are no headings)."""
    return FENCE.sub("", path.read_text())


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens,
    repeats numbered."""
    anchors: set[str] = set()
    for line in _prose(path).splitlines():
        if match := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = "".join(c for c in match.group(1).lower() if c.isalnum() or c in " -_").replace(
                " ", "-"
            )
            candidate, n = slug, 0
            while candidate in anchors:
                n += 1
                candidate = f"{slug}-{n}"
            anchors.add(candidate)
    return anchors


def _links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(_prose(path))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


@pytest.mark.parametrize("page", HANDBOOK, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands_inside_the_repository(page):
    for target in _links(page):
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        assert resolved.is_relative_to(ROOT), f"{target} leaves the repository"
        relative = resolved.relative_to(ROOT).as_posix()
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.name}: no heading #{anchor} in {relative}"


@pytest.mark.parametrize("page", HANDBOOK, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_points_at_the_specification_outside_the_repository(page):
    text = page.read_text()
    assert not re.search(r"\bSPEC\b|SPEC\.md|\.\./shared|/work/", text)


def test_the_handbook_index_links_every_chapter():
    index = _links(ROOT / "docs" / "README.md")
    linked = {(ROOT / "docs" / t.partition("#")[0]).resolve() for t in index}
    chapters = {p.resolve() for p in (ROOT / "docs").glob("*.md") if p.name != "README.md"}
    assert chapters - linked == set()
