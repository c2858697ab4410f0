"""``model.init_from`` for exported folders and Hub ids: weights into the task's model.

The source is loaded with the class of the task's own ``export_model()`` and its weights
are copied in, so the recipe's architecture must match the exported one; a mismatch is an
error that lists the differing weights rather than a silent partial load, and so is a task
whose ``export_model()`` is a copy (CLIP's dual encoder) rather than its own modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig

from mmssl.train.checkpoint import CheckpointError


def is_pretrained_source(source: str | Path) -> bool:
    """A transformers folder (``config.json``) or, when no such path exists, a Hub id."""
    path = Path(source)
    if path.exists():
        return (path / "config.json").is_file()
    parts = str(source).split("/")
    return len(parts) == 2 and all(parts)


def load_pretrained(task: Any, source: str | Path) -> None:
    """Copy the weights of an exported folder or Hub model into ``task.export_model()``."""
    target = task.export_model()
    own = {id(p) for p in task.parameters()}
    copies = [name for name, p in target.named_parameters() if id(p) not in own]
    if copies:
        raise CheckpointError(
            f"model.init_from: task {task.recipe.task.name!r} exports a new model built from copies "
            f"of its weights ({copies[0]}, ...), so loading into it would change nothing; "
            "start from an mmssl run directory instead"
        )
    try:
        config = AutoConfig.from_pretrained(str(source))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"model.init_from: cannot load {source!r}: {err}") from err
    if config.model_type != target.config.model_type:
        raise CheckpointError(
            f"model.init_from: {source} is a {config.model_type!r} model, this task trains "
            f"{target.config.model_type!r}"
        )
    loaded = type(target).from_pretrained(str(source))
    theirs, ours = loaded.state_dict(), target.state_dict()
    wrong = [
        f"{key} {tuple(theirs[key].shape) if key in theirs else 'missing'} vs {tuple(value.shape)}"
        for key, value in ours.items()
        if key not in theirs or theirs[key].shape != value.shape
    ]
    if wrong:
        raise CheckpointError(
            f"model.init_from: {source} does not fit the recipe's model (source vs recipe): "
            f"{'; '.join(wrong[:5])}; set model.preset/model.config like the source's config.json"
        )
    target.load_state_dict(theirs, strict=True)
