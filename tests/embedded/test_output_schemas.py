"""What the runner publishes validates against the published schemas."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator

from clearance.settings import Settings
from embedded.runner import run_trace

ROOT = Path(__file__).resolve().parents[2]


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((ROOT / "schemas" / name).read_text(encoding="utf-8")))


def test_declarations_and_dead_letters_follow_the_schemas(tmp_path: Path) -> None:
    run_trace(ROOT / "samples" / "small", tmp_path, Settings().rules())
    declaration, dead_letter = _validator("declaration.schema.json"), _validator("deadletter.schema.json")
    counts = {}
    for name, validator in (
        ("matched.jsonl", declaration),
        ("flagged.jsonl", declaration),
        ("deadletter.jsonl", dead_letter),
    ):
        lines = (tmp_path / name).read_text(encoding="utf-8").splitlines()
        for line in lines:
            errors = [e.message for e in validator.iter_errors(json.loads(line))]
            assert errors == [], (name, line[:200])
        counts[name] = len(lines)
    assert counts == {"matched.jsonl": 1, "flagged.jsonl": 4, "deadletter.jsonl": 6}
