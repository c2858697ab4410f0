"""Continued pretraining: a recipe takes the architecture of the transformers checkpoint
that ``model.init_from`` names (a folder saved with ``save_pretrained``, or a Hub id).

Before the task is built, the checkpoint's config picks the registered backbone of its
``model_type`` (``model.backbone``, when the recipe names none) and its architecture
fields go under the recipe's ``model.config`` (the recipe's own entries still win, e.g. a
dropout), and its tokenizer becomes ``data.text.tokenizer`` when the recipe has none. The
task then builds that architecture with its pretext head and the loop copies the weights
in (``mmssl.weights.load_pretrained``); heads the checkpoint lacks start fresh. The
resolved recipe saved with the run names everything, so the run reloads without the source.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from mmssl.errors import CheckpointError
from mmssl.recipe import Recipe
from mmssl.registry import BACKBONES


def is_transformers_checkpoint(source: str | Path) -> bool:
    """A folder with a ``config.json`` or, when no such path exists, a Hub id ``namespace/name``."""
    path = Path(source)
    if path.exists():
        return (path / "config.json").is_file()
    parts = str(source).split("/")
    return len(parts) == 2 and all(parts)


def architecture_fields(config: PretrainedConfig) -> dict[str, Any]:
    """The fields its own config class adds to ``PretrainedConfig`` (sizes, layers, vocabulary)."""
    generic = set(inspect.signature(PretrainedConfig.__init__).parameters)
    own = set(inspect.signature(type(config).__init__).parameters) - generic - {"self", "kwargs"}
    values = json.loads(config.to_json_string(use_diff=False))  # plain lists, not tuples: YAML-safe
    return {k: values[k] for k in sorted(own) if k in values and not k.startswith("_")}


def _backbone_for(model_type: str, task: str, modality: str | None) -> str | None:
    for declared in BACKBONES:
        spec = BACKBONES.get(declared.name).obj
        if spec.model_type == model_type and spec.accepts(task) and modality in (None, spec.modality):
            return spec.name
    return None


def adopt_checkpoint(recipe: Recipe) -> None:
    """Point the recipe's model (and tokenizer) at the ``model.init_from`` checkpoint's architecture."""
    source = recipe.model.init_from
    if not source or not is_transformers_checkpoint(source):
        return
    try:
        config = AutoConfig.from_pretrained(str(source))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"model.init_from: cannot load {source!r}: {err}") from err
    task, modality = recipe.task.name, getattr(recipe.task, "modality", None)
    found = _backbone_for(config.model_type, task, modality)
    named = recipe.model.backbone
    if named and found != named:
        wanted = BACKBONES.get(named).obj.model_type
        raise CheckpointError(
            f"model.init_from: {source} is a {config.model_type!r} checkpoint; model.backbone "
            f"{named!r} reads {wanted!r} ones (leave model.backbone out to take the checkpoint's)")
    recipe.model.backbone = found or named
    recipe.model.config = {**architecture_fields(config), **recipe.model.config}
    if modality in (None, "text") and not recipe.data.text.tokenizer and _has_tokenizer(source):
        recipe.data.text.tokenizer = str(source)


def _has_tokenizer(source: str | Path) -> bool:
    path = Path(source)
    return not path.exists() or any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
