"""Where the management sockets live, and the checks that keep them private.

Each runtime listens on ``$XDG_RUNTIME_DIR/watt/<pid>.sock`` (or
``/tmp/watt-<uid>/<pid>.sock``): the folder is ours and mode 0700, the socket
mode 0600, so the kernel's file permissions are the authentication and no
token or TCP port is needed.  The server and the client both refuse a folder
that another user could have planted or can reach.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import WattError


def socket_dir() -> Path:
    """``$XDG_RUNTIME_DIR/watt`` when XDG_RUNTIME_DIR is set, else ``/tmp/watt-<uid>``."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return Path(runtime_dir) / "watt"
    return Path("/tmp") / f"watt-{os.getuid()}"


def check_private_dir(path: Path) -> None:
    """Refuse a folder that is a symlink, not ours, or reachable by others: a socket
    in it could be replaced or read by another user."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise WattError(f"cannot inspect {path}: {exc}", code="WATT_MANAGEMENT_UNSAFE_DIR") from exc
    problem = None
    if not stat.S_ISDIR(info.st_mode):
        problem = "it is not a folder (a symlink or a file?)"
    elif info.st_uid != os.getuid():
        problem = f"it is owned by uid {info.st_uid}, not by you (uid {os.getuid()})"
    elif info.st_mode & 0o077:
        problem = f"its mode is {stat.S_IMODE(info.st_mode):04o}, not 0700"
    if problem:
        raise WattError(f"refusing to use {path} for the management socket: {problem}; "
                        "remove it (or fix it with chmod 700), or set managementApi to false",
                        code="WATT_MANAGEMENT_UNSAFE_DIR")


def ensure_private_dir(path: Path | None = None) -> Path:
    """Create the socket folder mode 0700, or check the existing one (see above)."""
    path = path or socket_dir()
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise WattError(f"cannot create the management socket folder {path}: {exc}",
                        code="WATT_MANAGEMENT_SOCKET") from exc
    check_private_dir(path)
    return path
