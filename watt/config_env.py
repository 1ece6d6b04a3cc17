"""Per-environment settings: ``watt.json`` plus an overlay ``watt.<env>.json``.

The environment is named by ``--env`` (``watt start/dev/config``) or the
``WATT_ENV`` variable (also read from the ``.env`` beside the config file).
Its overlay sits beside the base file, with the base file's stem:
``watt.production.json`` or ``watt.production.toml`` for ``watt.json``.

The overlay is merged into the base *before* placeholders are filled and
types are checked, so it may set any key the schema allows, and a mistake in
it is reported like one in the base file, but with the overlay's file, line
and key path.  Merge rules (pure, tested without any file):

- objects merge key by key, recursively;
- ``applications`` merges by ``id``: an overlay entry with the id of a base
  entry is merged into it, a new id is appended;
- every other array, and any value whose type differs, is replaced;
- ``null`` replaces too (``"telemetry": null`` turns a section off).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from watt.errors import ConfigError

ENV_VARIABLE = "WATT_ENV"
ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: Arrays whose items merge by this key instead of being replaced.
MERGE_BY = {"applications": "id"}

__all__ = ["ENV_VARIABLE", "MERGE_BY", "OverlaySource", "apply_overlay", "environment_name",
           "merge", "overlay_file"]


def environment_name(explicit: str | None, environ: Mapping[str, str]) -> str | None:
    """The environment in force: ``explicit`` (``--env``), else ``WATT_ENV``; None when
    neither names one."""
    name = explicit if explicit is not None else environ.get(ENV_VARIABLE)
    if not name:
        return None
    if not ENV_NAME.match(name):
        raise ConfigError(f"environment name {name!r} is not valid: use letters, digits, "
                          "'-' and '_' (it becomes part of a file name)",
                          code="WATT_CONFIG_INVALID", key=ENV_VARIABLE)
    return name


def overlay_file(base_file: str, name: str) -> str:
    """The overlay of environment ``name`` beside ``base_file`` (``watt.<name>.json``, else
    ``.toml``); a named environment without one is an error, so that a misspelt
    ``--env`` cannot silently run the base settings."""
    folder, stem = os.path.split(base_file)
    stem = os.path.splitext(stem)[0]
    candidates = [os.path.join(folder, f"{stem}.{name}{ext}") for ext in (".json", ".toml")]
    found = [c for c in candidates if os.path.isfile(c)]
    if len(found) == 2:
        raise ConfigError(f"environment {name!r} has two overlays, {found[0]} and {found[1]}: "
                          "keep one", code="WATT_CONFIG_INVALID", file=found[0])
    if not found:
        raise ConfigError(f"environment {name!r} (--env or {ENV_VARIABLE}) has no overlay: "
                          f"looked for {' and '.join(candidates)}; create one (it may be "
                          f"`{{}}`) or unset {ENV_VARIABLE}", code="WATT_CONFIG_NOT_FOUND",
                          file=candidates[0])
    return found[0]


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def merge(base: Any, overlay: Any, *, path: str = "", origin: str = "",
          origins: dict[str, str] | None = None) -> Any:
    """``overlay`` merged into ``base`` (neither is changed).

    ``origins`` (when given) receives, for every value that came from the
    overlay, its key path in the result -> its key path in the overlay; the
    two differ where ``applications`` entries merge by id.
    """
    origins = {} if origins is None else origins
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            here, there = _join(path, key), _join(origin, key)
            by = MERGE_BY.get(key) if not path else None
            if by and isinstance(value, list) and isinstance(base.get(key), list):
                merged[key] = _merge_by(base[key], value, by, here, there, origins)
            else:
                merged[key] = merge(base.get(key), value, path=here, origin=there,
                                    origins=origins)
        return merged
    origins[path] = origin
    return overlay


def _merge_by(base: list, overlay: list, by: str, path: str, origin: str,
              origins: dict[str, str]) -> list:
    merged = list(base)
    index = {item.get(by): i for i, item in enumerate(base) if isinstance(item, dict)}
    for j, item in enumerate(overlay):
        there = f"{origin}[{j}]"
        if not isinstance(item, dict) or by not in item:
            raise _MissingId(there, by)
        i = index.get(item[by])
        if i is None and "path" not in item:  # a typo of an id, most likely
            known = [str(k) for k in index if k is not None]
            close = difflib.get_close_matches(str(item[by]), known, n=1)
            raise _MissingId(there, by, f"`{there}`: {by} {item[by]!r} names no entry of "
                             f"the base file ({', '.join(known) or 'none'}"
                             + (f"; did you mean {close[0]!r}?" if close else "")
                             + "), and a new application needs `path`")
        if i is None:  # a new entry: errors about it (a missing `path`) are the overlay's
            i = index[item[by]] = len(merged)
            merged.append({})
            origins[f"{path}[{i}]"] = there
        merged[i] = merge(merged[i], item, path=f"{path}[{i}]", origin=there, origins=origins)
    return merged


class _MissingId(Exception):
    def __init__(self, path: str, by: str, message: str | None = None) -> None:
        super().__init__(path, by)
        self.path, self.by, self.message = path, by, message


class OverlaySource:
    """Where each merged key came from: builds errors (as ``config._Source`` does) that
    name the overlay's file, line and key path for keys it set, the base's otherwise."""

    def __init__(self, base, overlay, origins: dict[str, str]) -> None:
        self.base, self.overlay, self.origins = base, overlay, origins
        self.file, self.lines = base.file, base.lines

    def error(self, code: str, key: str | None, message: str) -> ConfigError:
        probe = key or ""
        while probe and probe not in self.origins:  # the key, else its nearest parent
            probe = probe[: max(probe.rfind("."), probe.rfind("["), 0)]
        if not probe or key is None:
            return self.base.error(code, key, message)
        there = self.origins[probe] + key[len(probe):]
        return self.overlay.error(code, there, message.replace(f"`{key}`", f"`{there}`"))


def apply_overlay(raw: Any, src, environment: str | None, environ: Mapping[str, str],
                  read: Callable[[str], tuple[Any, dict[str, int]]],
                  make_source: Callable[[str, dict[str, int]], Any]) -> tuple[Any, Any]:
    """The hook of :func:`watt.config.load_config`: ``(raw, src)`` with the overlay of the
    environment in force merged in, or unchanged when none is named.

    ``read`` parses a config file into ``(raw, key path -> line)``; ``make_source``
    builds config.py's error source for a file.
    """
    name = environment_name(environment, environ)
    if name is None:
        return raw, src
    file = overlay_file(src.file, name)
    data, lines = read(file)
    overlay_src = make_source(file, lines)
    if not isinstance(data, dict):
        raise overlay_src.error("WATT_CONFIG_INVALID_TYPE", None,
                                "an environment overlay must be an object")
    origins: dict[str, str] = {}
    try:
        merged = merge(raw if isinstance(raw, dict) else {}, data, origins=origins)
    except _MissingId as exc:
        if exc.message:  # a new entry without `path`
            raise overlay_src.error("WATT_CONFIG_MISSING_KEY", _join(exc.path, "path"),
                                    exc.message) from None
        raise overlay_src.error("WATT_CONFIG_MISSING_KEY", _join(exc.path, exc.by),
                                f"`{exc.path}` has no `{exc.by}`: overlay entries of "
                                "`applications` are matched to the base file's by id") from None
    return merged, OverlaySource(src, overlay_src, origins)
