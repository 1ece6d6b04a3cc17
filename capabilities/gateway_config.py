"""The gateway's pure parts: ``watt.gateway.json`` validation, route matching, header
rewrites and the OpenAPI merge.  No I/O beyond reading the file, so they are tested
without a runtime; ``capabilities/gateway.py`` is the thin ASGI layer around them.

Standard library only (it loads in the gateway's subinterpreter).
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field

from watt.capability import CapabilityError

CONFIG_FILE = "watt.gateway.json"
CODE = "WATT_GATEWAY_CONFIG_INVALID"
_ID = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_TOP_KEYS = {"$schema", "routes", "openapi"}
_ROUTE_KEYS = {"prefix", "to", "stripPrefix", "requestHeaders", "responseHeaders", "openapi"}
_REWRITE_KEYS = {"set", "add", "remove"}
_OPENAPI_KEYS = {"path", "title", "version"}


@dataclass(frozen=True)
class HeaderRewrite:
    """Applied in this order: ``remove`` names, ``set`` (replace), ``add`` (append)."""

    remove: frozenset = frozenset()
    set: tuple = ()  # (name bytes, value bytes)
    add: tuple = ()

    def apply(self, headers) -> list:
        if not (self.remove or self.set or self.add):
            return list(headers)
        drop = self.remove | {name for name, _ in self.set}
        out = [(k, v) for k, v in headers if k.lower() not in drop]
        return out + list(self.set) + list(self.add)


@dataclass(frozen=True)
class Route:
    prefix: str
    to: str
    strip: bool
    request: HeaderRewrite = field(default_factory=HeaderRewrite)
    response: HeaderRewrite = field(default_factory=HeaderRewrite)
    #: where the app publishes its OpenAPI document; None: not merged
    openapi: str | None = "/openapi.json"

    def matches(self, path: str) -> bool:
        if self.prefix == "/":
            return True
        return path == self.prefix or path.startswith(self.prefix + "/")

    def target_path(self, raw_path: bytes) -> bytes:
        """The path the application sees: the prefix cut off when ``strip``."""
        if not self.strip or self.prefix == "/":
            return raw_path
        rest = raw_path[len(self.prefix):]
        return rest if rest.startswith(b"/") else b"/" + rest

    def public_path(self, app_path: str) -> str:
        """An application's own path as clients of the gateway see it."""
        if not self.strip or self.prefix == "/":
            return app_path
        return self.prefix + ("" if app_path == "/" else app_path)


@dataclass(frozen=True)
class GatewayConfig:
    routes: tuple  # longest prefix first
    openapi_path: str | None = "/openapi.json"
    title: str = "Watt gateway"
    version: str = "1.0.0"

    def route(self, path: str) -> Route | None:
        for route in self.routes:
            if route.matches(path):
                return route
        return None


def _fail(file: str, key: str, message: str):
    raise CapabilityError(f"gateway: {file}: `{key}` {message}", code=CODE)


