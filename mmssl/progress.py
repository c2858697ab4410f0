"""Progress bars for long work outside the training loop (eval, export, push).

A tqdm bar on a terminal and nothing elsewhere (CI logs, files), like the training bar;
bars close when done (``leave=False``) so the command's result stays the last thing shown.
Off a terminal the bars transformers and huggingface_hub draw themselves ("Loading weights",
"Writing model shards") are switched off as well, for the rest of the process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm
from transformers.utils import logging as transformers_logging


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, shown only when stderr is a terminal."""
    kwargs.setdefault("leave", False)
    quiet = not sys.stderr.isatty()
    if quiet:
        transformers_logging.disable_progress_bar()
    return tqdm(iterable, disable=quiet, dynamic_ncols=True, **kwargs)
