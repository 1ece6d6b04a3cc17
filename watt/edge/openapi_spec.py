"""An OpenAPI 3.0/3.1 document compiled once into what the edge checks per request.

:func:`compile_spec` turns each operation's parameters (path, query, header) and
JSON request body into validators made by jsonschema-rs (a Rust JSON Schema
validator: compiled once, then a valid value costs well under a microsecond,
where the pure-Python ``jsonschema`` costs tens; it handles JSON Schema 2020-12,
OpenAPI 3.1's dialect, and draft 4, 3.0's, and never fetches remote ``$ref``s
with ``offline=True``).  :meth:`Spec.find` matches a request to its operation;
:meth:`Operation.check` and :meth:`Operation.check_body` list the violations as
``{"in", "name" or "pointer", "detail"}`` dicts.  No I/O: tested with plain
documents, no server.

Parameters arrive as text, so each is first read as the type its schema allows
(integer, number, boolean, array of them), as the frameworks do (leniently:
``1``/``yes``/``on`` are booleans, as pydantic reads them), then validated.
``format`` is not asserted: frameworks differ on what they accept (a date-time
without an offset, say), and the edge must never refuse what the application
takes.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote, unquote_plus

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "f", "n"})
_INT = re.compile(r"^\s*[-+]?\d+\s*$")
#: Headers OpenAPI says parameter definitions must not describe.
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
#: Violations listed at most per request.
MAX_VIOLATIONS = 20


class SpecError(ValueError):
    """The document cannot be used (not OpenAPI 3, a schema that does not compile)."""


def _is_json(media: str) -> bool:
    media = media.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


def _nullable_to_type(node):
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema says it (``type`` with null)."""
    if isinstance(node, list):
        return [_nullable_to_type(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_type(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "type" not in out and "$ref" in out:
            out = {"anyOf": [{"$ref": out.pop("$ref")}, {"type": "null"}], **out}
    return out


class _Compiler:
    def __init__(self, doc: dict) -> None:
        import jsonschema_rs

        version = str(doc.get("openapi", ""))
        if not version.startswith("3."):
            raise SpecError(f"not an OpenAPI 3 document (openapi: {version or 'missing'!r})")
        self.v30 = version.startswith("3.0")
        if self.v30:
            doc = _nullable_to_type(doc)
        self.doc = doc
        self.components = doc.get("components") or {}
        self.lib = jsonschema_rs

    def resolve(self, node):
        """Follow a local ``$ref`` (``#/components/...``) to what it names."""
        seen = 0
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 32:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise SpecError(f"only local $ref are supported, not {ref!r}")
            node = self.doc
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(node, dict) or part not in node:
                    raise SpecError(f"$ref {ref!r} names nothing in the document")
                node = node[part]
            seen += 1
        return node

    def validator(self, schema):
        root = {"allOf": [schema], "components": self.components}
        try:
            if self.v30:
                return self.lib.Draft4Validator(root, validate_formats=False)
            return self.lib.Draft202012Validator(root, validate_formats=False)
        except (ValueError, self.lib.ReferencingError) as exc:
            raise SpecError(f"a schema does not compile: {exc}") from None

    def types(self, schema, depth: int = 0) -> frozenset:
        """The JSON types a schema lets a value have (through $ref, anyOf, oneOf, allOf)."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict) or depth > 8:
            return frozenset()
        kind = schema.get("type")
        found = set([kind] if isinstance(kind, str) else kind or ())
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key) or ():
                found |= self.types(sub, depth + 1)
        if "const" in schema or "enum" in schema:
            for value in schema.get("enum", [schema.get("const")]):
                found.add(_json_type(value))
        return frozenset(found)

    def items(self, schema):
        schema = self.resolve(schema)
        for sub in [schema, *(schema.get("anyOf") or ()), *(schema.get("oneOf") or ())]:
            sub = self.resolve(sub)
            if isinstance(sub, dict) and "items" in sub:
                return sub["items"]
        return {}


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "null" if value is None else "string"


def _coerce(raw: str, types: frozenset):
    """Text read as the type the schema allows, as frameworks read parameters."""
    if "integer" in types and _INT.match(raw):
        return int(raw)
    if "number" in types:
        try:
            number = float(raw)
            if number == number and abs(number) != float("inf"):
                return int(number) if "integer" in types and number.is_integer() else number
        except ValueError:
            pass
    if "boolean" in types:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return raw


_BOOLS = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}


def _as_int(raw: str):
    return int(raw) if _INT.match(raw) else raw


def _as_bool(raw: str):
    return _BOOLS.get(raw.strip().lower(), raw)


def _coercer(types: frozenset):
    """:func:`_coerce` for these types, specialised for the common single-type cases;
    None when the text is taken as it is."""
    scalars = types & _SCALARS
    if not scalars:
        return None
    if scalars == {"integer"}:
        return _as_int
    if scalars == {"boolean"}:
        return _as_bool
    return lambda raw: _coerce(raw, types)


def parse_query(query: bytes) -> dict[str, list[str]]:
    """``a=1&b=x&a=2`` as ``{"a": ["1", "2"], "b": ["x"]}`` (blank values kept, as
    ``parse_qs(keep_blank_values=True)`` but without its cost when nothing is escaped)."""
    out: dict[str, list[str]] = {}
    text = query.decode("latin-1")
    escaped = "%" in text or "+" in text
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if escaped:
            name, value = unquote_plus(name), unquote_plus(value)
        values = out.get(name)
        if values is None:
            out[name] = [value]
        else:
            values.append(value)
    return out


def _errors(validator, value, limit: int) -> list:
    out = []
    for error in validator.iter_errors(value):
        out.append(("/" + "/".join(str(p) for p in error.instance_path)
                    if error.instance_path else "", error.message))
        if len(out) >= limit:
            break
    return out


_SCALARS = frozenset({"integer", "number", "boolean"})


class Parameter:
    __slots__ = ("array", "as_json", "coerce", "explode", "item_coerce", "location", "name",
                 "required", "text", "types", "validator")

    def __init__(self, spec: dict, compiler: _Compiler) -> None:
        self.location = spec["in"]
        self.name = spec["name"].lower() if self.location == "header" else spec["name"]
        self.required = bool(spec.get("required")) or self.location == "path"
        schema = spec.get("schema")
        self.as_json = schema is None and bool(spec.get("content"))
        if schema is None:  # `content` instead of `schema`: JSON in a parameter
            media = next(iter((spec.get("content") or {}).values()), {})
            schema = media.get("schema", {})
        self.types = compiler.types(schema)
        self.array = "array" in self.types and not self.as_json
        self.coerce = _coercer(self.types)
        self.item_coerce = _coercer(compiler.types(compiler.items(schema))) if self.array \
            else None
        self.text = not (self.array or self.as_json or self.coerce)  # taken as it is
        self.explode = spec.get("explode", spec.get("style", "form") == "form")
        self.validator = compiler.validator(schema)

    def value(self, raws: list):
        if self.text:
            return raws[0]
        if self.as_json:
            try:
                return json.loads(raws[0])
            except ValueError:
                return raws[0]
        if self.array:
            if not self.explode or self.location in ("header", "path"):
                raws = [part for raw in raws for part in raw.split(",")]
            coerce = self.item_coerce
            return [coerce(raw) for raw in raws] if coerce is not None else raws
        return self.coerce(raws[0])


class Operation:
    """One method of one path, with what its requests must be."""

    __slots__ = ("body_required", "body_validator", "json_only", "method", "params", "template")

    def __init__(self, template: str, method: str, op: dict, shared: list,
                 compiler: _Compiler) -> None:
        self.template = template
        self.method = method.upper()
        declared = {}
        for spec in [*shared, *(op.get("parameters") or ())]:
            spec = compiler.resolve(spec)
            if spec.get("in") in ("path", "query", "header") and "name" in spec:
                if spec["in"] == "header" and spec["name"].lower() in _IGNORED_HEADERS:
                    continue
                declared[(spec["in"], spec["name"])] = spec  # the operation's win
        params = [Parameter(spec, compiler) for spec in declared.values()]
        # An object spread over several query keys (form, deepObject) is not one value
        # here: left to the application rather than refused wrongly.
        self.params = [p for p in params if p.as_json or "object" not in p.types]
        self.body_validator = None
        self.body_required = False
        self.json_only = False
        body = compiler.resolve(op.get("requestBody")) if op.get("requestBody") else None
        if body:
            content = body.get("content") or {}
            json_media = [m for m in content if _is_json(m)]
            if json_media:
                self.body_validator = compiler.validator(
                    content[json_media[0]].get("schema", {}))
                self.body_required = bool(body.get("required"))
                self.json_only = len(json_media) == len(content)

    def check(self, path_params: dict, query: bytes, headers: list) -> list:
        """The violations of the path parameters, query and headers."""
        problems: list = []
        parsed = None
        for param in self.params:
            location = param.location
            if location == "path":
                raws = [path_params[param.name]] if param.name in path_params else []
            elif location == "query":
                if parsed is None:
                    parsed = parse_query(query)
                raws = parsed.get(param.name, [])
            else:
                name = param.name.encode("latin-1")
                raws = [v.decode("latin-1").strip() for k, v in headers if k == name]
            if not raws:
                if param.required:
                    problems.append({"in": location, "name": param.name,
                                     "detail": f"required {location} parameter is missing"})
                continue
            value = param.value(raws)
            if not param.validator.is_valid(value):
                for _, message in _errors(param.validator, value, MAX_VIOLATIONS):
                    problems.append({"in": location, "name": param.name, "detail": message})
        return problems[:MAX_VIOLATIONS]

    def wants_body(self, content_type: bytes | None) -> bool:
        if self.body_validator is None:
            return False
        if content_type is None:
            return self.body_required or self.json_only
        return self.json_only or _is_json(content_type.decode("latin-1"))

    def check_body(self, content_type: bytes | None, body: bytes) -> list:
        """The violations of a JSON request body (called when :meth:`wants_body`)."""
        if not body:
            if self.body_required:
                return [{"in": "body", "pointer": "", "detail": "a JSON body is required"}]
            return []
        if content_type is not None and not _is_json(content_type.decode("latin-1")):
            return [{"in": "header", "name": "content-type",
                     "detail": "this operation takes application/json"}]
        try:
            value = json.loads(body)
        except ValueError as exc:
            return [{"in": "body", "pointer": "", "detail": f"not valid JSON: {exc}"}]
        if self.body_validator.is_valid(value):
            return []
        return [{"in": "body", "pointer": pointer, "detail": message}
                for pointer, message in _errors(self.body_validator, value, MAX_VIOLATIONS)]


_PLACEHOLDER = re.compile(r"\{([^}/]+)\}")


def _template_regex(template: str) -> re.Pattern:
    out, pos = ["^"], 0
    for match in _PLACEHOLDER.finditer(template):
        out.append(re.escape(template[pos:match.start()]))
        out.append(f"(?P<{_group(match.group(1).split(':', 1)[0])}>[^/]+)")
        pos = match.end()
    out.append(re.escape(template[pos:]) + "$")
    return re.compile("".join(out))


def _group(name: str) -> str:
    """A regex group name for a parameter name (which may hold any character)."""
    return "g" + name.encode().hex()


def _head(path: str) -> str:
    """A path's first segment: templates are indexed by it, so a request tries only
    the templates that can match (plus those starting with a placeholder)."""
    return path[1:].partition("/")[0]


class Spec:
    """The operations of one document: literal paths in a dict, templates in order of
    specificity, grouped by their first segment."""

    def __init__(self, literal: dict, templated: list, base: str = "") -> None:
        self.literal = literal  # path (with base) -> {METHOD: Operation}
        self.base = base  # the path of servers[0].url
        self.by_head: dict[str, list] = {}  # [(regex, [(name, group)], {METHOD: Operation})]
        self.wild: list = []  # templates whose first segment is a placeholder
        for template, entry in templated:
            head = _head(template)
            if "{" in head:
                self.wild.append(entry)
            else:
                self.by_head.setdefault(head, []).append(entry)

    def find(self, method: str, path: str):
        """``(operation, path_params)`` for a request, or None when the document
        does not describe it (the application answers 404/405 itself)."""
        ops = self.literal.get(path)
        if ops is not None:
            op = ops.get(method)
            return None if op is None else (op, {})
        if self.base:
            if not path.startswith(self.base):
                return None
            head = _head(path[len(self.base):])
        else:
            head = _head(path)
        for candidates in (self.by_head.get(head, ()), self.wild):
            for regex, names, ops in candidates:
                match = regex.match(path)
                if match is None:
                    continue
                op = ops.get(method)
                if op is None:
                    return None
                params = {}
                for name, group in names:
                    value = match.group(group)
                    params[name] = unquote(value) if "%" in value else value
                return op, params
        return None


def compile_spec(doc) -> Spec:
    """A :class:`Spec` of an OpenAPI 3.0/3.1 document; :class:`SpecError` when unusable."""
    if not isinstance(doc, dict):
        raise SpecError("the document is not a JSON object")
    compiler = _Compiler(doc)
    base = ""
    servers = compiler.doc.get("servers") or []
    if servers and isinstance(servers[0], dict):
        url = str(servers[0].get("url", ""))
        base = re.sub(r"^[a-z]+://[^/]*", "", url).rstrip("/")
        base = "" if "{" in base else base
    literal, templated = {}, []
    for template, item in (compiler.doc.get("paths") or {}).items():
        item = compiler.resolve(item)
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        ops = {m.upper(): Operation(template, m, item[m], shared, compiler)
               for m in _METHODS if isinstance(item.get(m), dict)}
        if "GET" in ops and "HEAD" not in ops:
            ops["HEAD"] = ops["GET"]
        full = base + template
        if "{" not in template:
            literal[full] = ops
        else:
            names = [(n, _group(n)) for n in (m.split(":", 1)[0]
                                              for m in _PLACEHOLDER.findall(template))]
            try:
                regex = _template_regex(full)
            except re.error as exc:
                raise SpecError(f"path {template!r}: {exc}") from None
            templated.append((len(_PLACEHOLDER.sub("", template)), template,
                              (regex, names, ops)))
    # The more literal characters a template has, the more specific it is.
    templated.sort(key=lambda entry: -entry[0])
    return Spec(literal, [entry[1:] for entry in templated], base)
