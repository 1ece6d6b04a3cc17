"""Which worker gets a stream, and the relay that carries a mesh call between workers.

:class:`RoundRobin` is pure (no I/O): it cycles over the workers that are
ready and skips the rest.  :class:`Router` maps application ids to their
pools and, when a worker opens a stream to ``<id>.plt.local``, splices it to
a stream on a worker of that application: frames are relayed as they come,
credits included, so flow control is end to end and the main side buffers
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .channel import protocol as p
from .channel.endpoint import Channel
from .links import Links


class RoundRobin:
    """Round robin over the items for which ``is_ready`` is true."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def pick(self, items: Sequence, is_ready: Callable[[object], bool]):
        n = len(items)
        for i in range(n):
            item = items[(self._next + i) % n]
            if is_ready(item):
                self._next = (self._next + i + 1) % n
                return item
        return None


class Router:
    """Application id -> pool of workers; mesh relay between workers."""

    def __init__(self) -> None:
        self.pools: dict[str, object] = {}
        self.links = Links()
        self.cache = None  # watt.cache.tap.HttpCache, when httpCache is on

    def add(self, app_id: str, pool) -> None:
        self.pools[app_id] = pool

    def pick(self, app_id: str):
        """A ready worker of ``app_id``, or None (unknown app, or none ready)."""
        pool = self.pools.get(app_id)
        return None if pool is None else pool.pick()

    def attach(self, worker) -> None:
        """Let ``worker`` open mesh streams (and get direct links to its targets)."""
        worker.channel.on_request = lambda frame: self._mesh_request(worker, frame)
        if self.cache is not None:  # sees the REQUEST frames sent to it
            self.cache.attach(worker)

    def _mesh_request(self, caller, frame: tuple) -> None:
        source = caller.channel
        sid = frame[1]
        target = frame[2]
        app_id = p.mesh_app_id(target)
        if app_id is None or app_id not in self.pools:
            known = ", ".join(sorted(self.pools)) or "none"
            source.send((p.ERROR, sid, "WATT_MESH_UNKNOWN_APP",
                         f"no application {app_id or target!r} in this runtime (known: {known})"))
            return
        pool = self.pools[app_id]
        for _ in range(len(getattr(pool, "workers", ())) or 1):
            worker = pool.pick()
            # A worker whose channel is lost (it is dying) has not received
            # this request: try another rather than fail it.
            if worker is None or not worker.channel.lost:
                break
        if worker is None or worker.channel.lost:
            source.send((p.ERROR, sid, "WATT_NO_WORKER",
                         f"application {app_id!r} has no worker ready"))
            return
        dest = worker.channel
        dest_sid = dest.next_sid()
        relay = _Relay(request_done=not frame[5])
        source.streams[sid] = _RelayEnd(relay, source, sid, dest, dest_sid)
        dest.streams[dest_sid] = _TargetEnd(relay, dest, dest_sid, source, sid)
        relay.ends = (source.streams[sid], dest.streams[dest_sid])
        dest.send((p.REQUEST, dest_sid, app_id) + frame[3:])
        if self.cache is None or not self.cache.caches_mesh(app_id):
            self.links.want(caller, app_id, pool)  # (a direct link would bypass the cache)


class _Relay:
    """State shared by the two ends of one relayed stream."""

    __slots__ = ("ends", "request_done", "response_done")

    def __init__(self, request_done: bool) -> None:
        self.request_done = request_done
        self.response_done = False
        self.ends: tuple = ()

    def close(self) -> None:
        for end in self.ends:
            if end.channel.streams.get(end.sid) is end:
                del end.channel.streams[end.sid]


class _RelayEnd:
    """One side of a relayed stream: frames fed here go out on the other channel."""

    __slots__ = ("channel", "relay", "sid", "to", "to_sid")

    def __init__(self, relay: _Relay, channel: Channel, sid: int, to: Channel,
                 to_sid: int) -> None:
        self.relay = relay
        self.channel = channel
        self.sid = sid
        self.to = to
        self.to_sid = to_sid

    def feed(self, frame: tuple) -> None:
        kind = frame[0]
        self.to.send((kind, self.to_sid) + frame[2:])
        relay = self.relay
        if kind in p.TERMINAL:
            relay.close()
            return
        if kind == p.BODY and not frame[3]:
            relay.request_done = True
        elif (kind == p.RESPONSE_START and not frame[5]) or (
                kind == p.RESPONSE_BODY and not frame[3]):
            relay.response_done = True
        if relay.request_done and relay.response_done:
            relay.close()


class _TargetEnd(_RelayEnd):
    """The target's side: its worker dying is reported to the caller as a mesh error."""

    __slots__ = ()

    def feed(self, frame: tuple) -> None:
        if frame[0] == p.ERROR and frame[2] == "WATT_WORKER_DIED":
            frame = (p.ERROR, frame[1], "WATT_MESH_WORKER_DIED",
                     f"the target worker died during the call: {frame[3]}")
        _RelayEnd.feed(self, frame)
