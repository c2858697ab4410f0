"""``mmssl pretrain --dry-run``: everything a run checks before its first step, without training.

It loads the data (files, columns), builds the task (tokenizer, model) and the loader, and
counts what the run would do: examples, parameters, steps and epochs. Nothing is written
to the run directory; a tokenizer the run would train goes to a temporary folder.

The data, task and loop modules are imported inside the functions, so that :class:`DryRun`
(a result type of the Python API, which ``import mmssl`` reaches) is importable without torch:
this keeps ``mmssl --help`` fast, it hides no cycle.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from dataclasses import dataclass
from typing import Any

from mmssl.recipe import Recipe


@dataclass
class DryRun:
    """What a run of the recipe would train on and for how long."""

    recipe: Recipe
    examples: int | None        # after the task's preparation (packing); None when streaming
    eval_examples: dict[str, int]
    parameters: int
    trainable_parameters: int
    steps: int
    epochs: float | None


def _eval_sizes(recipe: Recipe, required: tuple[str, ...]) -> dict[str, int]:
    """Example counts of the eval splits, when the recipe evaluates after training."""
    if recipe.eval is None or "alignment" in recipe.eval.protocols:
        return {}
    from mmssl.data.eval_split import eval_data_configs
    from mmssl.data.sources import load_data

    label = (recipe.eval.label_column,)
    return {cfg.split: len(load_data(cfg, required=required + label))
            for cfg in eval_data_configs(recipe, recipe.eval)}


def dry_run(recipe: Recipe) -> DryRun:
    """Check the recipe's data, tokenizer and model; count examples, parameters and steps."""
    from mmssl.backbones.checkpoint import adopt_checkpoint
    from mmssl.data.sources import load_data
    from mmssl.tasks.base import build_task
    from mmssl.train.loop import build_loader, total_steps

    cfg = recipe.train
    if (cfg.max_steps is None) == (cfg.epochs is None):
        raise ValueError("train: set exactly one of max_steps or epochs")
    built = copy.deepcopy(recipe)
    adopt_checkpoint(built)  # as pretrain does: a transformers init_from gives the architecture
    with tempfile.TemporaryDirectory(prefix="mmssl-dry-run-") as tmp:
        text = built.data.text
        if not text.tokenizer and not (recipe.run_dir / "tokenizer" / "tokenizer.json").is_file():
            built = dataclasses.replace(built, output_dir=tmp)
        task = build_task(built)
        data: Any = task.prepare_dataset(load_data(built.data, required=task.required_columns))
        loader = build_loader(task, data, built)
        steps = total_steps(built, loader, 1)
        examples = None if built.data.streaming else len(data)
        batches = None if built.data.streaming else len(loader) // cfg.grad_accum
        epochs = round(steps / batches, 2) if batches else None
        params = list(task.parameters())
        return DryRun(
            recipe=recipe,
            examples=examples,
            eval_examples=_eval_sizes(built, tuple(task.required_columns)),
            parameters=sum(p.numel() for p in params),
            trainable_parameters=sum(p.numel() for p in params if p.requires_grad),
            steps=steps,
            epochs=epochs,
        )
