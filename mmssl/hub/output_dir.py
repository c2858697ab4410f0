"""Where an export may go, and replacing an earlier export in one step.

``--overwrite`` once meant ``rmtree(OUT)`` on any folder: the run itself, its parent or the
working directory. Now an output that is, contains or lies inside the run directory, or is
or contains the home folder or the working directory, is refused; a non-empty folder is
replaced only if it is itself an mmssl export (it holds ``marker``); and the new export is
written beside it and swapped in by two renames, the old one removed last.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mmssl.train.checkpoint import fsync_dir


def _contains(outer: Path, inner: Path) -> bool:
    return outer == inner or outer in inner.parents


def _protected() -> list[tuple[str, Path]]:
    places = [("the working directory", Path.cwd())]
    try:
        places.append(("the home folder", Path.home()))
    except RuntimeError:  # no HOME and no passwd entry: nothing to protect there
        pass
    return places


def check_out_dir(out_dir: Path, run_dir: Path, overwrite: bool, marker: str) -> None:
    """Refuse an export folder that would overwrite or swallow anything but an earlier export."""
    if out_dir.is_symlink():
        raise FileExistsError(f"{out_dir} is a symbolic link: export to a real folder")
    out, run = out_dir.resolve(), run_dir.resolve()
    for what, place in _protected():
        if _contains(out, place.resolve()):
            raise FileExistsError(f"{out_dir}: an export cannot be or contain {what} ({place})")
    if _contains(out, run) or _contains(run, out):
        raise FileExistsError(f"{out_dir}: an export cannot be, contain or lie inside the run {run_dir}")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / marker).is_file():
        raise FileExistsError(
            f"{out_dir} is not an mmssl export (no {marker}) and not empty: choose another folder "
            "(--overwrite replaces only an earlier export)"
        )
    if not overwrite:
        raise FileExistsError(f"{out_dir} holds an earlier export: choose another folder or pass --overwrite")


def swap_in(tmp: Path, out_dir: Path) -> None:
    """Put the complete folder ``tmp`` at ``out_dir``; an earlier ``out_dir`` is removed last."""
    old = out_dir.with_name(f".old-{out_dir.name}-{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except OSError:
        if old.exists():
            os.replace(old, out_dir)
        raise
    fsync_dir(out_dir.parent)
    shutil.rmtree(old, ignore_errors=True)
