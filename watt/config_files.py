"""Reading a configuration file: where it is, its data, and the line of every key.

Errors in a config name the file and the line of the key at fault, so reading
keeps a map from each key path (``applications[0].id``) to its line, for JSON
and TOML alike.  :mod:`watt.config` validates what this reads.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from watt.errors import ConfigError

CONFIG_FILES = ("watt.json", "watt.toml")


def find_file(path: Path) -> str:
    found = [path / n for n in CONFIG_FILES if (path / n).is_file()] if path.is_dir() else [path]
    if not found or not found[0].is_file():
        what = f"no {' or '.join(CONFIG_FILES)} in folder" if path.is_dir() else "no such file"
        raise ConfigError(f"{what} {path}", code="WATT_CONFIG_NOT_FOUND", file=str(path))
    return os.path.abspath(found[0])


def read_file(file: str) -> tuple[Any, dict[str, int]]:
    data = Path(file).read_bytes()
    if file.endswith(".toml"):
        try:
            text = data.decode("utf-8")
            return tomllib.loads(text), toml_lines(text)
        except UnicodeDecodeError as exc:
            raise syntax_error(file, data.count(b"\n", 0, exc.start) + 1, "not UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"line (\d+)", str(exc))
            line = getattr(exc, "lineno", None) or (int(found[1]) if found else None)
            raise syntax_error(file, line, f"invalid TOML: {exc}") from None
    if file.endswith(".json"):
        try:
            raw = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            found = re.search(r"\(byte (\d+)\)", str(exc))
            offset = int(found[1]) if found else len(data.rstrip())
            line = data.count(b"\n", 0, offset) + 1
            raise syntax_error(file, line, f"invalid JSON: {exc}") from None
        return raw, json_lines(data.decode("utf-8", errors="replace"))
    raise ConfigError("a configuration file ends in .json or .toml", file=file)


def syntax_error(file: str, line: int | None, message: str) -> ConfigError:
    return ConfigError(message, code="WATT_CONFIG_SYNTAX", file=file, line=line)


def join_path(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def json_lines(text: str) -> dict[str, int]:
    """Line of every key path in already-validated JSON text."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    lines: dict[str, int] = {}

    def ws(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def string_end(i: int) -> int:
        i += 1
        while text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        return i + 1

    def value(i: int, path: str) -> int:
        i = ws(i)
        if text[i] in "{[":
            close, index = ("}" if text[i] == "{" else "]"), 0
            i = ws(i + 1)
            while text[i] != close:  # a member's line is its key's, an item's is its start
                if close == "}":
                    end = string_end(i)
                    key = join_path(path, json.loads(text[i:end]))
                    lines.setdefault(key, bisect.bisect_right(starts, i))
                    i = value(ws(end) + 1, key)
                else:
                    lines.setdefault(key := f"{path}[{index}]", bisect.bisect_right(starts, i))
                    i, index = value(i, key), index + 1
                i = ws(i)
                i = ws(i + 1) if text[i] == "," else i
            return i + 1
        if text[i] == '"':
            return string_end(i)
        while i < len(text) and text[i] not in ",]} \t\r\n":
            i += 1
        return i

    value(0, "")
    return lines


def toml_lines(text: str) -> dict[str, int]:
    """Line of every key path in TOML text: a heuristic over headers and ``key =``."""
    lines: dict[str, int] = {}
    tables: dict[str, int] = {}  # array-of-tables path -> count so far
    prefix, in_string = "", False

    def segments(dotted: str) -> list[str]:
        return [s.strip().strip("\"'") for s in dotted.split(".")]

    for number, line in enumerate(text.splitlines(), 1):
        was_in_string = in_string
        if (line.count('"""') + line.count("'''")) % 2:
            in_string = not in_string
        if was_in_string:
            continue
        header = re.match(r"\s*(\[\[?)\s*([\w\-.\"' $]+?)\s*\]\]?\s*(#.*)?$", line)
        if header:
            prefix, names = "", segments(header[2])
            for i, name in enumerate(names):
                prefix = join_path(prefix, name)
                if header[1] == "[[" and i == len(names) - 1:  # a new array-of-tables entry
                    tables[prefix] = tables.get(prefix, 0) + 1
                if prefix in tables:
                    prefix = f"{prefix}[{tables[prefix] - 1}]"
            lines.setdefault(prefix, number)
            continue
        assignment = re.match(r"\s*([A-Za-z0-9_\-.\"'$ ]+?)\s*=", line)
        if assignment:
            key = prefix
            for seg in segments(assignment[1]):
                key = join_path(key, seg)
                lines.setdefault(key, number)
    return lines
