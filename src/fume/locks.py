"""One process at a time in a run folder (`fume train --out RUN`) or an experiments folder
(`fume experiments --out OUT`): `with folder_lock(folder): ...`.

The lock is FOLDER/.fume.lock, locked with fcntl.flock for as long as the block runs. The kernel
drops the flock when the process ends however it ends (exception, Ctrl-C, SIGTERM, kill -9), so a
dead owner never keeps a folder locked. The file also records the owner (JSON: pid, host,
command, started, folder) for the message a second command stops with:

    error: RUN is in use by another FUME process: pid 4711 on gpu-2, `fume train ...` since
    2025-01-31T10:02:11+01:00; wait for it to end or stop it, or choose another folder

On a normal end (including an exception or Ctrl-C) the file is removed. A file whose flock is
free was left by a process that died without cleaning up (kill -9, a power cut): it is taken
over with a warning naming that owner ("taking over the stale lock of pid N on HOST (no longer
running)").

Under DDP only the launching process (global rank 0, node 0; fume.logs.global_rank) takes the
lock; the processes of other ranks run inside the launcher's lock and neither take nor check it.
A process that already holds a folder's lock may enter it again (nested blocks).

Limits: flock is reliable on local filesystems. On NFS (Linux clients emulate flock with NFS byte-
range locks) it works when the server's lock manager does; on filesystems that do not support
locks at all the folder is used unlocked, with a warning. Where two hosts see one folder but not
each other's locks, a free lock recorded by another host is taken over with a warning that says
so. Platforms without fcntl (Windows) do not lock folders.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fume.errors import FumeError
from fume.io import signals_deferred
from fume.logs import get_logger, global_rank

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = get_logger(__name__)

LOCK_NAME = ".fume.lock"
NODE_RANK_VARIABLES = ("NODE_RANK", "GROUP_RANK")  # Lightning's, torchrun's

_held: dict[str, list] = {}  # real path of a folder this process holds -> [fd, depth]
_held_guard = threading.Lock()


class FolderLocked(FumeError):
    """The folder is in use by another live process."""


@dataclass
class LockOwner:
    pid: int | None
    host: str
    command: str
    started: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, `{self.command}` since {self.started}"


def is_launcher() -> bool:
    """True in the process that takes locks: global rank 0 on node 0 (a DDP rank > 0 is not)."""
    if global_rank() != 0:
        return False
    for key in NODE_RANK_VARIABLES:
        value = os.environ.get(key, "").strip()
        if value.isdigit() and int(value) > 0:
            return False
    return True


def _command() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    text = " ".join(shlex.quote(a) for a in argv).replace("\n", " ").replace("\r", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def _parse(data: bytes) -> LockOwner | None:
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    pid = info.get("pid")
    return LockOwner(
        pid=pid if isinstance(pid, int) else None, host=str(info.get("host", "?")),
        command=str(info.get("command", "?")), started=str(info.get("started", "?")),
    )


def _read_fd(fd: int) -> LockOwner | None:
    try:
        return _parse(os.pread(fd, 65536, 0))
    except OSError:
        return None


def lock_owner(folder: str | os.PathLike) -> LockOwner | None:
    """The owner recorded in FOLDER's lock file (live or stale), or None."""
    try:
        return _parse((Path(folder) / LOCK_NAME).read_bytes())
    except OSError:
        return None


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _stale_note(owner: LockOwner, folder: Path) -> str:
    if owner.host != socket.gethostname():
        why = (f"not held: it has ended, or {owner.host} cannot see this host's locks (a network filesystem, "
               "see fume.locks); make sure it is not running")
    elif owner.pid is not None and not _pid_running(owner.pid):
        why = "no longer running"
    else:
        why = "no longer holds it"
    return f"taking over the stale lock of pid {owner.pid} on {owner.host} ({why}; it ran `{owner.command}` since {owner.started}) in {folder}"


def _acquire(folder: Path) -> int | None:
    """Lock FOLDER (created if missing): the locked file's descriptor, or None where the filesystem
    has no locks. Raises FolderLocked naming the owner when a live process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            owner = _read_fd(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = owner.describe() if owner is not None else "its details not written yet"
                raise FolderLocked(
                    f"{folder} is in use by another FUME process: {who}; wait for it to end or stop it, "
                    "or choose another folder"
                ) from None
            log.warning(f"cannot lock {folder} ({err.strerror}): this filesystem has no file locks; "
                        "make sure no other FUME command uses it at the same time")
            return None
        # A holder that ends removes the file: the one locked must still be the one at `path`.
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)
    previous = _read_fd(fd)
    if previous is not None:
        log.warning(_stale_note(previous, folder))
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(), "started": started, "folder": str(folder)}
    data = (json.dumps(info) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    return fd


def _release(fd: int | None, folder: Path) -> None:
    if fd is None:
        return
    path = folder / LOCK_NAME
    try:
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            path.unlink()  # while still locked, so no one locks a file about to vanish
    except OSError:
        pass
    os.close(fd)  # drops the flock


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold FOLDER's lock (creating the folder) for the block; yields the folder. Raises
    FolderLocked (a FumeError) at once when another live process holds it. A DDP rank > 0 takes
    no lock; a process already holding it enters again."""
    folder = Path(folder)
    if fcntl is None or not is_launcher():
        yield folder
        return
    key = os.path.realpath(folder)
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        with signals_deferred():  # no Ctrl-C between taking the lock and recording it
            fd = _acquire(folder)
            with _held_guard:
                entry = _held[key] = [fd, 1]
    try:
        yield folder
    finally:
        with _held_guard:
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _held[key]
        if last:
            with signals_deferred():
                _release(entry[0], folder)
