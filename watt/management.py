"""The management API: placeholder until the CLI/management issue lands.

``ManagementServer(runtime)`` with ``async start()`` / ``async stop()``.
"""

from __future__ import annotations


class ManagementServer:
    def __init__(self, runtime) -> None:
        self.runtime = runtime

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
