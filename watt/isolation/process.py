"""A worker in a child process: for libraries that refuse subinterpreters.

The child runs the same bootstrap as a subinterpreter worker and speaks the
same frames, length-prefixed over two pipes (``channel/pipes.py``).  Its
``env`` is its real environment; stdout/stderr are inherited.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from ..channel import protocol as p
from ..channel.endpoint import Channel
from ..channel.message import close_fds
from ..channel.pipes import PipeTransport
from .base import WorkerHandle, worker_environment


class ProcessWorker(WorkerHandle):
    kind = "process"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._proc: asyncio.subprocess.Process | None = None
        self._fds: list[int] = []
        self._watch: asyncio.Task | None = None

    async def _launch(self) -> Channel:
        to_child_r, to_child_w = os.pipe()
        to_main_r, to_main_w = os.pipe()
        spec = dict(self.spec, read_fd=to_child_r, write_fd=to_main_w)
        self.environment = worker_environment(self.spec["env"])
        env = dict(self.environment, WATT_WORKER_SPEC=json.dumps(spec))  # popped at once
        code = (
            "import sys\n"
            f"sys.path[:0] = {list(self.spec['sys_path'])!r}\n"
            "from watt.worker.bootstrap import run_process\n"
            "run_process()\n"
        )
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, env=env, stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(to_child_r, to_main_w), cwd=os.getcwd(),
            )
        finally:
            # The child holds its own copies; ours would keep the pipes open forever.
            os.close(to_child_r)
            os.close(to_main_w)
        self.pid = self._proc.pid
        self._fds = [to_main_r, to_child_w]
        channel = Channel(PipeTransport(to_main_r, to_child_w), p.MAIN_SIDE)
        channel.start()
        self._watch = asyncio.get_running_loop().create_task(self._wait())
        return channel

    async def _wait(self) -> None:
        await self._proc.wait()
        self._mark_exited()

    def _describe_exit(self) -> str:
        code = self._proc.returncode if self._proc is not None else None
        if code is None:
            return "exited"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"

    async def _force_stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()

    async def _cleanup(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        close_fds(self._fds)
        self._fds = []
