"""The client side of the management API: synchronous, standard library only.

What the ``watt`` commands use: :func:`list_runtimes` (every runtime of this
user), :func:`find_runtime` (the one a command is about), :func:`call` (one
API request, errors raised as :class:`~watt.errors.WattError`) and
:func:`wait_gone` (until a stopped runtime's process has ended).
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import WattError
from .api import PREFIX
from .sockets import check_private_dir, socket_dir


class ManagementUnreachable(WattError):
    """The socket exists but no runtime answered on it; ``refused`` means nobody
    listens any more (a stale socket left by a process that died)."""

    code = "WATT_MANAGEMENT_UNREACHABLE"

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(socket_path: str | os.PathLike, method: str, path: str, payload: Any = None, *,
            timeout: float | None = 10.0) -> tuple[int, Any]:
    """One API call: ``(status, decoded JSON)`` (or text, for an answer that is not
    JSON); :class:`ManagementUnreachable` when the runtime does not answer."""
    conn = _UnixConnection(os.fspath(socket_path), timeout)
    body = None if payload is None else json.dumps(payload).encode()
    headers = {"content-type": "application/json"} if body is not None else {}
    try:
        try:
            conn.request(method, path, body=body, headers=headers)
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise ManagementUnreachable(f"nobody listens on {socket_path} ({exc.strerror})",
                                        refused=True) from exc
        response = conn.getresponse()
        status, data = response.status, response.read()
        media_type = response.getheader("content-type", "application/json")
    except ManagementUnreachable:
        raise
    except (OSError, http.client.HTTPException) as exc:
        raise ManagementUnreachable(
            f"the runtime on {socket_path} did not answer: {exc or type(exc).__name__}") from exc
    finally:
        conn.close()
    if not media_type.startswith("application/json"):  # text/plain and the like
        return status, data.decode("utf-8", "replace")
    try:
        return status, json.loads(data)
    except ValueError as exc:
        raise ManagementUnreachable(f"the runtime on {socket_path} sent no JSON ({status}): "
                                    f"{data[:200]!r}") from exc


def stream_lines(socket_path: str | os.PathLike, path: str, *,
                 timeout: float | None = 30.0) -> Iterator[str]:
    """``GET path`` and yield the answer's lines as they arrive (a streamed body);
    an error answer is raised as a WattError, as :func:`call` does."""
    conn = _UnixConnection(os.fspath(socket_path), timeout)
    try:
        try:
            conn.request("GET", path)
            response = conn.getresponse()
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise ManagementUnreachable(f"nobody listens on {socket_path} ({exc.strerror})",
                                        refused=True) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ManagementUnreachable(f"the runtime on {socket_path} did not answer: "
                                        f"{exc or type(exc).__name__}") from exc
        if response.status >= 400:
            data = response.read()
            try:
                error = json.loads(data)
            except ValueError:
                error = {}
            raise WattError(error.get("message", f"the runtime answered {response.status}"),
                            code=error.get("code", "WATT_MANAGEMENT_UNREACHABLE"))
        while True:
            try:
                line = response.readline()
            except (OSError, http.client.HTTPException) as exc:
                raise ManagementUnreachable(f"the runtime on {socket_path} stopped answering: "
                                            f"{exc or type(exc).__name__}") from exc
            if not line:
                return
            yield line.decode("utf-8", "replace").rstrip("\n")
    finally:
        conn.close()


def call(socket_path: str | os.PathLike, method: str, path: str, payload: Any = None, *,
         timeout: float | None = 10.0) -> Any:
    """:func:`request`, raising the runtime's ``{"code", "message"}`` as a WattError."""
    status, data = request(socket_path, method, path, payload, timeout=timeout)
    if status >= 400:
        if isinstance(data, dict) and "code" in data:
            raise WattError(data.get("message", ""), code=data["code"])
        raise WattError(f"the runtime answered {status}: {data!r}")
    return data


def list_runtimes(directory: Path | None = None, *, timeout: float = 5.0) -> list[dict]:
    """Every runtime of this user, by pid: its ``GET /metadata`` plus ``socket``.  A socket
    nobody listens on is stale and removed; one that does not answer in time is
    listed with an ``error``."""
    directory = directory or socket_dir()
    try:
        check_private_dir(directory)
    except FileNotFoundError:
        return []
    found = []
    for path in sorted(directory.glob("*.sock"), key=_pid_of):
        try:
            info = call(path, "GET", PREFIX + "/metadata", timeout=timeout)
        except ManagementUnreachable as exc:
            if exc.refused:
                path.unlink(missing_ok=True)
                continue
            info = {"pid": _pid_of(path), "error": exc.message}
        except WattError as exc:
            info = {"pid": _pid_of(path), "error": str(exc)}
        found.append(dict(info, socket=str(path)))
    return found


def find_runtime(pid: int | None = None, directory: Path | None = None) -> dict:
    """The runtime a command talks to: the one with ``pid``, else the only one running."""
    directory = directory or socket_dir()
    if pid is not None:
        path = directory / f"{pid}.sock"
        if path.exists():
            check_private_dir(directory)
            try:
                return dict(call(path, "GET", PREFIX + "/metadata"), socket=str(path))
            except ManagementUnreachable as exc:
                if not exc.refused:
                    raise
                path.unlink(missing_ok=True)
        running = [r["pid"] for r in list_runtimes(directory)]
        if _alive(pid) and _is_watt(pid):  # running, but with no socket to talk to
            raise WattError(f"the Watt runtime with pid {pid} serves no management API "
                            "(`managementApi: false` in its config?): set it to true and "
                            "restart it", code="WATT_MANAGEMENT_NO_RUNTIME")
        raise WattError(f"no Watt runtime with pid {pid} is running"
                        + (f" (running: {', '.join(map(str, running))})" if running else ""),
                        code="WATT_MANAGEMENT_NO_RUNTIME")
    runtimes = list_runtimes(directory)
    if not runtimes:
        raise WattError(f"no Watt runtime is running (no socket in {directory}): start one "
                        "with `watt start`", code="WATT_MANAGEMENT_NO_RUNTIME")
    if len(runtimes) > 1:
        pids = ", ".join(str(r["pid"]) for r in runtimes)
        raise WattError(f"several Watt runtimes are running (pids {pids}): give the PID",
                        code="WATT_MANAGEMENT_AMBIGUOUS")
    if "error" in runtimes[0]:
        raise ManagementUnreachable(runtimes[0]["error"])
    return runtimes[0]


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` has ended (a zombie counts as ended); False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)  # readable once the process has exited
        return bool(poller.poll(max(0, int(timeout * 1000))))
    finally:
        os.close(fd)


def _is_watt(pid: int) -> bool:
    """Whether process ``pid`` runs Watt (``watt ...`` or ``python -m watt...``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return False
    return any(os.path.basename(arg) == b"watt" or arg.startswith(b"watt.") for arg in argv)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _pid_of(path: Path) -> int:
    return int(path.stem) if path.stem.isdigit() else -1
