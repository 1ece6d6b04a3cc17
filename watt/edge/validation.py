"""The edge's request validation stage: requests checked against the OpenAPI
document of the application they go to, before it sees them.

Which applications: the entrypoint, or, when the entrypoint is a gateway, the
applications its routes reach (the path checked is the one the application
sees, prefix cut off).  Where the document comes from is ``applications[].openapi``:
``true`` (default) fetches FastAPI's ``/openapi.json`` or Litestar's
``/schema/openapi.json`` from the application itself, through its channel, once it
is ready and again whenever its workers are replaced (other kinds publish none
by default, so they cost nothing: name the path for them); a path (``/...``)
fetches that one; a file name is read from the application's folder at start (a
bad file fails the start with ``WATT_OPENAPI_INVALID``); ``false`` means none.
``validation: false`` turns the checks off for one application.  An application
that publishes nothing is not checked.

Each document is compiled once (:mod:`watt.edge.openapi_spec`); per request the
stage finds the operation, checks path parameters, query and headers in
``check`` and, only for an operation with a JSON request body, asks for the body
(``wants_body``) and checks it in ``check_body``.  A request with violations
gets 400 ``application/problem+json`` (RFC 9457), code ``WATT_REQUEST_INVALID``,
whose ``errors`` member lists each violation: ``in`` (path, query, header,
body), ``name`` or ``pointer`` (a JSON pointer into the body), ``detail``.
jsonschema-rs is imported only when some application has a document.
"""

from __future__ import annotations

import asyncio
import json
import os

from loguru import logger

from watt.edge import EdgeRequest, Stage, problem, register_stage
from watt.errors import ConfigError

#: Where ``openapi: true`` looks, per capability: the frameworks that always publish one.
DEFAULT_PATHS = {"fastapi": ("/openapi.json",), "litestar": ("/schema/openapi.json",)}
_STATE = "validation"


def read_document(file: str) -> dict:
    """A JSON (or, with PyYAML, YAML) OpenAPI document from a file."""
    try:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the OpenAPI document: {exc.strerror}",
                          code="WATT_OPENAPI_INVALID") from None
    if not file.endswith((".yaml", ".yml")):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{file}: not valid JSON: {exc}",
                              code="WATT_OPENAPI_INVALID") from None
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{file}: reading YAML needs PyYAML (pip install pyyaml), or give "
                          "a JSON file", code="WATT_OPENAPI_INVALID") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}",
                          code="WATT_OPENAPI_INVALID") from None


def compile_file(file: str, app_id: str):
    from watt.edge.openapi_spec import SpecError, compile_spec

    document = read_document(file)
    try:
        return compile_spec(document)
    except SpecError as exc:
        raise ConfigError(f"{file}: {exc}", code="WATT_OPENAPI_INVALID",
                          app_id=app_id) from None


async def fetch_document(runtime, app_id: str, path: str) -> dict | None:
    """The OpenAPI document ``app_id`` answers at ``path`` (through its channel), or None."""
    reply = await runtime.inject(app_id, "GET", path, headers={"accept": "application/json"})
    if reply.status != 200:
        return None
    try:
        document = reply.json()
    except ValueError:
        return None
    return document if isinstance(document, dict) and "openapi" in document else None


