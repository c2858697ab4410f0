"""One writer per run directory: an exclusive ``fcntl.flock`` on ``RUN_DIR/.mmssl.lock``.

Pretraining holds it for the whole run (and the evaluation and push after it), ``mmssl
eval`` while it writes its report. A second process gets a ``RunLockedError`` naming the
holder's pid and command. The kernel drops the lock when its holder dies, even by kill -9,
so a crashed run never leaves a stale lock behind. Only the main process of a distributed
run (``RANK`` 0) takes it; a lock is re-entrant within one process.
"""

from __future__ import annotations

import fcntl
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from mmssl.errors import RunLockedError

__all__ = ["LOCK_FILE", "RunLockedError", "locked_run", "run_lock"]

LOCK_FILE = ".mmssl.lock"

_held: dict[Path, int] = {}  # run dir -> nesting depth, for re-entrant use in one process

F = TypeVar("F", bound=Callable[..., Any])


def _holder(lock_file: Path) -> str:
    try:
        return lock_file.read_text().strip() or "an unknown process"
    except OSError:
        return "an unknown process"


@contextmanager
def run_lock(run_dir: str | Path, purpose: str, create: bool = True) -> Iterator[None]:
    """Hold the run directory's lock for ``purpose`` (``pretrain``, ``eval``...), or fail at once.

    Without ``create``, a folder that does not exist is not made (nothing there to lock).
    """
    key = Path(run_dir).resolve()
    if int(os.environ.get("RANK", "0")) != 0 or not (create or key.is_dir()):
        yield
        return
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    key.mkdir(parents=True, exist_ok=True)
    lock_file = key / LOCK_FILE
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"{run_dir} is in use by {_holder(lock_file)}; wait for it to finish or choose "
                "another output_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({purpose}: {' '.join(sys.argv[:3])})\n".encode())
        _held[key] = 1
        try:
            yield
        finally:
            _held.pop(key, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def locked_run(purpose: str) -> Callable[[F], F]:
    """Decorate a function whose first argument is a run directory to hold its lock."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def locked(run_dir: Any, *args: Any, **kwargs: Any) -> Any:
            with run_lock(run_dir, purpose, create=False):
                return fn(run_dir, *args, **kwargs)

        return locked  # type: ignore[return-value]

    return wrap
