"""First code in a worker: set up the interpreter, import the app, run lifespan, serve.

Entered through :func:`run_subinterpreter` (the main side runs it with
``_interpreters.run_string`` on a thread of its own) or :func:`run_process`
(``python -c`` in a child process).  Both end in :func:`serve`: the same
frames, the same ASGI adapter, only the transport differs.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import sys
import traceback

from watt.channel import protocol as p
from watt.channel.endpoint import Channel

from . import mesh_client, outbound
from .links import LinkTable
from .observe import Observer
from .serve import WorkerServer
from .telemetry import LEVELS, MeteredSelector, capture_output, report_health

_SUBINTERPRETER_REFUSAL = "does not support loading in subinterpreters"
_INTERNAL_DIRS = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # watt/
    os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                 "capabilities"),
    os.path.dirname(importlib.__file__),
)


def run_subinterpreter(spec: dict) -> None:
    from watt.channel.queues import QueueTransport

    _prepare(spec, own_process=False)
    transport = QueueTransport(spec["to_main"], spec["to_worker"],
                               spec["wake_main"], spec["wake_worker"])
    try:
        if spec.get("spin"):
            from .spin import SpinSelector

            selector = SpinSelector(mesh_client.waiting, mesh_client.read_queues)
        else:
            selector = MeteredSelector()
        asyncio.run(serve(spec, transport, selector),
                    loop_factory=lambda: asyncio.SelectorEventLoop(selector))
    finally:
        # This thread was not started by this interpreter's threading module; if
        # the app made it known there (asyncio.to_thread does), forget it now, or
        # its clean-up runs after threading is torn down and prints a warning.
        import threading

        threading._active.pop(threading.get_ident(), None)


def run_process() -> None:
    from watt.channel.pipes import PipeTransport

    spec = json.loads(os.environ.pop("WATT_WORKER_SPEC"))
    _prepare(spec, own_process=True)
    if "WATT_DEBUGPY" in os.environ:  # watt dev --debug: join the IDE's session first
        from .debug import connect_debugger

        connect_debugger()
    transport = PipeTransport(spec["read_fd"], spec["write_fd"])
    selector = MeteredSelector()
    asyncio.run(serve(spec, transport, selector),
                loop_factory=lambda: asyncio.SelectorEventLoop(selector))


def _prepare(spec: dict, own_process: bool) -> None:
    path = spec["path"]
    sys.path[:] = [path] + [entry for entry in spec["sys_path"] if entry != path]
    if own_process:
        return  # the child was spawned with its environment already set
    # os.environ of this interpreter shows the app's env; putenv would change
    # the whole process (every worker), so only the mapping's data is updated.
    data = os.environ._data
    for key, value in spec["env"].items():
        data[os.environ.encodekey(key)] = os.environ.encodevalue(value)


async def serve(spec: dict, transport, selector: MeteredSelector | None = None) -> None:
    """Run one worker until the main side says STOP (or goes away)."""
    loop = asyncio.get_running_loop()
    channel = Channel(transport, p.WORKER_SIDE)
    server = WorkerServer(channel, spec["app_id"])
    stop = loop.create_future()

    links = LinkTable(channel, server.on_request)

    def halt() -> None:
        if server.direct is not None:
            server.direct.halt()  # before the channel closes: its handoffs go out
        channel.close()
        links.close_all()

    server.halt = halt

    if spec.get("direct") is not None:  # the entrypoint's worker: it may get connections
        from .direct import DirectServer

        server.direct = DirectServer(server, channel, spec["direct"])

    def on_control(frame: tuple) -> None:
        kind = frame[0]
        if kind == p.STOP:
            if not stop.done():
                stop.set_result(frame[2] / 1000)
        elif kind == p.CONN and server.direct is not None:
            server.direct.on_conn(frame)
        elif kind == p.CONN_RETIRE and server.direct is not None:
            server.direct.retire(frame[2])
        else:
            links.on_control(frame)

    def on_lost() -> None:
        if not stop.done():
            stop.set_result(0.0)

    channel.on_request = server.on_request
    channel.on_control = on_control
    channel.on_lost = on_lost
    channel.start()
    observer = Observer(spec, channel, loop, selector, own_process="read_fd" in spec,
                        fallback=sys.stderr)
    server.observer = observer
    server.max_concurrency = spec.get("max_concurrency")
    server.format_exception = user_traceback
    channel.on_control = functools.partial(_on_metrics, observer, on_control)
    restore_output = capture_output(observer.log)
    try:
        await _run(spec, channel, transport, server, links, stop, selector)
    finally:
        restore_output()


async def _run(spec, channel, transport, server, links, stop, selector) -> None:
    """Import, lifespan start-up, READY, serve until STOP, drain, lifespan shutdown."""
    mesh_client.install(channel, spec["app_id"], spec.get("mesh_timeout"), links,
                        server.observer)

    try:
        # Before the application: its imports may already call out.
        outbound.install(spec.get("interceptors"), server.observer, spec["app_id"],
                         spec.get("http_cache"))
        app = _load(spec)
        checks = _checks(spec)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, then we end
        server.observer.log.flush()  # what it printed first, before the failure
        await _fatal(channel, transport, exc, "WATT_APP_IMPORT_FAILED")
        return
    lifespan = Lifespan(app)
    failure = await lifespan.startup()
    if failure is not None:
        server.observer.log.flush()
        channel.send((p.FATAL, 0, "WATT_APP_LIFESPAN_FAILED", failure, "", False))
        await _flush(transport)
        return
    server.app = app
    server.state = lifespan.state
    channel.send((p.READY, 0, os.getpid(), _interpreter_id()))
    health = None
    if selector is not None and spec.get("health_interval"):
        health = asyncio.get_running_loop().create_task(report_health(
            channel, selector, spec["health_interval"], "read_fd" in spec, **checks))

    timeout = await stop
    if health is not None:
        health.cancel()
    await server.drain(timeout)
    await lifespan.shutdown()
    links.close_all()
    for stream in (sys.stdout, sys.stderr):  # the last lines, before STOPPED
        stream.flush()
    server.observer.log.flush()
    if server.observer.tracer is not None:
        server.observer.tracer.flush()
    channel.send((p.STOPPED, 0))
    await _flush(transport)

def _on_metrics(observer: Observer, on_control, frame: tuple) -> None:
    """``(METRICS, 0, token, None)`` asks for this worker's metrics: answer at once;
    ``(LOG_LEVEL, 0, level)`` changes the application's log level."""
    if frame[0] == p.METRICS:
        observer.metrics_reply(frame[2])
    elif frame[0] == p.LOG_LEVEL:
        observer.log.threshold = LEVELS.get(frame[2], observer.log.threshold)
    else:
        on_control(frame)


