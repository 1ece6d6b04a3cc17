"""The pytest plugin (entry point ``pytest11``): the ``watt_runtime`` fixture.

``watt_runtime`` is a factory: each call starts a runtime on a free port on
a loop of its own (a background thread), waits until it serves, and returns
a :class:`RuntimeHandle` with ``url`` and a synchronous ``inject``.  Every
runtime the test started is stopped after it.

    def test_home(watt_runtime):
        rt = watt_runtime("examples/hello/watt.json")
        assert httpx.get(rt.url).status_code == 200
        assert rt.inject("greeter", "GET", "/hello").status == 200
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from .runtime import InjectResponse, Runtime


class RuntimeHandle:
    """A runtime running on its own thread's event loop, driven synchronously."""

    def __init__(self, config, *, hostname: str = "127.0.0.1", port: int = 0,
                 timeout: float = 60.0, **options) -> None:
        self._timeout = timeout
        self._mesh = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="watt-runtime",
                                        daemon=True)
        self._thread.start()
        self.runtime = Runtime(config, hostname=hostname, port=port, **options)
        self._lines: list[str] = []
        self._unlisten = self.runtime.logs.listen(self._lines.append)
        try:
            self.url: str = self._call(self.runtime.start())
        except BaseException:
            self._unlisten()
            self._close_loop()
            raise

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)

    def inject(self, app_id: str, method: str = "GET", path: str = "/", *,
               headers: dict | list | None = None, body: bytes | str = b"") -> InjectResponse:
        """Send a request straight to ``app_id``'s workers over the channel (no socket)."""
        return self._call(self.runtime.inject(app_id, method, path, headers=headers, body=body))

    @property
    def mesh(self):
        """An ``httpx.Client`` that reaches every application at ``http://<id>.plt.local``
        (entrypoint or not) through :meth:`inject`, without a socket."""
        if self._mesh is None:
            import httpx

            handle = self

            class _InjectTransport(httpx.BaseTransport):
                def handle_request(self, request: httpx.Request) -> httpx.Response:
                    app_id = request.url.host.removesuffix(".plt.local")
                    path = request.url.raw_path.decode("latin-1")
                    response = handle.inject(app_id, request.method, path,
                                             headers=list(request.headers.raw),
                                             body=request.read())
                    return httpx.Response(response.status, headers=response.headers,
                                          content=response.body)

            self._mesh = httpx.Client(transport=_InjectTransport(), timeout=self._timeout)
        return self._mesh

    def applications(self) -> list[dict]:
        return self._call(_async(self.runtime.applications))

    def logs(self, **match) -> list[dict]:
        """The log lines written since this runtime started, parsed; ``match``
        keeps those whose fields equal the given values (``app="a"``)."""
        records = [json.loads(line) for line in list(self._lines)]
        return [r for r in records if all(r.get(k) == v for k, v in match.items())]

    def spans(self) -> list[dict]:
        """Spans held by the ``memory`` exporter of the ``telemetry`` config."""
        return self._call(_async(self.runtime.spans))

    def metrics(self) -> str:
        """The Prometheus text the runtime's ``/metrics`` would serve now."""
        return self._call(self.runtime.metrics.exposition()).decode()

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        if self._mesh is not None:
            self._mesh.close()
        try:
            self._call(self.runtime.stop())
            self._call(_cancel_leftovers())  # as asyncio.run does before closing a loop
        finally:
            self._unlisten()
            self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> RuntimeHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


async def _cancel_leftovers() -> None:
    """Cancel what the engines left on the loop (idle keep-alive connections)."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5)


async def _async(fn):
    return fn()


@pytest.fixture
def watt_runtime():
    """Factory: ``watt_runtime(config, **options) -> RuntimeHandle`` (stopped after the test)."""
    handles: list[RuntimeHandle] = []

    def start(config, **options) -> RuntimeHandle:
        handle = RuntimeHandle(config, **options)
        handles.append(handle)
        return handle

    yield start
    errors = []
    for handle in reversed(handles):
        try:
            handle.stop()
        except Exception as exc:  # noqa: BLE001 - stop them all, then report
            errors.append(exc)
    if errors:
        raise errors[0]
