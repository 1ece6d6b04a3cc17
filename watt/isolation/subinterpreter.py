"""A worker in a PEP 684 subinterpreter with its own GIL, on a thread of its own.

``_interpreters.run_string`` blocks its calling thread until the code
returns, so each worker runs the bootstrap (and its event loop) on a
dedicated thread of the main process.  Frames travel over two
``_interpqueues`` queues with pipe wake-ups (see ``channel/queues.py``).
"""

from __future__ import annotations

import asyncio
import datetime  # noqa: F401 - imported in main first: avoids a 3.13.0 crash on destroy
import os
import sys
import threading

from loguru import logger

from ..channel import protocol as p
from ..channel.endpoint import Channel
from ..channel.message import close_fds
from ..channel.queues import QueueTransport, create_queue, destroy_queue
from ..errors import WattError
from .base import WorkerHandle, worker_environment

try:
    import _interpreters
except ImportError:  # Python < 3.13
    _interpreters = None


def available() -> bool:
    return _interpreters is not None and sys.version_info >= (3, 13)


class SubinterpreterWorker(WorkerHandle):
    kind = "subinterpreter"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._interp: int | None = None
        self._queues: tuple[int, int] | None = None
        self._fds: list[int] = []
        self._thread: threading.Thread | None = None
        self._error = None

    async def _launch(self) -> Channel:
        if not available():
            raise WattError("own-GIL subinterpreters need CPython 3.13 or newer",
                            code="WATT_SUBINTERPRETERS_UNAVAILABLE", app_id=self.app_id)
        config = _interpreters.new_config(
            "isolated",
            # Django's ASGI handler and others start daemon threads.
            allow_daemon_threads=True,
            allow_exec=True,
        )
        self.environment = worker_environment(self.spec["env"])  # as bootstrap sets it up
        self._interp = _interpreters.create(config)
        to_worker, to_main = create_queue(), create_queue()
        self._queues = (to_worker, to_main)
        wake_worker_r, wake_worker_w = os.pipe()
        wake_main_r, wake_main_w = os.pipe()
        self._fds = [wake_worker_r, wake_worker_w, wake_main_r, wake_main_w]
        spec = dict(self.spec, to_worker=to_worker, to_main=to_main,
                    wake_main=wake_main_w, wake_worker=wake_worker_r)
        transport = QueueTransport(to_worker, to_main, wake_worker_w, wake_main_r)
        channel = Channel(transport, p.MAIN_SIDE)
        channel.start()
        code = (
            "import sys\n"
            f"sys.path[:] = {list(spec['sys_path'])!r}\n"
            "from watt.worker.bootstrap import run_subinterpreter\n"
            f"run_subinterpreter({spec!r})\n"
        )
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, args=(code, loop),
                                        name=f"watt-{self.name}", daemon=True)
        self._thread.start()
        return channel

    def _run(self, code: str, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._error = _interpreters.run_string(self._interp, code)
        except BaseException as exc:  # noqa: BLE001 - reported on the loop
            self._error = exc
        try:
            loop.call_soon_threadsafe(self._mark_exited)
        except RuntimeError:  # loop closed: the runtime is gone
            pass

    def _describe_exit(self) -> str:
        err = self._error
        if err is None:
            return "exited"
        text = getattr(err, "errdisplay", None) or getattr(err, "formatted", None) or str(err)
        return f"failed: {text}"

    async def _force_stop(self) -> None:
        # A thread cannot be killed; the interpreter stays until its code returns.
        logger.bind(app=self.app_id).warning(
            f"worker {self.name} did not stop in time; its interpreter is left running")

    async def _cleanup(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self._thread is not None and self._thread.is_alive():
            return  # still running: destroying it would hang
        if self._interp is not None:
            interp, self._interp = self._interp, None
            try:
                _interpreters.destroy(interp)
            except Exception as exc:  # noqa: BLE001
                logger.bind(app=self.app_id).warning(f"destroying {self.name}: {exc}")
        if self._queues is not None:
            for qid in self._queues:
                destroy_queue(qid)
            self._queues = None
        close_fds(self._fds)
        self._fds = []