class ValidationStage(Stage):
    """Per application id, a compiled document (:class:`~watt.edge.openapi_spec.Spec`)."""

    def __init__(self, info, specs: dict, fetch: dict, files: dict | None = None) -> None:
        self.info = info
        self.specs = specs  # app id -> Spec
        self.fetch = fetch  # app id -> paths to try, loaded by load()
        # app id -> paths to fetch or a file to read: again when the app restarts
        self.sources = {**(files or {}), **fetch}
        self._loading: asyncio.Task | None = None
        self._refreshing: dict[str, asyncio.Task] = {}
        pools = getattr(getattr(info, "runtime", None), "pools", {})
        for app_id in self.sources:  # a restarted application may have a new document
            if app_id in pools:
                pools[app_id].ready_hooks.append(self.app_ready)
        if fetch:
            try:
                self._loading = asyncio.get_running_loop().create_task(self.load())
            except RuntimeError:  # no loop yet: the first request loads
                pass

    async def _fetch(self, app_id: str, paths) -> tuple:
        """``(Spec, path)`` from the first path that answers a document, else
        ``(None, why)``; ``why`` is None when the application simply publishes none."""
        from watt.edge.openapi_spec import SpecError, compile_spec

        why = None
        for path in paths:
            try:
                document = await fetch_document(self.info.runtime, app_id, path)
            except Exception as exc:  # an app that cannot answer: not validated
                why = f"{path}: {exc}"
                continue
            if document is None:
                continue
            try:
                return compile_spec(document), path
            except SpecError as exc:
                return None, f"the OpenAPI document at {path} cannot be used: {exc}"
        return None, why

    async def load(self) -> None:
        """Fetch and compile the documents the applications publish (at start)."""
        for app_id, paths in self.fetch.items():
            spec, found = await self._fetch(app_id, paths)
            log = logger.bind(app=app_id)
            if spec is not None:
                self.specs[app_id] = spec
                log.info(f"validation: requests to {app_id!r} are checked against its {found}")
            elif found is not None:
                log.warning(f"validation: {found}; requests to {app_id!r} are not validated")
        self.fetch = {}

    def app_ready(self, app_id: str) -> None:
        """The runtime replaced ``app_id``'s workers (restart, ``watt dev`` reload,
        crash): fetch its document again, on a task; the newest fetch wins."""
        if app_id not in self.sources or self.fetch:
            return
        previous = self._refreshing.get(app_id)
        if previous is not None:
            previous.cancel()
        task = asyncio.get_running_loop().create_task(self.refresh(app_id))
        self._refreshing[app_id] = task

        def done(finished: asyncio.Task) -> None:
            if self._refreshing.get(app_id) is finished:
                del self._refreshing[app_id]

        task.add_done_callback(done)

    async def refresh(self, app_id: str) -> None:
        """Fetch and compile ``app_id``'s document again and swap it in (one dict
        assignment: a request sees the old or the new one whole); when that fails
        the old one stays in use and a warning names the application."""
        source = self.sources[app_id]
        if isinstance(source, str):  # a file: read again (it may have changed too)
            try:
                spec, found = compile_file(source, app_id), os.path.basename(source)
            except ConfigError as exc:
                spec, found = None, str(exc)
        else:
            spec, found = await self._fetch(app_id, source)
        log = logger.bind(app=app_id)
        if spec is None:
            kept = "the previous document" if app_id in self.specs else "no document"
            log.warning(f"validation: {app_id!r} restarted but its OpenAPI document could not "
                        f"be loaded again ({found or 'none published'}); requests to it are "
                        f"checked against {kept}")
            return
        self.specs[app_id] = spec
        log.info(f"validation: {app_id!r} restarted; requests to it are checked against "
                 f"its {found} as it is now")

    def _operation(self, req: EdgeRequest):
        spec = self.specs.get(req.app)
        if spec is None:
            return None
        path = req.path
        routes = self.info.routes
        if routes is not None:
            route = routes.route(path)
            if route is not None:
                path = route.target_path(path.encode()).decode()
        return spec.find(req.method, path)

    def check(self, req: EdgeRequest):
        if self.fetch:
            return self._check_after_load(req)
        found = self._operation(req)
        if found is None:
            return None
        operation, params = found
        req.state[_STATE] = operation
        violations = operation.check(params, req.query, req.headers)
        return _reply(violations) if violations else None

    async def _check_after_load(self, req: EdgeRequest):
        if self._loading is None:
            self._loading = asyncio.ensure_future(self.load())
        await asyncio.shield(self._loading)
        return self.check(req)

    def wants_body(self, req: EdgeRequest) -> bool:
        operation = req.state.get(_STATE)
        return operation is not None and operation.wants_body(req.header(b"content-type"))

    def check_body(self, req: EdgeRequest, body: bytes):
        violations = req.state[_STATE].check_body(req.header(b"content-type"), body)
        return _reply(violations) if violations else None


def _reply(violations: list):
    return problem(400, "WATT_REQUEST_INVALID", "Bad Request",
                   f"the request does not match the application's OpenAPI document "
                   f"({len(violations)} violation{'s' if len(violations) != 1 else ''})",
                   errors=violations)


def targets(info) -> list[str]:
    """The applications requests can reach through the entrypoint."""
    if info.routes is None:
        return [info.entrypoint]
    return sorted({route.to for route in info.routes.routes} & set(info.apps))


def factory(config, info) -> ValidationStage | None:
    """The stage, or None when no reachable application has validation on."""
    specs, fetch, files = {}, {}, {}
    for app_id in targets(info):
        app = info.apps[app_id]
        setting = getattr(app, "openapi", True)
        if not getattr(app, "validation", True) or setting is False:
            continue
        if setting is True:
            pool = getattr(getattr(info, "runtime", None), "pools", {}).get(app_id)
            paths = DEFAULT_PATHS.get(getattr(getattr(pool, "capability", None), "name", ""))
            if paths is not None:
                fetch[app_id] = paths
        elif setting.startswith("/"):
            fetch[app_id] = (setting,)
        else:
            files[app_id] = os.path.join(app.path, setting)
            try:
                specs[app_id] = compile_file(files[app_id], app_id)
            except ConfigError as exc:  # where in the config, as a load error would say
                ids = [a.id for a in getattr(config, "applications", ())]
                exc.file = exc.file or getattr(config, "file", None)
                exc.app_id = app_id
                exc.key = f"applications[{ids.index(app_id) if app_id in ids else app_id}]" \
                          ".openapi"
                raise
    if not specs and not fetch:
        return None
    if fetch and getattr(info, "runtime", None) is None:
        fetch = {}  # no runtime to fetch through (a unit test of files only)
    return ValidationStage(info, specs, fetch, files)


register_stage("validation", factory)
