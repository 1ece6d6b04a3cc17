"""Debugging inside a worker: ``breakpoint()`` over a socket, and debugpy in a process.

Runs in a worker interpreter (standard library only; debugpy is imported only
in a process worker of a ``watt dev --debug`` session).

``breakpoint()``: ``watt dev`` sets ``PYTHONBREAKPOINT=watt.worker.debug.set_trace``
and ``WATT_BREAKPOINT`` to a unix socket it serves (``watt/debug.py``).  A
worker's stdin is not the terminal, so pdb talks over that socket instead and
``watt dev`` joins it to the terminal.  Only the worker that hit the breakpoint
waits (its event loop is inside pdb); every other worker keeps serving.
"""

from __future__ import annotations

import os
import pdb
import socket
import sys

BREAKPOINT_SOCKET = "WATT_BREAKPOINT"
#: ``host:port:token:parent pid`` of the debugpy adapter a process worker joins.
DEBUGPY_ENDPOINT = "WATT_DEBUGPY"


class SocketPdb(pdb.Pdb):
    """pdb over a socket; ``continue`` or ``quit`` ends the session and hands the
    terminal back (breakpoints set with ``b`` end with it)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rw", buffering=1, encoding="utf-8", errors="replace",
                                   newline="\n")
        super().__init__(stdin=self._file, stdout=self._file)
        self.use_rawinput = False
        self.prompt = "(Pdb) "

    def _end(self) -> None:
        self.clear_all_breaks()
        try:
            self._file.close()
            self._sock.close()
        except OSError:
            pass

    def do_continue(self, arg):
        self._end()
        return super().do_continue(arg)

    do_c = do_cont = do_continue

    def do_quit(self, arg):
        self._end()
        return super().do_quit(arg)

    do_q = do_exit = do_quit

    def do_EOF(self, arg):  # the terminal side went away: let the request go on
        self._end()
        return super().do_continue(arg)


def set_trace(*args, **kwargs) -> None:
    """``breakpoint()``: pdb over ``WATT_BREAKPOINT``'s socket, else plain pdb."""
    path = os.environ.get(BREAKPOINT_SOCKET)
    frame = sys._getframe(1)
    if not path:
        pdb.Pdb().set_trace(frame)
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        sock.sendall(f"{_app_id()} {os.getpid()}\n".encode())
    except OSError as exc:
        sock.close()
        print(f"[watt] breakpoint(): watt dev is not reachable ({exc}); continuing",
              file=sys.stderr, flush=True)
        return
    SocketPdb(sock).set_trace(frame)


def _app_id() -> str:
    from . import mesh_client

    return mesh_client._app_id or "?"


def connect_debugger() -> None:
    """In a process worker of a ``watt dev --debug`` session: join the debugpy adapter of
    ``watt dev`` as a child of its session, so the IDE's one session covers this worker."""
    endpoint = os.environ.pop(DEBUGPY_ENDPOINT, None)
    if not endpoint:
        return
    host, port, token, parent = endpoint.rsplit(":", 3)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # the frozen-modules note
    import debugpy
    from debugpy.server import api

    debugpy.configure(subProcess=False)
    # What debugpy.listen() does once its adapter runs: present the adapter's server
    # token (debugpy.connect() would send it as the *client* token, which an adapter
    # started by debugpy.listen() refuses), and name the root session as the parent.
    api._settrace(host=host, port=int(port), access_token=token, ppid=int(parent),
                  suspend=False, patch_multiprocessing=False, wait_for_ready_to_run=False,
                  block_until_connected=True,
                  dont_trace_start_patterns=(os.path.dirname(debugpy.__file__),),
                  dont_trace_end_patterns=("debugpy_launcher.py",))
