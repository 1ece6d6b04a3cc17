"""Every error code the code can raise is catalogued and documented."""

from __future__ import annotations

import re

from support import ROOT

from watt.errors import CODES

# Strings that look like codes but are not error codes.
NOT_CODES = {"WATT_CONFIG", "WATT_WORKER_SPEC", "WATT_SPIN",  # prefixes and env vars
             "WATT_ENV", "WATT_BREAKPOINT", "WATT_DEBUGPY"}


def _codes_in_source() -> set[str]:
    found = set()
    for folder in ("watt", "capabilities"):
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(re.findall(r'"(WATT_[A-Z_]+)"', path.read_text()))
    return found - NOT_CODES


def test_every_code_used_is_in_the_catalogue():
    assert _codes_in_source() - set(CODES) == set()


def test_every_catalogued_code_is_documented():
    from watt.errors import markdown

    text = (ROOT / "docs" / "errors.md").read_text()
    assert [code for code in CODES if f"`{code}`" not in text] == []
    assert text == markdown(), "docs/errors.md is stale: python -m watt.errors > docs/errors.md"


def test_readme_quick_start_is_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```", 2)[1]
    assert [line for line in block.splitlines()[1:] if line.strip()] == ["make run", "make test"]


def test_every_config_key_is_documented():
    from watt.config import generate_schema

    schema = generate_schema()
    keys = set(schema["properties"])
    for definition in schema["$defs"].values():
        keys |= set(definition.get("properties", {}))
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert sorted(k for k in keys if f"`{k}`" not in text) == []
