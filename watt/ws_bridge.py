"""A WebSocket upgrade on Watt's HTTP/1.1 engine (``http1.py``), through wsproto.

wsproto (sans-IO, from the h11 family) speaks the WebSocket protocol on the
connection's bytes; the conversation itself goes through the same ASGI
forwarder the other engines use (:func:`watt.entrypoint.forward`), so the
worker sees the same WS_* frames whichever engine accepted the client.
"""

from __future__ import annotations

import asyncio

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError


class WebSocketBridge:
    def __init__(self, proto, scope: dict, rest: bytes) -> None:
        self.proto = proto
        self.conn = WSConnection(ConnectionType.SERVER)
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.accepted = False
        self.closed = False
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        head = [f"GET {scope['raw_path'].decode('latin-1')}"
                f"{'?' + scope['query_string'].decode('latin-1') if scope['query_string'] else ''}"
                " HTTP/1.1\r\n".encode("latin-1")]
        head += [name + b": " + value + b"\r\n" for name, value in scope["headers"]]
        self.scope = dict(scope, type="websocket", subprotocols=[],
                          scheme="wss" if scope["scheme"] == "https" else "ws")
        self.scope.pop("method", None)
        try:
            self.conn.receive_data(b"".join(head) + b"\r\n" + rest)
        except RemoteProtocolError as exc:
            self._reject(400, str(exc))
            return
        self._events()
        forwarder = proto.engine.app
        self.task = asyncio.get_running_loop().create_task(forwarder(self.scope, self.receive,
                                                                     self.send))

    def _reject(self, status: int, reason: str) -> None:
        body = reason.encode()
        self.proto.write(self.conn.send(RejectConnection(
            status_code=status, headers=[(b"content-length", str(len(body)).encode())],
            has_body=True)) + body)
        self.closed = True
        self.proto.close()

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
        except RemoteProtocolError:
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1002})
            self.proto.close()
            return
        self._events()

    def connection_lost(self) -> None:
        if not self.closed:
            self.closed = True
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})

    def _events(self) -> None:
        for event in self.conn.events():
            if isinstance(event, Request):
                self.scope["subprotocols"] = list(event.subprotocols)
                self.inbox.put_nowait({"type": "websocket.connect"})
            elif isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    text, self._text = "".join(self._text), []
                    self.inbox.put_nowait({"type": "websocket.receive", "text": text})
            elif isinstance(event, BytesMessage):
                self._bytes.append(bytes(event.data))
                if event.message_finished:
                    data, self._bytes = b"".join(self._bytes), []
                    self.inbox.put_nowait({"type": "websocket.receive", "bytes": data})
            elif isinstance(event, Ping):
                self.proto.write(self.conn.send(event.response()))
            elif isinstance(event, CloseConnection):
                if not self.closed:
                    self.closed = True
                    self.proto.write(self.conn.send(event.response()))
                    self.inbox.put_nowait({"type": "websocket.disconnect",
                                           "code": int(event.code),  # an IntEnum: not shareable
                                           "reason": event.reason or ""})
                self.proto.close()

    async def receive(self) -> dict:
        return await self.inbox.get()

    async def send(self, message: dict) -> None:
        if self.closed and message["type"] != "websocket.close":
            return
        kind = message["type"]
        if kind == "websocket.accept":
            self.accepted = True
            self.proto.write(self.conn.send(AcceptConnection(
                subprotocol=message.get("subprotocol"),
                extra_headers=list(message.get("headers") or []))))
        elif kind == "websocket.send":
            text = message.get("text")
            self.proto.write(self.conn.send(Message(data=text if text is not None
                                                    else message.get("bytes") or b"")))
        elif kind == "websocket.close":
            if self.closed:
                return
            self.closed = True
            if not self.accepted:
                self._reject(403, "")
                return
            self.proto.write(self.conn.send(CloseConnection(
                code=message.get("code", 1000), reason=message.get("reason") or None)))
            self.proto.close()
