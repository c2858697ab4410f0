"""Weights into a task from wherever they are: a run directory, a checkpoint, an export or a
Hub id; and one modality's backbone out of any of them (``task.towers.<m>.init_from``).

Tasks are reached through the ``TASKS`` registry by name, so loading a run (which builds
its task) never imports the task modules, and towers can load a backbone from a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoModel, PreTrainedModel

from mmssl.errors import CheckpointError
from mmssl.recipe import Recipe, load_recipe
from mmssl.weights.checkpoints import checkpoint_dirs, find_checkpoint, model_weights
from mmssl.weights.exports import (
    build_task,
    is_dual_encoder,
    is_pretrained_source,
    load_dual_encoder,
    load_pretrained,
)

#: the attribute of a ``VisionTextDualEncoderModel`` that holds each tower.
_DUAL_ENCODER_TOWERS = {"vision": "vision_model", "text": "text_model"}


def init_weights(task: Any, source: str | Path) -> None:
    """Load a run's, checkpoint's, exported folder's or Hub model's weights into ``task``.

    A dual-encoder export (CLIP pairs without a transformers class) loads whole, strictly.
    """
    if is_dual_encoder(source):
        task.load_state_dict(load_dual_encoder(source).state_dict())
        return
    if is_pretrained_source(source):
        load_pretrained(task, source)
        task.on_weights_loaded()
        return
    state = model_weights(find_checkpoint(source))
    result = task.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise CheckpointError(
            f"{source}: weights do not fit this task (unexpected: {result.unexpected_keys[:5]})"
        )


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None) -> tuple[Recipe, Any]:
    """The resolved recipe and the task with the weights of the latest (or given) checkpoint."""
    run_dir = Path(run_dir)
    recipe_file = run_dir / "recipe.yaml"
    if not recipe_file.is_file():
        raise CheckpointError(f"{run_dir}: no recipe.yaml (is it an mmssl run directory?)")
    if checkpoint is not None and not Path(checkpoint).exists():
        kept = ", ".join(p.name for p in checkpoint_dirs(run_dir)) or "none"
        raise CheckpointError(f"{checkpoint}: no such checkpoint (the run keeps {kept})")
    recipe = load_recipe(recipe_file)
    task = build_task(recipe)
    init_weights(task, checkpoint or run_dir)
    return recipe, task.eval()


def _task_backbone(task: Any, modality: str) -> PreTrainedModel:
    """A task's backbone; of a clip task, the tower of ``modality``."""
    towers = getattr(task, "towers", None)
    if towers is not None:
        if modality not in towers:
            raise ValueError(f"init_from: the clip run has towers {list(towers)}, none for {modality!r}")
        return towers[modality].model
    return task.backbone


def load_backbone(path: str, modality: str) -> PreTrainedModel:
    """The ``modality`` backbone of an mmssl run (or checkpoint), an export, or a transformers folder.

    A clip run or a dual-encoder export gives its tower of that modality; an image-text
    ``VisionTextDualEncoderModel`` export its vision or text model.
    """
    where = Path(path)
    if is_dual_encoder(where):
        if not (where / modality / "config.json").is_file():
            raise FileNotFoundError(f"init_from: the dual-encoder export {path!r} has no {modality}/ tower")
        where = where / modality
    if (where / "config.json").is_file():
        model = AutoModel.from_pretrained(str(where))
        return getattr(model, _DUAL_ENCODER_TOWERS.get(modality, ""), model)
    if (where / "recipe.yaml").is_file():
        return _task_backbone(load_run(where)[1], modality)
    if where.is_dir():
        checkpoint = find_checkpoint(where)
        return _task_backbone(load_run(checkpoint.parents[1], checkpoint)[1], modality)
    raise FileNotFoundError(
        f"init_from: {path!r} is neither an mmssl run directory nor a transformers folder (config.json)"
    )
