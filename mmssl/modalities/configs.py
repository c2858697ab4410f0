"""Backbone configs from a size preset plus a recipe's free overrides, shared by the adapters,
and the ``task.towers`` section (torch-free, so that recipes validate without heavy imports)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Literal


def preset_fields(presets: dict[str, dict[str, Any]], name: str, kind: str) -> dict[str, Any]:
    """A copy of one preset's fields; an unknown name lists the known ones."""
    if name not in presets:
        raise ValueError(f"model.preset: unknown {kind} preset {name!r} (known: {', '.join(presets)})")
    return dict(presets[name])


def make_config(cls: type, base: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """``cls(**base, **overrides)``, rejecting overrides the config does not have.

    Overrides go to the constructor rather than being set afterwards, so fields a config
    derives from others (ViT's ``pooler_output_size`` from ``hidden_size``) follow them.
    """
    known = set(inspect.signature(cls.__init__).parameters) | set(cls().to_dict())
    for key in overrides:
        if key not in known:
            raise ValueError(f"model.config.{key}: {cls.__name__} has no field {key!r}")
    return cls(**{**base, **overrides})


@dataclass
class TowerConfig:
    """``task.towers.<modality>``: where one tower's backbone comes from and how it pools."""

    preset: str = "nano"
    config: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    pooling: Literal["auto", "pooler", "cls", "mean"] = "auto"
    freeze: bool = False
