"""docs/CONTRACT.md says what the code does: names read from the code must appear in it, and back.

Every reason code, status, return code, default topic name, regime value, default
setting, schema file and published field is read from the code (or the shipped
files) and looked up in the contract's tables; the tables may name nothing the code
lacks. The markdown files a fresh clone reads have no dead relative links.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import pytest

from clearance.settings import DEFAULT_POSITIVE_LIST, Settings, load_positive_list
from clearance.topics import topic_specs
from pipeline import config, records, rules
from pipeline.codec import dead_letter_dict, declaration_dict
from pipeline.config import REGIMES, RulesConfig
from pipeline.decisions import decide_incomplete, status_for
from pipeline.engine import Origin
from pipeline.records import DOC_KINDS, RETURN_STATUS, OrderId, Status

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "CONTRACT.md"
SCHEMAS = ROOT / "schemas"
MARKDOWN = sorted([ROOT / "README.md", SCHEMAS / "README.md", *(ROOT / "docs").glob("*.md")])

_TICKED = re.compile(r"`([^`\n]+)`")
_UPPER = re.compile(r"`([A-Z][A-Z0-9_]*[A-Z0-9])`")
_DAY_MS = 86_400_000


# What the code defines.

REASON_CODES = sorted(
    value
    for name, value in vars(rules).items()
    if isinstance(value, str) and name == value and re.fullmatch(r"[A-Z][A-Z0-9_]+", name)
)
STATUSES: tuple[str, ...] = get_args(Status)
RELEASE_STATUSES = {
    status_for((), "any", RulesConfig(inspection_rate=rate))[0] for rate in (0.0, 1.0)
}  # what a declaration without reasons can be: the matched topic
TOPIC_FIELDS = [f for f in fields(Settings) if f.name.startswith("topic_")]
DECLARATION_FIELDS = set(declaration_dict(decide_incomplete(OrderId("T1"), (None, None, None), 0, 0)))
OPTIONAL_FIELDS = {"receivedAt"}  # published only where known (the worker), never in this MISSING_* record
DEAD_LETTERS = [
    dead_letter_dict(b"x", Origin("t", 0, 0), "r", None, internal=internal, wall_ms=0) for internal in (False, True)
]


# Reading the contract.


def _contract() -> str:
    return CONTRACT.read_text(encoding="utf-8")


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def _section(title: str) -> str:
    """The text under the heading `title` up to the next heading of the same or a higher level."""
    lines = _contract().splitlines()
    for start, line in enumerate(lines):
        match = re.fullmatch(r"(#+) (.*)", line)
        if match and match.group(2) == title:
            level = len(match.group(1))
            end = next(
                (i for i in range(start + 1, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[i])),
                len(lines),
            )
            return "\n".join(lines[start + 1 : end])
    raise AssertionError(f"docs/CONTRACT.md has no section {title!r}")


def _rows(title: str) -> list[list[str]]:
    """The body rows of the first table of a section, as lists of cells."""
    table: list[list[str]] = []
    for line in _section(title).splitlines():
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif table:
            break
    assert len(table) > 2, f"section {title!r} has no table"
    return [row for row in table[1:] if not all(re.fullmatch(r":?-+:?", cell) for cell in row)]


def _keyed(title: str) -> dict[str, list[str]]:
    """Table rows by the backticked name in their first cell."""
    rows: dict[str, list[str]] = {}
    for row in _rows(title):
        names = _TICKED.findall(row[0])
        assert len(names) == 1, f"{title}: first cell should name one thing: {row[0]!r}"
        assert names[0] not in rows, f"{title}: {names[0]} twice"
        rows[names[0]] = row
    return rows


# Reason codes.


def test_the_code_defines_every_reason_code_it_emits() -> None:
    assert len(REASON_CODES) == 17, REASON_CODES
    assert set(REASON_CODES) >= rules.REJECTING
    assert {f"MISSING_{kind.upper()}" for kind in DOC_KINDS} <= set(REASON_CODES)  # built by name in decisions.py
    schema = json.loads((SCHEMAS / "declaration.schema.json").read_text(encoding="utf-8"))
    assert sorted(schema["properties"]["reasons"]["items"]["enum"]) == REASON_CODES


@pytest.mark.parametrize("code", REASON_CODES)
def test_every_reason_code_is_in_the_contract_with_its_status(code: str) -> None:
    rows = _keyed("Reason codes")
    assert code in rows, f"docs/CONTRACT.md, Reason codes: no row for {code}"
    expected = "REJECTED" if code in rules.REJECTING else "REVIEW"
    assert _TICKED.findall(rows[code][-1]) == [expected], rows[code]


def test_the_reason_table_names_no_code_the_code_lacks() -> None:
    table = _keyed("Reason codes")
    assert sorted(table) == REASON_CODES
    named = {name for row in table.values() for cell in row for name in _UPPER.findall(cell)}
    assert named <= set(REASON_CODES) | set(STATUSES), sorted(named - set(REASON_CODES) - set(STATUSES))


# Statuses.


def test_the_code_has_four_statuses_each_with_a_return_code() -> None:
    assert set(STATUSES) == set(RETURN_STATUS) and len(STATUSES) == 4
    assert sorted(RELEASE_STATUSES) == ["INSPECTION", "RELEASED"]


@pytest.mark.parametrize("status", STATUSES)
def test_every_status_is_in_the_contract_with_its_return_code_and_topic(status: str) -> None:
    rows = _keyed("Statuses and return codes")
    assert status in rows, f"docs/CONTRACT.md, Statuses and return codes: no row for {status}"
    row = rows[status]
    assert int(row[1]) == RETURN_STATUS[status], row
    assert row[2] == ("matched" if status in RELEASE_STATUSES else "flagged"), row


def test_the_status_table_names_no_status_or_code_the_code_lacks() -> None:
    table = _keyed("Statuses and return codes")
    assert sorted(table) == sorted(STATUSES)
    named = {name for row in table.values() for cell in row for name in _UPPER.findall(cell)}
    assert named <= set(REASON_CODES) | set(STATUSES), sorted(named - set(REASON_CODES) - set(STATUSES))


# Topics.


@pytest.mark.parametrize("field", TOPIC_FIELDS, ids=[f.name for f in TOPIC_FIELDS])
def test_every_default_topic_is_in_the_contract_with_its_setting_and_retention(field: Any) -> None:
    rows = _keyed("Topics and keys")
    name = field.default
    assert name in rows, f"docs/CONTRACT.md, Topics and keys: no row for {name}"
    row = rows[name]
    assert _TICKED.findall(row[1]) == [f"CLEARANCE_{field.name.upper()}"], row
    retention = {s.name: s.config.get("retention.ms") for s in topic_specs(Settings())}[name]
    days = re.fullmatch(r"(\d+) days?", row[3])
    assert days is not None and int(days.group(1)) * _DAY_MS == int(retention or 0), (row, retention)


def test_the_contract_names_no_topic_the_settings_lack() -> None:
    defaults = {f.default for f in TOPIC_FIELDS}
    assert set(_keyed("Topics and keys")) == defaults
    named = set(re.findall(r"`(clearance\.[a-z][a-z.]*)`", _contract()))
    assert named <= defaults, sorted(named - defaults)


# Settings and regimes.


def test_the_regime_table_matches_the_code() -> None:
    rows = _keyed("Regimes and defaults")
    assert set(rows) == set(REGIMES)
    for name, (_, single, annual, rate) in rows.items():
        regime = REGIMES[name]
        assert _fen(single) == regime.single_limit_fen, (name, single)
        assert _fen(annual) == regime.annual_limit_fen, (name, annual)
        assert Decimal(rate.removesuffix("%")) / 100 == regime.tax_rate, (name, rate)
    assert Settings().regime == "2019" and "`2019` (the default)" in _section("Regimes and defaults")


def _fen(cell: str) -> int:
    return int(Decimal(cell.removeprefix("CNY ").replace(",", "")) * 100)


def _defaults_table() -> list[list[str]]:
    section = _section("Regimes and defaults")
    second = section.index("| setting |")
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section[second:].splitlines()[2:]
        if line.startswith("|")
    ]


def test_the_defaults_table_matches_the_settings() -> None:
    defaults = {f.name: f.default for f in fields(Settings)}
    seen = set()
    for setting, value, _ in _defaults_table():
        name = _TICKED.findall(setting)[0].removeprefix("CLEARANCE_").lower()
        assert name in defaults, f"docs/CONTRACT.md names a setting the code lacks: {setting}"
        text = _TICKED.findall(value)[0]
        default = defaults[name]
        assert (float(text) if isinstance(default, float) else type(default)(text)) == default, (setting, value)
        seen.add(name)
    assert {"regime", "window_hours", "retention_days", "idle_seconds", "inspection_rate", "inspection_seed"} <= seen
    assert Settings().rules().window_ms == 24 * 3_600_000 and Settings().rules().retention_ms == 7 * _DAY_MS


def test_every_setting_the_contract_names_exists() -> None:
    names = {"KAFKA_BOOTSTRAP"} | {f"CLEARANCE_{f.name.upper()}" for f in fields(Settings)}
    named = set(re.findall(r"\b(CLEARANCE_[A-Z_]*[A-Z])\b", _contract()))
    assert named <= names, sorted(named - names)


def test_the_positive_list_codes_the_contract_names_are_shipped() -> None:
    named = set(re.findall(r"`(\d{8})`", _section("Reason codes")))
    assert len(named) == 8
    shipped = load_positive_list(DEFAULT_POSITIVE_LIST)
    assert named <= shipped, sorted(named - shipped)
    assert not any(code.startswith(("93", "2402")) for code in shipped)


# Records.


def test_the_declaration_table_lists_exactly_the_published_fields() -> None:
    table = _keyed("The declaration")
    published = DECLARATION_FIELDS | OPTIONAL_FIELDS
    assert set(table) == published, sorted(set(table) ^ published)
    schema = json.loads((SCHEMAS / "declaration.schema.json").read_text(encoding="utf-8"))
    assert set(schema["properties"]) == published
    assert set(schema["required"]) == DECLARATION_FIELDS
    for name in OPTIONAL_FIELDS:
        assert "optional" in table[name][1], table[name]


def test_the_dead_letter_table_lists_exactly_the_published_fields() -> None:
    keys = set(DEAD_LETTERS[0])
    table = _keyed("Dead letters")
    assert set(table) == keys, sorted(set(table) ^ keys)
    errors = {record["error"] for record in DEAD_LETTERS}
    assert set(_UPPER.findall(table["error"][1])) == errors


def test_every_upper_case_name_in_the_contract_is_one_the_code_has() -> None:
    known = set(REASON_CODES) | set(STATUSES) | {record["error"] for record in DEAD_LETTERS}
    known |= {"KAFKA_BOOTSTRAP"} | {f"CLEARANCE_{f.name.upper()}" for f in fields(Settings)}
    named = set(_UPPER.findall(_contract()))
    constants = {name for name in named if any(hasattr(module, name) for module in (rules, records, config))}
    assert named - constants <= known, sorted(named - constants - known)


# Schemas.

SCHEMA_FILES = sorted(p.name for p in SCHEMAS.glob("*.schema.json"))


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_schema_is_named_in_the_contract(name: str) -> None:
    assert f"../schemas/{name}" in _contract(), f"docs/CONTRACT.md does not link schemas/{name}"


def test_the_contract_names_no_schema_that_does_not_exist() -> None:
    named = set(re.findall(r"[\w-]+\.schema\.json", _contract()))
    assert named == set(SCHEMA_FILES), sorted(named ^ set(SCHEMA_FILES))


# Links: a fresh clone has every file a document points to.


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for match in re.finditer(r"^#{1,6} +(.+?) *#*$", _without_code_blocks(path.read_text(encoding="utf-8")), re.M):
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return anchors


def _links(path: Path) -> list[str]:
    text = _without_code_blocks(path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links (the link text may hold one)
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    reference = re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", text, re.M)
    return inline + reference


def test_the_link_parser_finds_links() -> None:
    readme = _links(ROOT / "README.md")
    assert "docs/CONTRACT.md" in readme and "schemas/README.md" in readme


@pytest.mark.parametrize("path", MARKDOWN, ids=[str(p.relative_to(ROOT)) for p in MARKDOWN])
def test_no_dead_relative_link(path: Path) -> None:
    dead = [link for link in _links(path) if _is_dead(path, link)]
    assert not dead, f"{path.relative_to(ROOT)}: dead links {dead}"


def _is_dead(source: Path, link: str) -> bool:
    """A relative link to a file outside the repository or absent, or to a heading the file lacks."""
    if re.match(r"[a-z][a-z0-9+.-]*:", link, re.I):  # https:, mailto:, ...: not ours to check
        return False
    target_text, _, fragment = link.partition("#")
    target = (source.parent / target_text).resolve() if target_text else source
    if not target.is_relative_to(ROOT) or not target.exists():
        return True
    return bool(fragment) and target.suffix == ".md" and fragment not in _anchors(target)


_OUTSIDE_CONTRACT = ".".join(("DOMAIN", "md"))  # built, so this file does not name it


def test_nothing_points_to_the_product_owners_file_outside_the_repository() -> None:
    sources = [*MARKDOWN]
    for package in ("pipeline", "clearance", "agents", "embedded", "tracegen", "ops", "benchmarks", "scripts", "tests"):
        sources += sorted((ROOT / package).rglob("*.py"))
    naming = [str(p.relative_to(ROOT)) for p in sources if _OUTSIDE_CONTRACT in p.read_text(encoding="utf-8")]
    assert not naming, f"name docs/CONTRACT.md instead in {naming}"
