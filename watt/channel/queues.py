"""Transport between the main interpreter and a subinterpreter worker.

Each direction is a cross-interpreter queue (``_interpqueues``) paired with
an ``os.pipe()``: the queue carries frames without pickling, the pipe wakes
the receiving event loop (``loop.add_reader``) because a queue has no
blocking ``get`` a loop can await.  A sender writes one wake-up byte only
when its ``put`` made the queue non-empty, and the receiver drains the
queue fully per wake-up, so a burst of frames costs one syscall.

Sends happen on the owning event loop's thread only (the worker's sync mesh
calls hop onto its loop first): one sender per direction keeps the
"write when the queue was empty" rule race-free.
"""

from __future__ import annotations

import _interpqueues
import asyncio
import os
from collections.abc import Callable

# fmt 0: items are shareable objects (bytes, str, int, None, tuples), no pickle.
_FMT_SHARED = 0
# What happens to a frame still queued when its sender's interpreter is
# destroyed: drop it (1 = UNBOUND_REMOVE); the receiver is going away too.
_UNBOUND_REMOVE = 1


# 3.13 takes (maxsize, fmt, unboundop) and put(qid, obj, fmt, unboundop);
# 3.14 dropped ``fmt`` for (maxsize, unboundop, fallback).  Read which one
# this interpreter has from the builtin's own signature line.
_LEGACY_FMT = "fmt" in (_interpqueues.create.__doc__ or "").split("\n", 1)[0]
_ARGS = (_FMT_SHARED, _UNBOUND_REMOVE) if _LEGACY_FMT else (_UNBOUND_REMOVE, -1)


def create_queue() -> int:
    """Create one unbounded queue; flow control bounds what it holds."""
    return _interpqueues.create(0, *_ARGS)


def destroy_queue(qid: int) -> None:
    try:
        _interpqueues.destroy(qid)
    except Exception:  # already gone: nothing to free
        pass


class QueueTransport:
    """One end of a queue channel: send on one queue, receive from the other."""

    def __init__(self, send_qid: int, recv_qid: int, wake_send_fd: int, wake_recv_fd: int) -> None:
        self.send_qid = send_qid
        self.recv_qid = recv_qid
        self._wake_send_fd = wake_send_fd
        self.wake_recv_fd = wake_recv_fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_frames: Callable[[list], None] | None = None
        self._closed = False
        os.set_blocking(wake_send_fd, False)
        os.set_blocking(wake_recv_fd, False)

    def start(self, on_frames: Callable[[list], None],
              on_eof: Callable[[], None] | None = None) -> None:
        """Begin delivering received frames to ``on_frames`` on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._on_frames = on_frames
        self._on_eof = on_eof
        self._loop.add_reader(self.wake_recv_fd, self._drain)
        # Frames may have been queued before we watched the pipe.
        self._drain()

    def send(self, frame: tuple) -> None:
        if self._closed:
            return
        _interpqueues.put(self.send_qid, frame, *_ARGS)
        if _interpqueues.get_count(self.send_qid) == 1:
            try:
                os.write(self._wake_send_fd, b"\0")
            except BlockingIOError:  # pipe full: the receiver is awake anyway
                pass
            except OSError:  # receiver gone
                self._closed = True

    def receive_pending(self) -> None:
        """Deliver every frame already queued for us, now (the peer has exited:
        its last answers must be handled before its streams are failed)."""
        if self._on_frames is not None:
            self._deliver_queued()

    def take_unsent(self) -> list:
        """Frames still in our send queue: the receiver never took them.

        Only meaningful once the receiver is gone (its worker has exited):
        a REQUEST among them was not delivered and may be sent elsewhere.
        """
        frames = []
        try:
            while _interpqueues.get_count(self.send_qid):
                frames.append(_interpqueues.get(self.send_qid)[0])
        except Exception:  # noqa: BLE001 - queue already destroyed: nothing left
            pass
        return frames

    def _drain(self) -> None:
        try:
            data = os.read(self.wake_recv_fd, 65536)
        except BlockingIOError:
            data = b"?"
        except OSError:
            data = b""
        if not data:  # write end closed: the peer is gone
            self._stop_reading()
            if self._on_eof is not None:
                self._on_eof()
            return
        self._deliver_queued()

    def _deliver_queued(self) -> None:
        qid = self.recv_qid
        get = _interpqueues.get
        get_count = _interpqueues.get_count
        while True:
            try:
                n = get_count(qid)
            except Exception:  # queue destroyed under us
                return
            if not n:
                return
            frames = [get(qid)[0] for _ in range(n)]
            self._on_frames(frames)

    def _stop_reading(self) -> None:
        # Once only: after its owner closes the fd, the same number may belong to a
        # new worker's pipe, whose reader a second remove_reader would take away.
        loop, self._loop = self._loop, None
        if loop is not None:
            try:
                loop.remove_reader(self.wake_recv_fd)
            except Exception:
                pass

    def close(self) -> None:
        """Stop reading; the fds and queues belong to whoever created them."""
        self._closed = True
        self._stop_reading()
