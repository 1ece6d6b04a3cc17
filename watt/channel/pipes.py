"""Transport between the main process and a child-process worker.

Frames cross a pair of pipes length-prefixed with :mod:`marshal` (fast,
exactly the frame types, available in any interpreter; both ends are Watt's
own code, never untrusted input).  :class:`FrameCodec` is the sans-IO part;
:class:`PipeTransport` drives it with ``add_reader``/``add_writer`` on
non-blocking fds.
"""

from __future__ import annotations

import asyncio
import marshal
import os
import struct
from collections.abc import Callable

_HEADER = struct.Struct("<I")
_MAX_FRAME = 64 * 1024 * 1024


class FrameCodec:
    """Bytes in, frames out (and the reverse); no I/O."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @staticmethod
    def encode(frame: tuple) -> bytes:
        payload = marshal.dumps(frame)
        return _HEADER.pack(len(payload)) + payload

    def feed(self, data: bytes) -> list:
        """Add received bytes; return every complete frame now available."""
        buf = self._buf
        buf += data
        frames = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (size,) = _HEADER.unpack_from(buf, pos)
            if size > _MAX_FRAME:
                raise ValueError(f"frame of {size} bytes exceeds the {_MAX_FRAME} limit")
            if end - pos - 4 < size:
                break
            frames.append(marshal.loads(bytes(buf[pos + 4 : pos + 4 + size])))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buf)


class PipeTransport:
    """One end of a process channel: frames out on ``write_fd``, in on ``read_fd``."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._rfd = read_fd
        self._wfd = write_fd
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self._codec = FrameCodec()
        self._out = bytearray()
        self._writing = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drained: asyncio.Future | None = None
        self._on_eof: Callable[[], None] | None = None
        self._last_read = 0

    def start(self, on_frames: Callable[[list], None],
              on_eof: Callable[[], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_frames = on_frames
        self._on_eof = on_eof
        self._loop.add_reader(self._rfd, self._read)
        if self._out and not self._writing:  # sent before start(): finish writing it
            self._writing = True
            self._loop.add_writer(self._wfd, self._flush)

    def send(self, frame: tuple) -> None:
        if self._closed:
            return
        data = FrameCodec.encode(frame)
        if self._out:
            self._out += data
            return
        try:
            n = os.write(self._wfd, data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._lost()
            return
        if n < len(data):
            self._out += data[n:]
            if not self._writing and self._loop is not None:
                self._writing = True
                self._loop.add_writer(self._wfd, self._flush)

    async def flush(self) -> None:
        """Wait until every queued byte is written (before a worker exits)."""
        if self._out and not self._closed:
            self._drained = self._loop.create_future()
            await self._drained

    def _flush(self) -> None:
        try:
            n = os.write(self._wfd, self._out)
        except BlockingIOError:
            return
        except OSError:
            self._lost()
            return
        del self._out[:n]
        if not self._out:
            self._writing = False
            self._loop.remove_writer(self._wfd)
            self._wake_flush()

    def _wake_flush(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def receive_pending(self) -> None:
        """Deliver every frame already written to us (the peer has exited)."""
        while not self._closed and self._loop is not None:
            self._read()
            if not self._last_read:  # nothing more now (or EOF, which closed us)
                return

    def _read(self) -> None:
        self._last_read = 0
        try:
            data = os.read(self._rfd, 256 * 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        self._last_read = len(data)
        frames = self._codec.feed(data)
        if frames:
            self._on_frames(frames)

    def _lost(self) -> None:
        if self._closed:
            return
        self.close()
        if self._on_eof is not None:
            self._on_eof()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake_flush()
        if self._loop is not None:
            for remove, fd in ((self._loop.remove_reader, self._rfd),
                               (self._loop.remove_writer, self._wfd)):
                try:
                    remove(fd)
                except Exception:
                    pass
