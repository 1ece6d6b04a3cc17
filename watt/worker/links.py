"""Direct worker-to-worker channels, inside a worker.

The main side may give this worker a *link*: a queue channel straight to one
worker of another application, so a mesh call skips the hop through the main
interpreter's loop (two cross-thread wake-ups per call instead of four).  As
a caller, the worker spreads calls round robin over its links to an
application; as a target, it serves requests arriving on a link like any
other.  The main side ends a link with UNLINK (``gone=0``: no new calls;
``gone=1``: close it) and frees its queues once this worker says UNLINKED.
"""

from __future__ import annotations

from watt.channel import protocol as p
from watt.channel.endpoint import Channel
from watt.channel.queues import QueueTransport


class LinkTable:
    def __init__(self, main: Channel, serve_request) -> None:
        self.main = main
        self._serve_request = serve_request
        self._by_id: dict[int, Channel] = {}
        self._routes: dict[str, list[tuple[int, Channel]]] = {}
        self._next: dict[str, int] = {}

    def pick(self, app_id: str | None) -> Channel | None:
        """A link to a worker of ``app_id`` (round robin), or None: go through main."""
        routes = self._routes.get(app_id) if app_id else None
        if not routes:
            return None
        i = self._next.get(app_id, 0) % len(routes)
        self._next[app_id] = i + 1
        return routes[i][1]

    def read_queues(self):
        for channel in self._by_id.values():
            yield channel.transport.recv_qid, channel.transport.wake_recv_fd

    def on_control(self, frame: tuple) -> bool:
        """Handle a link control frame; False when ``frame`` is not one."""
        kind = frame[0]
        if kind == p.LINK:
            _, _, link_id, app_id, send_q, recv_q, wake_send, wake_recv = frame
            channel = self._open(link_id, send_q, recv_q, wake_send, wake_recv, p.MAIN_SIDE)
            self._routes.setdefault(app_id, []).append((link_id, channel))
        elif kind == p.LINK_SERVE:
            _, _, link_id, send_q, recv_q, wake_send, wake_recv = frame
            channel = self._open(link_id, send_q, recv_q, wake_send, wake_recv, p.WORKER_SIDE)
            channel.on_request = lambda f, ch=channel: self._serve_request(f, ch)
        elif kind == p.UNLINK:
            _, _, link_id, gone = frame
            self._unroute(link_id)
            if gone:
                self._close(link_id)
        else:
            return False
        return True

    def _open(self, link_id, send_q, recv_q, wake_send, wake_recv, side) -> Channel:
        channel = Channel(QueueTransport(send_q, recv_q, wake_send, wake_recv), side)
        self._by_id[link_id] = channel
        channel.start()
        return channel

    def _unroute(self, link_id: int) -> None:
        for app_id, routes in self._routes.items():
            self._routes[app_id] = [r for r in routes if r[0] != link_id]

    def _close(self, link_id: int) -> None:
        channel = self._by_id.pop(link_id, None)
        if channel is not None:
            channel.close()
            # Calls the worker behind the link never took are resent through
            # the main side; the others failed with it.
            channel.bounce_undelivered()
            channel.fail_all("WATT_MESH_WORKER_DIED", "the linked worker went away")
        self.main.send((p.UNLINKED, 0, link_id))

    def close_all(self) -> None:
        for link_id in list(self._by_id):
            channel = self._by_id.pop(link_id)
            channel.close()
        self._routes.clear()
