"""A small Debug Adapter Protocol client for the tests: what an IDE (VS Code) says to
debugpy's adapter, over a plain socket, so the debug tests drive the real adapter."""

from __future__ import annotations

import json
import socket
import time


class DapClient:
    """One DAP session: ``request()`` waits for its response; events are kept in order
    and ``wait_event()`` takes the first one that matches."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.seq = 0
        self.buffer = b""
        self.events: list[dict] = []
        self.responses: dict[int, dict] = {}

    def close(self) -> None:
        self.sock.close()

    def send(self, command: str, **arguments) -> int:
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command,
                           "arguments": arguments}).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self.seq

    def request(self, command: str, **arguments) -> dict:
        return self.response(self.send(command, **arguments))

    def response(self, seq: int) -> dict:
        deadline = time.monotonic() + self.timeout
        while seq not in self.responses:
            self._read_one(deadline)
        answer = self.responses.pop(seq)
        if not answer.get("success"):
            raise AssertionError(f"DAP {answer.get('command')} failed: {answer}")
        return answer

    def wait_event(self, name: str, timeout: float | None = None, **match) -> dict:
        """The first event (or reverse request) ``name`` whose body has ``match``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for event in self.events:
                body = event.get("body") or {}
                kind = event.get("event") or event.get("command")
                if kind == name and all(body.get(k) == v for k, v in match.items()):
                    self.events.remove(event)
                    return event
            self._read_one(deadline)

    def reverse_request(self, command: str) -> dict:
        """Wait for a request of the adapter's (``startDebugging``), answer it, return its
        arguments."""
        request = self.wait_event(command)
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "response", "request_seq": request["seq"],
                           "success": True, "command": command, "body": {}}).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return request["arguments"]

    def _read_one(self, deadline: float) -> None:
        while b"\r\n\r\n" not in self.buffer:
            self._recv(deadline)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            self.buffer = head + b"\r\n\r\n" + rest
            self._recv(deadline)
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
        message, self.buffer = json.loads(rest[:length]), rest[length:]
        if message["type"] == "response":
            self.responses[message["request_seq"]] = message
        else:  # events, and reverse requests (startDebugging) the test answers
            self.events.append(message)

    def _recv(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no DAP message in time; events so far: {self.events}")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the debug adapter closed the connection")
        self.buffer += data

    def attach(self, breakpoints: dict[str, list[int]], **attach_args) -> None:
        """initialize, attach, setBreakpoints for each file, configurationDone."""
        self.request("initialize", clientID="watt-tests", adapterID="debugpy",
                     pathFormat="path", linesStartAt1=True, columnsStartAt1=True,
                     supportsStartDebuggingRequest=True)
        attach = self.send("attach", **{"justMyCode": False, **attach_args})
        self.wait_event("initialized")
        for file, lines in breakpoints.items():
            answer = self.request("setBreakpoints", source={"path": file},
                                  breakpoints=[{"line": n} for n in lines])
            assert answer["body"]["breakpoints"], answer
        self.request("configurationDone")
        self.response(attach)
