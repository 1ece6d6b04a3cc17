"""Custom log sinks for tests/test_log_transports.py, named as ``log_sinks:collect``."""

from __future__ import annotations

received: list = []


def collect(message) -> None:
    """A loguru-style function sink: keeps each message (text with ``.record``)."""
    received.append(message)


class Factory:
    """What an entry point of ``watt.log_transports`` names: called with ``options``."""

    made: list = []

    def __init__(self, options: dict) -> None:
        self.options = options
        self.lines: list[str] = []
        Factory.made.append(self)

    def write(self, message: str) -> None:
        self.lines.append(message)
