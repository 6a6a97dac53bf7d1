"""docs/architecture.md's contract section stays in step with the contract's code."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import TypeAdapter

from iot_contract import Reading, RejectReason

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _contract_section() -> str:
    text = DOC.read_text()
    start = text.index("## The wire contract")
    return text[start : text.index("\n## ", start + 1)]


def test_reject_reason_table_lists_every_reason_in_order() -> None:
    documented = re.findall(r"^\s*\| `([a-z_]+)` \|", _contract_section(), re.MULTILINE)
    assert documented == [reason.value for reason in RejectReason]


def test_every_reading_field_is_documented() -> None:
    section = _contract_section()
    reading = section[section.index("- **Reading**") : section.index("- **Prediction**")]
    assert [f for f in Reading.model_fields if f"`{f}`" not in reading] == []


def test_the_reading_schema_documents_the_boot_id() -> None:
    boot = TypeAdapter(Reading).json_schema()["properties"]["boot"]
    assert "every time the device starts" in boot["description"]
