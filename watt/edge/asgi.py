"""The pipeline for the ASGI engines (granian, hypercorn): :func:`guard`.

``watt/http1.py`` runs the same :class:`~watt.edge.Pipeline` from its parser
callbacks instead; this is the ``receive``/``send`` form of it.
"""

from __future__ import annotations

import inspect

from loguru import logger

from . import BODY_CAP, EdgeReply, problem


async def _resolved(result):
    return (await result) if inspect.isawaitable(result) else result


async def _answer(send, scope: dict, reply: EdgeReply) -> None:
    if scope["type"] == "websocket":
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": reply.status,
                        "headers": reply.headers})
            await send({"type": "websocket.http.response.body", "body": reply.body})
        else:  # the handshake is refused without an HTTP answer (1008: policy violation)
            await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})


async def guard(pipeline, scope: dict, receive, send, max_body: int):
    """Run the stages on one request.  ``None`` when a stage answered (the
    answer is sent); else the ``(receive, send)`` to forward with: ``send`` adds
    the stages' response headers, ``receive`` replays a body read for
    ``check_body``.  ``scope["headers"]`` becomes the stages' header list."""
    req = pipeline.request(scope.get("method", "GET"), scope["path"],
                           scope.get("query_string", b""), scope["headers"],
                           scope.get("client"), _http_scheme(scope))
    if scope["type"] == "websocket":  # a stage may take a token out of it (auth)
        req.state["websocket"] = scope
    try:
        reply = await _resolved(pipeline.check(req))
        if reply is None and scope["type"] == "http" and pipeline.wants_body(req):
            body, receive = await _read_body(receive, max_body or BODY_CAP)
            if body is None:
                reply = problem(413, "WATT_BODY_TOO_LARGE", "Payload Too Large")
            else:
                reply = await _resolved(pipeline.check_body(req, body))
    except ConnectionResetError:
        return None
    except Exception:
        logger.exception("an edge stage failed")
        reply = pipeline.failed(req)
    if reply is not None:
        await _answer(send, scope, reply)
        return None
    scope["headers"] = req.headers

    async def edge_send(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = dict(message, headers=pipeline.on_response(
                req, message["status"], list(message.get("headers") or ())))
        await send(message)

    return receive, edge_send


def _http_scheme(scope: dict) -> str:
    return "https" if scope.get("scheme") in ("https", "wss") else "http"


async def _read_body(receive, max_body: int):
    """The whole request body (None past ``max_body``), and a
    ``receive`` that gives it again, then the client's next messages."""
    chunks = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client left while sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def again() -> dict:
        return replay.pop() if replay else await receive()

    return replay[0]["body"], again