def _load(spec: dict):
    module_name, _, func_name = spec["loader"].partition(":")
    loader = getattr(importlib.import_module(module_name), func_name)
    return loader(spec["options"])


def _checks(spec: dict) -> dict:
    """The application's readiness and liveness functions (``applications[].health``)."""
    found = {}
    for name, target in (spec.get("checks") or {}).items():
        if not target:
            found[name] = None
            continue
        module_name, _, attr = target.partition(":")
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise AttributeError(f"health.{name} {target!r}: {module_name} has no {attr!r}")
        if not callable(obj):
            raise TypeError(f"health.{name} {target!r} is not callable")
        found[name] = obj
    return found


def _interpreter_id() -> int:
    try:
        import _interpreters

        return int(_interpreters.get_current()[0])
    except Exception:
        return 0


async def _fatal(channel: Channel, transport, exc: BaseException, default_code: str) -> None:
    code = getattr(exc, "code", None)
    if not isinstance(code, str) or not code.startswith("WATT_"):
        code = default_code
    refused = _refused_module(exc)
    message, detail = f"{type(exc).__name__}: {exc}", user_traceback(exc)
    if code == getattr(exc, "code", None) and isinstance(getattr(exc, "message", None), str):
        message = exc.message  # Watt's own error: its code is sent apart, not twice
        if '  File "' not in detail:
            detail = ""  # no frame of the user's code: the message says it all
    channel.send((p.FATAL, 0, code, message, detail, refused))
    await _flush(transport)


def _refused_module(exc: BaseException) -> str | None:
    """The module name when ``exc`` (or its cause) is a subinterpreter refusal."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ImportError) and _SUBINTERPRETER_REFUSAL in str(exc):
            text = str(exc)
            return text.split("module ", 1)[-1].split(" ", 1)[0] if "module " in text else "?"
        exc = exc.__cause__ or exc.__context__
    return None


def user_traceback(exc: BaseException) -> str:
    """The traceback without Watt's own frames and importlib's machinery.

    The user should see their code, not ours (uvicorn's lesson).
    """
    lines: list[str] = []
    for chunk in traceback.TracebackException.from_exception(exc).format():
        if chunk.startswith('  File "'):
            filename = chunk[8:].split('"', 1)[0]
            if filename.startswith("<frozen importlib") or any(
                filename.startswith(d + os.sep) for d in _INTERNAL_DIRS
            ):
                continue
        lines.append(chunk)
    return "".join(lines)


async def _flush(transport) -> None:
    flush = getattr(transport, "flush", None)
    if flush is not None:
        try:
            await asyncio.wait_for(flush(), 10.0)
        except TimeoutError:  # the main side stopped reading: nothing left to tell it
            pass


class Lifespan:
    """ASGI lifespan in a worker; an app that does not speak it is accepted as is."""

    def __init__(self, app) -> None:
        self.app = app
        self.state: dict = {}
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._events: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._supported = True

    async def startup(self) -> str | None:
        """None when started, else the failure message."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.4"},
                 "state": self.state}
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        await self._inbox.put({"type": "lifespan.startup"})
        event = await self._events.get()
        if event["type"] == "lifespan.startup.complete" or event["type"] == "unsupported":
            return None
        return event.get("message") or event.get("error") or "lifespan start-up failed"

    async def shutdown(self) -> None:
        if not self._supported or self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        event = await self._events.get()
        if event["type"] == "lifespan.shutdown.failed":
            print(f"[watt] lifespan shutdown failed: {event.get('message', '')}",
                  file=sys.stderr, flush=True)

    async def _run(self, scope: dict) -> None:
        started = False
        received = False

        async def receive() -> dict:
            nonlocal received
            received = True
            return await self._inbox.get()

        async def send(message: dict) -> None:
            nonlocal started
            if message["type"] == "lifespan.startup.complete":
                started = True
            await self._events.put(message)

        try:
            await self.app(scope, receive, send)
        except BaseException as exc:  # noqa: BLE001
            if started:
                await self._events.put({"type": "lifespan.shutdown.failed",
                                        "message": str(exc)})
            elif isinstance(exc, Exception) and not received:
                # Raised before even reading the startup event: the app rejects
                # the lifespan scope (uvicorn's "auto" mode treats it the same).
                self._supported = False
                await self._events.put({"type": "unsupported"})
            else:
                await self._events.put({"type": "lifespan.startup.failed",
                                        "error": user_traceback(exc)})
            return
        if not started:
            # Returned without answering: the app does not do lifespan.
            self._supported = False
            await self._events.put({"type": "unsupported"})
        else:
            await self._events.put({"type": "lifespan.shutdown.complete"})

