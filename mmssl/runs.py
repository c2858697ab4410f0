"""Run directories: reading a finished (or interrupted) run back as a recipe and a task."""

from __future__ import annotations

import warnings
from pathlib import Path

from mmssl.recipe import Recipe, load_recipe
from mmssl.tasks.base import PretextTask, build_task
from mmssl.train.checkpoint import (
    STATE_FILE,
    CheckpointError,
    checkpoint_dirs,
    model_weights,
    newest_verified,
    verify_checkpoint,
)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder itself, or the newest checkpoint of a run directory that verifies
    against its manifest (with a warning naming the newer ones that do not)."""
    path = Path(path)
    if (path / STATE_FILE).is_file():
        problems = verify_checkpoint(path)
        if problems:
            raise CheckpointError(f"{path} does not verify: " + "; ".join(problems))
        return path
    found, failed, problems = newest_verified(path)
    if found is None and failed:
        raise CheckpointError(f"no checkpoint of {path} verifies: " + "; ".join(problems))
    if found is None:
        raise CheckpointError(f"{path}: no checkpoint found (is it an mmssl run directory?)")
    if failed:
        warnings.warn(f"{', '.join(p.name for p in failed)} of {path} do(es) not verify "
                      f"({'; '.join(problems)}); using {found.name}", stacklevel=2)
    return found


def init_weights(task: PretextTask, source: str | Path) -> None:
    """Load a run's, checkpoint's, exported folder's or Hub model's weights into ``task``.

    A dual-encoder export (CLIP pairs without a transformers class) loads whole, strictly.
    """
    from mmssl.hub.load import (
        is_dual_encoder,
        is_pretrained_source,
        load_dual_encoder,
        load_pretrained,
    )

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


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None) -> tuple[Recipe, PretextTask]:
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
