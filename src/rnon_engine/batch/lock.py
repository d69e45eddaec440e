"""One writer per output: a lock file beside OUTPUT, held for the whole run.

The lock is ``<OUTPUT>.rnon-batch.lock`` (beside the output, so ``--overwrite`` can
replace the output itself), created atomically (``O_CREAT | O_EXCL``) and holding the
writer's host, PID, process start time and command. A second run on the same output is
refused with a message naming the first. A lock left by a run that was killed (SIGKILL,
a lost node) is stale: on the same host its PID is gone (or now belongs to a process
started later), and it is removed with a note; a lock from another host cannot be checked
from here, so the message says how to remove it by hand.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rnon_engine.errors import InputError

__all__ = ["lock_path", "output_lock"]


def lock_path(output: Path) -> Path:
    """The lock file of ``output``."""
    return output.with_name(output.name + ".rnon-batch.lock")


def _start_time(pid: int) -> float | None:
    """The start time of process ``pid`` (seconds since the epoch), or None if unknown."""
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


def _alive(info: dict[str, Any]) -> bool:
    """True unless the lock's process is known to be gone (same host only)."""
    pid = info.get("pid")
    if not isinstance(pid, int) or info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    started, now_started = info.get("started"), _start_time(pid)
    if isinstance(started, (int, float)) and now_started is not None:
        return abs(now_started - started) < 2.0  # else the PID was reused
    return True


def _holder_text(info: dict[str, Any]) -> str:
    return (
        f"pid {info.get('pid')} on host {info.get('host')!r}, since {info.get('date')}: "
        f"{info.get('command') or 'rnon-batch'}"
    )


@contextlib.contextmanager
def output_lock(
    output: Path, argv: list[str] | None = None, log: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """Hold the lock of ``output`` for the ``with`` block (see the module docstring).

    Args:
        output: The output path.
        argv: The command's arguments (recorded in the lock).
        log: Where to say that a stale lock was removed.

    Raises:
        InputError: another live run holds it.
    """
    path = lock_path(output)
    me = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": _start_time(os.getpid()),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["rnon-batch", *(argv or [])]),
    }
    created = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                info = {}
            if not info:  # being written by a run starting now, or left empty by a killed one
                with contextlib.suppress(OSError):
                    age = datetime.datetime.now().timestamp() - path.stat().st_mtime
                    info = {"host": "?", "pid": "?", "date": "now"} if age < 10 else {}
            if info and _alive(info):
                raise InputError(
                    f"another rnon-batch run is writing {str(output)!r} ({_holder_text(info)}). "
                    "Wait for it to finish (or stop it), or choose another --output. If no such "
                    f"run is alive (its host is gone), delete {str(path)!r} and run again."
                ) from None
            if log is not None:
                log(
                    f"rnon-batch: removing the stale lock {path} of a run that was killed "
                    f"(pid {info.get('pid')} on {info.get('host')})."
                )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise InputError(f"cannot take the lock {str(path)!r}; run the command again.")
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        for folder in created:  # folders made for the lock alone (a run refused early)
            try:
                folder.rmdir()
            except OSError:
                break
