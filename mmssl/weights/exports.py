"""Exported folders and Hub ids as weight sources: the export layout's names, and reading
the weights back into a task.

``load_pretrained`` loads the source with the class of the task's own ``export_model()``
and copies its weights in, so the recipe's architecture must match the exported one; a
mismatch is an error that lists the differing weights rather than a silent partial load,
and so is a task whose ``export_model()`` is a copy (CLIP's dual encoder) rather than its
own modules. An export whose root is the plain encoder (MAE) holds the pretraining model in
``pretraining/``; it is read from there.

``load_dual_encoder`` reads the folder format of CLIP pairs without a transformers class
(``[vision, audio]``, ``[audio, text]``; see ``mmssl.hub.export``) back as a clip task.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from mmssl.backbones.checkpoint import is_transformers_checkpoint
from mmssl.errors import CheckpointError
from mmssl.modalities.configs import TowerConfig
from mmssl.recipe import Recipe, load_recipe
from mmssl.registry import TASKS

DUAL_ENCODER_FILE = "mmssl_dual_encoder.json"
DUAL_ENCODER_FORMAT = "mmssl-dual-encoder/1"
PROJECTIONS_FILE = "projections.safetensors"
#: the resolved recipe an export carries.
RECIPE_FILE = "mmssl_recipe.yaml"
#: where an export keeps its pretraining model when that cannot be the root (MAE).
PRETRAINING_DIR = "pretraining"


def build_task(recipe: Recipe) -> Any:
    """The task the recipe names, looked up in the registry (as ``mmssl.tasks.base.build_task``
    does): weights load below the tasks, so they reach a task class by name only."""
    return TASKS.get(recipe.task.name).obj.from_recipe(recipe)


def is_pretrained_source(source: str | Path) -> bool:
    """A transformers folder (``config.json``) or, when no such path exists, a Hub id."""
    return is_transformers_checkpoint(source)
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
    subfolder = _pretraining_subfolder(source, target.config.model_type)
    loaded = type(target).from_pretrained(str(source), subfolder=subfolder)
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
    # only the weights the task's model has: ``from_pretrained`` adds parts (ViT's pooler)
    # that the task built its encoder without
    target.load_state_dict({key: theirs[key] for key in ours}, strict=True)


def _config(source: str | Path, subfolder: str = "") -> Any:
    try:
        return AutoConfig.from_pretrained(str(source), subfolder=subfolder)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"model.init_from: cannot load {source!r}: {err}") from err


def _pretraining_subfolder(source: str | Path, model_type: str) -> str:
    """``""`` when the root holds a ``model_type`` model, else ``pretraining/`` if that does."""
    found = _config(source).model_type
    if found != model_type:
        try:
            if _config(source, PRETRAINING_DIR).model_type == model_type:
                return PRETRAINING_DIR
        except CheckpointError:
            pass
        raise CheckpointError(
            f"model.init_from: {source} is a {found!r} model, this task trains {model_type!r}"
        )
    return ""


def is_dual_encoder(source: str | Path) -> bool:
    """An exported dual-encoder folder (it holds ``mmssl_dual_encoder.json``)."""
    return (Path(source) / DUAL_ENCODER_FILE).is_file()


def load_dual_encoder(folder: str | Path) -> Any:
    """The clip task of a dual-encoder export: towers from ``<modality>/``, projections, logit scale.

    The recipe saved with the export gives the preprocessing (image size and
    normalisation, sampling rate) and the data of ``mmssl retrieval``; the JSON gives the
    model's shape; each tower is read with ``AutoModel`` through ``towers.<m>.init_from``.
    """
    folder = Path(folder)
    try:
        spec = json.loads((folder / DUAL_ENCODER_FILE).read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{folder}: cannot read {DUAL_ENCODER_FILE}: {err}") from err
    if spec.get("format") != DUAL_ENCODER_FORMAT:
        raise CheckpointError(
            f"{folder / DUAL_ENCODER_FILE}: format {spec.get('format')!r}, this mmssl reads {DUAL_ENCODER_FORMAT!r}"
        )
    recipe = load_recipe(folder / RECIPE_FILE)
    modalities = list(spec["modalities"])
    towers = {
        m: dataclasses.replace(recipe.task.towers.get(m, TowerConfig()), init_from=str(folder / m),
                               pooling=spec["pooling"][m], freeze=False)
        for m in modalities
    }
    task_cfg = dataclasses.replace(recipe.task, modalities=modalities, towers=towers, embed_dim=spec["embed_dim"],
                                   projection=spec["projection"], max_logit_scale=spec["max_logit_scale"],
                                   projection_batch_norm=spec["projection_batch_norm"])
    data = recipe.data
    if "text" in modalities:
        data = dataclasses.replace(data, text=dataclasses.replace(data.text, tokenizer=str(folder / "text")))
    recipe = dataclasses.replace(recipe, task=task_cfg, data=data)
    task = build_task(recipe)
    tensors = load_file(folder / PROJECTIONS_FILE)
    prefix = "projections."
    task.projections.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    with torch.no_grad():
        task.logit_scale.copy_(tensors["logit_scale"])
    return task.eval()
