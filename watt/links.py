"""Direct channels between subinterpreter workers (the main side's bookkeeping).

The first time a subinterpreter worker calls application B through the main
side, the router asks :class:`Links` to give that worker a direct queue
channel to every subinterpreter worker of B (and to B's workers started
later).  Later calls go straight from worker to worker; the main loop only
sets links up and tears them down:

- B stops: its callers get ``UNLINK gone=0`` (no new calls) before its STOP,
  and ``UNLINK gone=1`` once it has exited.
- Either end exits: the other end gets ``UNLINK gone=1``; the queues and
  wake-up pipes are freed when every living end has answered UNLINKED, so an
  fd is never closed under a worker that still watches it.

Process workers are not linked: their frames go through the main side.
"""

from __future__ import annotations

import os

from .channel import protocol as p
from .channel.message import close_fds
from .channel.queues import create_queue, destroy_queue
from .isolation.base import READY, STOPPING


class _Link:
    __slots__ = ("caller", "fds", "id", "queues", "target", "waiting")

    def __init__(self, link_id: int, caller, target) -> None:
        self.id = link_id
        self.caller = caller
        self.target = target
        self.queues: tuple[int, int] = (0, 0)
        self.fds: tuple[int, ...] = ()
        self.waiting: set = set()  # ends that must answer UNLINKED before we free


class Links:
    def __init__(self) -> None:
        self._links: dict[int, _Link] = {}
        self._wanted: set[tuple[object, str]] = set()  # (caller worker, target app id)
        self._next_id = 1
        self.enabled = True

    def want(self, caller, app_id: str, pool) -> None:
        """``caller`` called ``app_id`` through the main side: link it to that app's workers."""
        if not self.enabled or caller.kind != "subinterpreter" or (caller, app_id) in self._wanted:
            return
        self._wanted.add((caller, app_id))
        for target in pool.workers:
            self._create(caller, target, app_id)

    def worker_ready(self, worker) -> None:
        """A new worker of an application that has linked callers: link them to it too."""
        for caller, app_id in list(self._wanted):
            if app_id == worker.app_id:
                self._create(caller, worker, app_id)

    def _create(self, caller, target, app_id: str) -> None:
        if (target.kind != "subinterpreter" or target is caller or target.status != READY
                or caller.status != READY):
            return
        link = _Link(self._next_id, caller, target)
        self._next_id += 1
        to_target, to_caller = create_queue(), create_queue()
        wake_target_r, wake_target_w = os.pipe()
        wake_caller_r, wake_caller_w = os.pipe()
        link.queues = (to_target, to_caller)
        link.fds = (wake_target_r, wake_target_w, wake_caller_r, wake_caller_w)
        self._links[link.id] = link
        # The target starts reading first, so the caller's first frame finds it.
        target.channel.send((p.LINK_SERVE, 0, link.id, to_caller, to_target,
                             wake_caller_w, wake_target_r))
        caller.channel.send((p.LINK, 0, link.id, app_id, to_target, to_caller,
                             wake_target_w, wake_caller_r))

    def worker_stopping(self, worker) -> None:
        """``worker`` is about to drain and stop: its callers open no new calls on it."""
        for link in self._links.values():
            if link.target is worker:
                link.caller.channel.send((p.UNLINK, 0, link.id, 0))

    def worker_gone(self, worker) -> None:
        """``worker``'s thread or process has ended: close every link it was part of."""
        self._wanted = {w for w in self._wanted if w[0] is not worker}
        for link in list(self._links.values()):
            if worker is not link.caller and worker is not link.target:
                continue
            other = link.target if worker is link.caller else link.caller
            link.waiting.discard(worker)
            if other.status in (READY, STOPPING):
                if other not in link.waiting:
                    link.waiting.add(other)
                    other.channel.send((p.UNLINK, 0, link.id, 1))
            else:
                link.waiting.discard(other)
            if not link.waiting:
                self._free(link)

    def unlinked(self, worker, link_id: int) -> None:
        """``worker`` closed its end of ``link_id``."""
        link = self._links.get(link_id)
        if link is None:
            return
        link.waiting.discard(worker)
        if not link.waiting and (link.caller.status not in (READY, STOPPING)
                                 or link.target.status not in (READY, STOPPING)):
            self._free(link)

    def _free(self, link: _Link) -> None:
        self._links.pop(link.id, None)
        for qid in link.queues:
            destroy_queue(qid)
        close_fds(link.fds)

    def close_all(self) -> None:
        """Free every link (all workers have stopped)."""
        for link in list(self._links.values()):
            self._free(link)
        self._wanted.clear()

    def __len__(self) -> int:
        return len(self._links)
