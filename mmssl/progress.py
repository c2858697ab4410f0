"""Progress bars for long work outside the training loop (eval, export, push).

A tqdm bar on a terminal and nothing elsewhere (CI logs, files), like the training bar;
bars close when done (``leave=False``) so the command's result stays the last thing shown.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, shown only when stderr is a terminal."""
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=not sys.stderr.isatty(), dynamic_ncols=True, **kwargs)
