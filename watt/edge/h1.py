"""The pipeline for Watt's own engine (``watt/http1.py``), from its parser callbacks.

A request whose stages all answer at once costs no task: only an awaitable
``check`` (a key fetch, a token introspection) gets one, for that request.
While a stage waits, or reads the body for ``check_body``, the body bytes
collect in the exchange's ``pending`` (bounded by ``limits.maxBodySize``).
"""

from __future__ import annotations

import asyncio
from itertools import chain

from loguru import logger

from . import BODY_CAP, EdgeReply


def edge_check(ex, pipeline) -> None:
    """The exchange's turn: run ``check``; the exchange goes on (``_go``) or is answered."""
    scope = ex.scope
    ex.edge = req = pipeline.request(scope["method"], scope["path"], scope["query_string"],
                                     ex.headers, scope["client"], scope["scheme"])
    _settle(ex, pipeline.check(req), _checked)


def _checked(ex) -> None:
    if ex.proto.edge.pipeline.wants_body(ex.edge):
        ex.held = True
        if ex.budget is None:  # limits.maxBodySize is off: held in memory, so bounded
            ex.budget = BODY_CAP - sum(map(len, ex.pending))
        if not ex.more:
            edge_body(ex)
        return
    _go(ex)


def edge_body(ex) -> None:
    """The whole body is in: ``check_body`` it."""
    ex.held = False
    body = b"".join(ex.pending)
    ex.pending = [body] if body else []
    _settle(ex, ex.proto.edge.pipeline.check_body(ex.edge, body), _go)


def _go(ex) -> None:
    ex.scope["headers"] = ex.headers = ex.edge.headers
    ex._go()


def _settle(ex, result, then) -> None:
    if result is None:
        then(ex)
    elif isinstance(result, EdgeReply):
        ex.reply(*result)
    else:  # the slow path, for this request only
        task = asyncio.ensure_future(result)
        task.add_done_callback(lambda t: _awaited(ex, t, then))


def _awaited(ex, task: asyncio.Future, then) -> None:
    if ex.done or ex.proto.closed:
        return  # the client left meanwhile
    try:
        result = task.result()
    except Exception:  # a stage's bug is a 500 for this request, never a hang
        logger.exception("an edge stage failed")
        ex.reply(*ex.proto.edge.pipeline.failed(ex.edge))
        return
    _settle(ex, result, then)


def edge_response(ex, status: int, flat: tuple) -> tuple:
    """The application's response headers through the stages' ``on_response``."""
    pairs = ex.proto.edge.pipeline.on_response(ex.edge, status,
                                                list(zip(flat[::2], flat[1::2], strict=False)))
    return tuple(chain.from_iterable(pairs))  # (p.flatten_headers copies every item)