def read_config(folder: str, self_id: str | None = None) -> GatewayConfig:
    """Parse and validate ``<folder>/watt.gateway.json`` (of the application
    ``self_id``, which no route may target: it would call itself forever)."""
    full = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(full):
        raise CapabilityError(f"gateway: no {CONFIG_FILE} in {folder} (it lists the routes)",
                              code=CODE)
    try:
        with open(full, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise CapabilityError(f"gateway: {full}: not valid JSON: {exc}", code=CODE) from None
    return parse_config(data, full, self_id)


def parse_config(data, file: str = CONFIG_FILE, self_id: str | None = None) -> GatewayConfig:
    """A :class:`GatewayConfig` from the decoded JSON; every mistake is a
    ``WATT_GATEWAY_CONFIG_INVALID`` CapabilityError naming ``file`` and the key."""
    if not isinstance(data, dict):
        _fail(file, "(top level)", "must be a JSON object")
    _unknown(file, "", data, _TOP_KEYS)
    routes = data.get("routes")
    if not isinstance(routes, list) or not routes:
        _fail(file, "routes", "must be a non-empty list of {\"prefix\", \"to\"} objects")
    parsed, seen = [], set()
    for i, item in enumerate(routes):
        route = _route(file, f"routes[{i}]", item)
        if self_id is not None and route.to == self_id:
            _fail(file, f"routes[{i}].to", f"names the gateway itself ({self_id!r}): its "
                                           "requests would come back to it forever")
        if route.prefix in seen:
            _fail(file, f"routes[{i}].prefix", f"repeats the prefix {route.prefix!r}")
        seen.add(route.prefix)
        parsed.append(route)
    parsed.sort(key=lambda r: -len(r.prefix))
    openapi = data.get("openapi", {})
    if openapi is False:
        return GatewayConfig(tuple(parsed), openapi_path=None)
    if not isinstance(openapi, dict):
        _fail(file, "openapi", "must be false or an object {path, title, version}")
    _unknown(file, "openapi.", openapi, _OPENAPI_KEYS)
    path = openapi.get("path", "/openapi.json")
    if not isinstance(path, str) or not path.startswith("/"):
        _fail(file, "openapi.path", f"must be a path starting with '/', not {path!r}")
    for key in ("title", "version"):
        if key in openapi and not isinstance(openapi[key], str):
            _fail(file, f"openapi.{key}", "must be a string")
    return GatewayConfig(tuple(parsed), openapi_path=path,
                         title=openapi.get("title", "Watt gateway"),
                         version=openapi.get("version", "1.0.0"))


def _unknown(file: str, where: str, obj: dict, allowed: set) -> None:
    for key in obj:
        if key not in allowed:
            _fail(file, f"{where}{key}",
                  f"is not a known key (expected one of {', '.join(sorted(allowed))})")


def _route(file: str, where: str, item) -> Route:
    if not isinstance(item, dict):
        _fail(file, where, "must be an object {\"prefix\": \"/api\", \"to\": \"<app id>\"}")
    _unknown(file, f"{where}.", item, _ROUTE_KEYS)
    prefix = item.get("prefix")
    if not isinstance(prefix, str) or not prefix.startswith("/") or "?" in prefix \
            or "#" in prefix or "//" in prefix:
        _fail(file, f"{where}.prefix", f"must be a path such as '/api', not {prefix!r}")
    if prefix != "/":
        prefix = prefix.rstrip("/")
    to = item.get("to")
    if not isinstance(to, str) or not _ID.match(to):
        _fail(file, f"{where}.to", f"must be an application id (lowercase letters, digits, "
                                   f"'-'), not {to!r}")
    strip = item.get("stripPrefix", True)
    if not isinstance(strip, bool):
        _fail(file, f"{where}.stripPrefix", f"must be true or false, not {strip!r}")
    openapi = item.get("openapi", True)
    if openapi is True:
        openapi = "/openapi.json"
    elif openapi is False:
        openapi = None
    elif not isinstance(openapi, str) or not openapi.startswith("/"):
        _fail(file, f"{where}.openapi", "must be true, false or the path of the app's "
                                        f"document (such as '/schema/openapi.json'), not "
                                        f"{openapi!r}")
    return Route(prefix, to, strip,
                 _rewrite(file, f"{where}.requestHeaders", item.get("requestHeaders")),
                 _rewrite(file, f"{where}.responseHeaders", item.get("responseHeaders")),
                 openapi)


def _rewrite(file: str, where: str, value) -> HeaderRewrite:
    if value is None:
        return HeaderRewrite()
    if not isinstance(value, dict):
        _fail(file, where, "must be an object {set, add, remove}")
    _unknown(file, f"{where}.", value, _REWRITE_KEYS)
    remove = value.get("remove", [])
    if not isinstance(remove, list) or not all(isinstance(n, str) for n in remove):
        _fail(file, f"{where}.remove", "must be a list of header names")
    for n in remove:
        _name(file, f"{where}.remove", n)
    pairs = {}
    for kind in ("set", "add"):
        mapping = value.get(kind, {})
        if not isinstance(mapping, dict):
            _fail(file, f"{where}.{kind}", "must be an object {header name: value}")
        out = []
        for name, text in mapping.items():
            _name(file, f"{where}.{kind}.{name}", name)
            if not isinstance(text, str) or "\r" in text or "\n" in text or "\0" in text:
                _fail(file, f"{where}.{kind}.{name}", "must be a string without CR, LF or NUL")
            try:
                out.append((name.lower().encode("latin-1"), text.encode("latin-1")))
            except UnicodeEncodeError:
                _fail(file, f"{where}.{kind}.{name}", "must be Latin-1 text")
        pairs[kind] = tuple(out)
    return HeaderRewrite(frozenset(n.lower().encode() for n in remove), pairs["set"],
                         pairs["add"])


def _name(file: str, key: str, name: str) -> None:
    if not _TOKEN.match(name):
        _fail(file, key, f"{name!r} is not a valid header name")


# -- OpenAPI -----------------------------------------------------------------------------
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def merge_openapi(sources: list, title: str, version: str) -> dict:
    """One document from ``[(route, document), ...]``: each document's paths as the
    gateway serves them (prefix added when the route strips it), its components
    merged, a name taken by a different definition renamed ``<app>_<name>`` (every
    ``$ref`` of that document follows), operationIds and tags made unique."""
    merged: dict = {"openapi": "3.1.0", "info": {"title": title, "version": version},
                    "paths": {}}
    components: dict = {}
    tags: dict = {}
    operation_ids: set = set()
    for index, (route, document) in enumerate(sources):
        doc = copy.deepcopy(document)
        if index == 0 and isinstance(doc.get("openapi"), str):
            merged["openapi"] = doc["openapi"]
        renames = {}
        for section, entries in (doc.get("components") or {}).items():
            if not isinstance(entries, dict):
                continue
            taken = components.setdefault(section, {})
            for name, definition in entries.items():
                if name in taken and taken[name] != definition:
                    new = f"{route.to}_{name}"
                    while new in taken and taken[new] != definition:
                        new += "_"
                    renames[f"#/components/{section}/{name}"] = f"#/components/{section}/{new}"
        if renames:
            doc = _rename_refs(doc, renames)
        for section, entries in (doc.get("components") or {}).items():
            if not isinstance(entries, dict):
                continue
            taken = components.setdefault(section, {})
            for name, definition in entries.items():
                ref = f"#/components/{section}/{name}"
                target = renames.get(ref, ref).rsplit("/", 1)[1]
                taken.setdefault(target, definition)
        for path, item in (doc.get("paths") or {}).items():
            public = route.public_path(path)
            if public in merged["paths"] or not isinstance(item, dict):
                continue  # an earlier (longer-prefix) route already serves it
            for method in _METHODS:
                operation = item.get(method)
                if isinstance(operation, dict) and "operationId" in operation:
                    op_id = operation["operationId"]
                    if op_id in operation_ids:
                        op_id = operation["operationId"] = f"{route.to}_{op_id}"
                    operation_ids.add(op_id)
            merged["paths"][public] = item
        for tag in doc.get("tags") or ():
            if isinstance(tag, dict) and "name" in tag:
                tags.setdefault(tag["name"], tag)
    if components:
        merged["components"] = components
    if tags:
        merged["tags"] = list(tags.values())
    return merged


def _rename_refs(node, renames: dict):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value in renames:
                out[key] = renames[value]
            elif key == "components" and isinstance(value, dict):
                out[key] = {section: ({renames.get(f"#/components/{section}/{name}",
                                                   f"//{name}").rsplit("/", 1)[1]:
                                       _rename_refs(d, renames) for name, d in entries.items()}
                                      if isinstance(entries, dict) else entries)
                            for section, entries in value.items()}
            else:
                out[key] = _rename_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node
