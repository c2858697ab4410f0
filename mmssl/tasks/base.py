"""The contract between a pretext task and the generic training loop.

The loop knows only this: a task is an ``nn.Module`` that turns a dataset into examples
(``prepare_dataset`` once, ``preprocess`` per example in DataLoader workers), batches them
(``collate``), and maps a batch to a :class:`TaskOutput`. ``on_step_end`` is the hook for
work after each optimizer step (EMA teachers, temperature schedules).

Evaluation uses the same task without its pretext: ``preprocess(example, train=False)``
on single labelled examples (no augmentation, no packing), ``collate_eval`` (no masking)
and ``embed`` for pooled features. With ``data.group_by_length`` the loop batches examples
of similar size together, using the sizes the task's ``example_lengths`` gives (it must
then return them; order still depends only on seed and epoch, so resume stays exact).
Export uses ``export_model`` (the transformers model with its pretraining head; its base
model is the ``backbone``) and ``processor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mmssl.recipe import Recipe
from mmssl.registry import TASKS


@dataclass
class TaskOutput:
    """A loss to minimise and scalar metrics to log (tensors are fine; the loop reads them)."""

    loss: torch.Tensor
    metrics: dict[str, Any] = field(default_factory=dict)


class PretextTask(nn.Module):
    """Base class of all tasks; subclasses register with ``@TASKS.register(name, config=...)``."""

    #: the modality this task consumes ("vision", "text", "audio"), or several for CLIP.
    modalities: tuple[str, ...] = ()
    #: dataset columns (after ``data.columns`` renames) the task reads; checked before training.
    required_columns: tuple[str, ...] = ()
    #: columns pretraining also reads when the data has them; every other column (a label,
    #: an id) is dropped before pretraining, so it never reaches ``preprocess`` or ``collate``.
    optional_columns: tuple[str, ...] = ()
    #: examples ``prepare_dataset`` dropped under ``on_bad_example: skip``; the loop counts them.
    prepared_bad_examples: int = 0
    #: whether the task makes its image views on the device (``data.image.augment_on: device``).
    augments_on_device: bool = False

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> PretextTask:
        return cls(recipe)

    def prepare_dataset(self, dataset: Any) -> Any:
        """One-off dataset-level work (tokenize and pack, filter); runs before batching."""
        return dataset

    def example_lengths(self, dataset: Any) -> list[int] | None:
        """Size of each prepared example (samples, tokens) for ``data.group_by_length``;
        ``None`` means the task cannot tell. Must not fail on bad examples (give them 0)."""
        return None

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        """Decode and transform one example; ``train=False`` turns off random augmentation."""
        raise NotImplementedError

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Batch preprocessed examples (pad, stack, and make masks if the task masks there)."""
        raise NotImplementedError

    def collate_eval(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Batch for evaluation: like ``collate`` but never masked or augmented."""
        return self.collate(examples)

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        raise NotImplementedError

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called by the loop after every optimizer step; default does nothing."""

    def on_weights_loaded(self) -> None:
        """Called after ``model.init_from`` copied an exported model into ``export_model()``:
        tasks with an EMA teacher start it from the loaded student, not from its fresh init."""

    @property
    def backbone(self) -> nn.Module:
        """The pretrained encoder that evaluation and export use."""
        raise NotImplementedError

    def embed(self, batch: dict[str, torch.Tensor], pooling: str = "mean") -> torch.Tensor:
        """Pooled backbone features ``[batch, dim]`` of a ``collate_eval`` batch, for probes."""
        raise NotImplementedError

    def export_model(self) -> Any:
        """The ``transformers.PreTrainedModel`` (with pretraining head) that export writes."""
        raise NotImplementedError

    def processor(self) -> Any:
        """The transformers image processor, tokenizer or feature extractor for the export."""
        raise NotImplementedError


def build_task(recipe: Recipe) -> PretextTask:
    """Instantiate the task the recipe names, from the registry."""
    task = TASKS.get(recipe.task.name).obj.from_recipe(recipe)
    if recipe.data.image.augment_on == "device" and not task.augments_on_device:
        raise ValueError(f"data.image.augment_on=device: task {recipe.task.name!r} makes no image "
                         "views on the device (simclr, byol and dino with task.modality: vision do); "
                         "use data.image.augment_on: workers")
    return task
