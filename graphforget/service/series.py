"""Locks of a checkpoint series: one ``flock``-ed ``NAME.lock`` file beside the series' base
checkpoint ``NAME``, so requests of several processes on one store run one at a time.

A lock held by a stopped process is waited for at most ``timeout`` seconds, then
:class:`LockTimeout` names the file and the pid that last took it.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional


class LockTimeout(TimeoutError):
    """The checkpoint series' lock file stayed held past ``lock_timeout`` seconds."""


DEFAULT_LOCK_TIMEOUT = 60.0


def acquire_lock(path: Path, timeout: Optional[float]) -> int:
    """An exclusive ``flock`` on ``path`` (created if absent), waiting at most ``timeout``
    seconds (``None``: forever); writes our pid into it. Returns the open descriptor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
    pause = 0.01
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                try:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                finally:
                    os.close(fd)
                who = f"pid {holder}" if holder.isdigit() else "another process"
                raise LockTimeout(
                    f"timed out after {timeout:g}s waiting for lock file {path} (last taken by "
                    f"{who}: another graphforget request, or a stopped process — resume it "
                    "(kill -CONT) or end it; --lock-timeout to wait longer)") from None
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.25)
        except BaseException:
            os.close(fd)
            raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the pid is informative only
    return fd


def release_lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def series_locks(folder: Path, names: Iterable[str], timeout: Optional[float]):
    """Locks of several series in ``folder`` (sorted, so two processes cannot deadlock)."""
    fds: list[int] = []
    try:
        for name in sorted(set(names)):
            fds.append(acquire_lock(folder / f"{name}.lock", timeout))
        yield
    finally:
        for fd in reversed(fds):
            release_lock(fd)
