"""mmssl: self-supervised pretraining for images, text and audio, from recipe to Hub.

The Python API (``mmssl.pretrain``, ``evaluate``, ``export``, ``push``, ``load_recipe``,
``dry_run`` and their result dataclasses, see docs/api.md) lives in ``mmssl.api`` and is
loaded on first access (PEP 562), so ``import mmssl`` imports no torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = (
    "DryRunResult", "EvalResult", "ExportResult", "PretrainResult", "PushResult",
    "dry_run", "evaluate", "export", "load_recipe", "pretrain", "push",
)

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from mmssl import api

        return getattr(api, name)
    raise AttributeError(f"module 'mmssl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
