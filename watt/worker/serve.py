"""Frames -> ASGI calls -> frames, inside a worker.

Each REQUEST frame from the main side becomes a task that calls the
application with ``receive``/``send`` bound to its stream.  Request bodies
arrive as BODY frames and are acknowledged (CREDIT) as the app reads them;
response bodies wait for credit, so neither side holds more than a window.
"""

from __future__ import annotations

import asyncio
import sys
import traceback

from watt.channel import protocol as p
from watt.channel.endpoint import Channel, Stream


class WorkerServer:
    def __init__(self, channel: Channel, app_id: str) -> None:
        self.channel = channel
        self.app_id = app_id
        self.app = None
        self.state: dict | None = None
        self.tasks: set[asyncio.Task] = set()
        self.stopping = False
        self.observer = None  # observe.Observer: logs, metrics, spans; set by bootstrap
        self.max_concurrency: int | None = None  # applications[].maxConcurrency
        self.direct = None  # direct.DirectServer: the entrypoint's connections served here
        # Tracebacks as the user should see them (bootstrap.user_traceback drops our frames).
        self.format_exception = lambda exc: "".join(traceback.format_exception(exc))
        # Called when the app ends this worker (SystemExit, KeyboardInterrupt):
        # stop taking frames at once, so what is still queued counts as
        # undelivered and goes to another worker.
        self.halt = channel.close

    # -- dispatch -----------------------------------------------------------------
    def on_request(self, frame: tuple, channel: Channel | None = None) -> None:
        """A REQUEST from the main side or, for direct links, from another worker."""
        channel = channel or self.channel
        sid = frame[1]
        if self.app is None or self.stopping:
            channel.send((p.ERROR, sid, "WATT_NO_WORKER",
                          f"worker of {self.app_id!r} is not serving"))
            return
        if self.max_concurrency is not None and len(self.tasks) >= self.max_concurrency:
            channel.send((p.ERROR, sid, "WATT_OVERLOADED",
                          f"{self.app_id!r} serves {self.max_concurrency} requests per "
                          "worker at once (applications[].maxConcurrency)"))
            return
        stream = channel.accept_stream(sid)
        kind = frame[3][0]
        coro = self._http(stream, frame) if kind == "http" else self._websocket(stream, frame)
        # Started at once (eager), not on the loop's next turn: the app runs until its
        # first real wait, and a request it answers without waiting needs no turn.
        task = asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)
        if not task.done():
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def drain(self, timeout: float) -> None:
        """Let in-flight requests finish for up to ``timeout`` seconds, then cancel them."""
        self.stopping = True
        if self.direct is not None:
            self.direct.release()  # its connections go back to the main side
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self.direct is not None:
            self.direct.retire(2)

    def _scope(self, encoded: tuple) -> dict:
        scope = p.decode_scope(encoded)
        if self.state is not None:
            scope["state"] = dict(self.state)
        return scope

    def _report(self, exc: BaseException) -> None:
        """One error line, with the exception as an ``err`` field (type, message, stack)."""
        stack = self.format_exception(exc)
        if self.observer is None:
            print(f"[watt] application {self.app_id!r}: unhandled error\n{stack}",
                  file=sys.stderr, flush=True)
            return
        self.observer.log.emit("error", f"unhandled error: {type(exc).__name__}: {exc}", {
            "err": {"type": type(exc).__qualname__, "message": str(exc), "stack": stack}})

    # -- HTTP -----------------------------------------------------------------------
    async def _http(self, stream: Stream, frame: tuple) -> None:
        _, sid, _target, encoded, first_body, first_more = frame
        scope = self._scope(encoded)
        state = _HttpState(first_body, first_more)
        observer = self.observer
        observed = observer.begin(scope) if observer is not None else None
        failure: BaseException | None = None

        async def receive() -> dict:
            if state.first is not None:
                body, state.first = state.first, None
                if first_more:
                    stream.consumed(len(body))
                return {"type": "http.request", "body": body, "more_body": first_more}
            if state.response_done or stream.closed_by_peer is not None and not stream._inbox:
                return {"type": "http.disconnect"}
            while True:
                f = await stream.receive()
                kind = f[0]
                if kind == p.BODY and not state.request_done:
                    chunk, more = f[2], f[3]
                    state.request_done = not more
                    if more:
                        stream.consumed(len(chunk))
                    return {"type": "http.request", "body": chunk, "more_body": more}
                if kind in (p.CANCEL, p.ERROR):
                    return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                if state.started:
                    raise RuntimeError("http.response.start sent twice")
                state.started = True
                state.status = int(message["status"])
                state.headers = p.flatten_headers(message.get("headers", ()))
                return
            if kind == "http.response.body":
                if not state.started:
                    raise RuntimeError("http.response.body sent before http.response.start")
                if state.response_done:
                    raise RuntimeError("http.response.body sent after the response ended")
                if stream.closed_by_peer is not None:
                    return  # the caller went away: drop, as uvicorn does
                body = message.get("body", b"")
                more = bool(message.get("more_body", False))
                if state.headers is not None:
                    headers, state.headers = state.headers, None
                    if len(body) <= p.CHUNK:
                        stream.charge(len(body))
                        stream.send((p.RESPONSE_START, sid, state.status, headers, body, more))
                    else:
                        stream.send((p.RESPONSE_START, sid, state.status, headers, b"", True))
                        await stream.send_data(p.RESPONSE_BODY, body, more)
                else:
                    await stream.send_data(p.RESPONSE_BODY, body, more)
                if not more:
                    state.response_done = True
                    # A receive() already waiting now learns the exchange is over
                    # (ASGI: http.disconnect once the response is complete).
                    stream.feed((p.CANCEL, sid))
                return
            # Extensions we do not advertise (trailers, pathsend, early hints): ignore.

        try:
            await self.app(scope, receive, send)
        except (Exception, asyncio.CancelledError) as exc:
            failure = exc
            if state.response_done and not isinstance(exc, asyncio.CancelledError):
                self._report(exc)  # raised after answering: log it, the caller has its answer
            elif stream.closed_by_peer is None:
                self._report(exc)
                stream.send((p.ERROR, sid, "WATT_APP_UNHANDLED_ERROR",
                             f"{type(exc).__name__}: {exc}"))
            if isinstance(exc, asyncio.CancelledError):
                raise
        except BaseException as exc:
            failure = exc
            self.halt()
            raise
        else:
            if not state.started:
                stream.send((p.ERROR, sid, "WATT_APP_UNHANDLED_ERROR",
                             "the application returned without sending a response"))
            elif not state.response_done:
                if state.headers is not None:
                    stream.send((p.RESPONSE_START, sid, state.status, state.headers, b"", False))
                else:
                    stream.send((p.RESPONSE_BODY, sid, b"", False))
        finally:
            status = _final_status(state, failure, stream)
            state.response_done = True
            # Wake a receive() still waiting for a disconnect, then forget the stream.
            stream.feed((p.CANCEL, sid))
            stream.finish()
            if observed is not None:
                observer.end(observed, status, failure)

    # -- WebSocket ------------------------------------------------------------------
    async def _websocket(self, stream: Stream, frame: tuple) -> None:
        _, sid, _target, encoded, _body, _more = frame
        scope = self._scope(encoded)
        ws = {"connected": False, "closed": False, "accepted": False}
        observer = self.observer
        observed = observer.begin(scope) if observer is not None else None
        failure: BaseException | None = None

        async def receive() -> dict:
            if not ws["connected"]:
                ws["connected"] = True
                return {"type": "websocket.connect"}
            f = await stream.receive()
            kind = f[0]
            if kind == p.WS_MESSAGE:
                text, data = f[2], f[3]
                stream.consumed(len(data) if data is not None else len(text.encode()))
                if text is not None:
                    return {"type": "websocket.receive", "text": text}
                return {"type": "websocket.receive", "bytes": data}
            ws["closed"] = True
            if kind == p.WS_CLOSE:
                return {"type": "websocket.disconnect", "code": f[2], "reason": f[3] or ""}
            return {"type": "websocket.disconnect", "code": 1006, "reason": ""}

        async def send(message: dict) -> None:
            kind = message["type"]
            if ws["closed"] or stream.closed_by_peer is not None:
                if kind == "websocket.close":
                    return
                raise RuntimeError(f"cannot send {kind!r}: the WebSocket is closed")
            if kind == "websocket.accept":
                ws["accepted"] = True
                stream.send((p.WS_ACCEPT, sid, message.get("subprotocol"),
                             p.flatten_headers(message.get("headers", ()))))
            elif kind == "websocket.send":
                text = message.get("text")
                data = message.get("bytes")
                await stream.wait_credit()
                if text is not None:
                    stream.charge(len(text.encode()))
                    stream.send((p.WS_MESSAGE, sid, text, None))
                else:
                    stream.charge(len(data or b""))
                    stream.send((p.WS_MESSAGE, sid, None, bytes(data or b"")))
            elif kind == "websocket.close":
                ws["closed"] = True
                stream.send((p.WS_CLOSE, sid, int(message.get("code", 1000)),
                             message.get("reason") or ""))
            else:
                raise RuntimeError(f"unsupported WebSocket message {kind!r}")

        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # noqa: BLE001
            failure = exc
            if not ws["closed"] and stream.closed_by_peer is None:
                self._report(exc)
                stream.send((p.WS_CLOSE, sid, 1011, "internal error"))
        else:
            if not ws["closed"] and stream.closed_by_peer is None:
                stream.send((p.WS_CLOSE, sid, 1000, ""))
        finally:
            stream.finish()
            if observed is not None:  # 101: switched protocols; 403: refused before accept
                observer.end(observed, 101 if ws["accepted"] else (500 if failure else 403),
                             failure)


def _final_status(state: _HttpState, failure: BaseException | None, stream: Stream) -> int:
    """The status a request ended with, for logs, metrics and spans: the app's own
    once it started a response; 500 for a failure before that; 499 (as nginx
    says) when the caller went away first."""
    if state.started:
        return state.status
    if stream.closed_by_peer is not None or isinstance(failure, asyncio.CancelledError):
        return 499
    return 500


class _HttpState:
    __slots__ = ("first", "headers", "request_done", "response_done", "started", "status")

    def __init__(self, first_body: bytes, first_more: bool) -> None:
        self.first: bytes | None = first_body
        self.request_done = not first_more
        self.started = False
        self.status = 200
        self.headers: tuple | None = None
        self.response_done = False
