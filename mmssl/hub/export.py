"""Export a run as a folder that plain transformers loads, without importing mmssl.

Layout (every task but CLIP pairs without a transformers class, below)::

    OUT_DIR/
      README.md                model card (Hub metadata, recipe, training, eval results)
      config.json              the pretraining model: task.export_model()
      model.safetensors        (BertForMaskedLM, Wav2Vec2ForPreTraining; the encoder itself for
                               SimCLR, BYOL, DINO, data2vec; MAE's encoder, see below)
      <processor files>        task.processor(): image processor, tokenizer or feature extractor
      mmssl_recipe.yaml        the resolved recipe, to reproduce or continue the run
      encoder/                 the backbone alone, for features and fine-tuning (AutoModel)
        config.json, model.safetensors, <processor files>
      pretraining/             MAE only: ViTMAEForPreTraining, with its processor

The root reloads with ``AutoModelForMaskedLM`` / ``AutoModelForPreTraining`` to continue
pretraining and serves the card's ``pipeline_tag``; ``encoder/`` is what downstream users
want. MAE's backbone is converted to a plain ``ViTModel`` for both: ``AutoModel`` on a
ViT-MAE config builds ``ViTMAEModel``, which shuffles and masks patches on every call (see
``mmssl.hub.formats``); the weights map one to one.

CLIP pairs other than image-text (``[vision, audio]``, ``[audio, text]``) have no
transformers dual-encoder class; they export as a dual-encoder folder (docs/hub.md)::

    OUT_DIR/
      README.md, mmssl_recipe.yaml
      mmssl_dual_encoder.json  modalities, embed_dim, projection kind, pooling per tower
      projections.safetensors  projections.<modality>.* and logit_scale (its log, as CLIP)
      <modality>/              each tower: a plain transformers folder (AutoModel) with
        config.json, model.safetensors, <processor files>   its processor or tokenizer

``mmssl.weights.load_dual_encoder`` rebuilds the task from it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from mmssl.hub.card import model_card
from mmssl.hub.formats import export_parts, save_processor
from mmssl.hub.output_dir import check_out_dir, swap_in
from mmssl.progress import progress_bar
from mmssl.recipe import save_recipe
from mmssl.weights import load_run
from mmssl.weights.exports import (
    DUAL_ENCODER_FILE,
    DUAL_ENCODER_FORMAT,
    PRETRAINING_DIR,
    PROJECTIONS_FILE,
    RECIPE_FILE,
)

ENCODER_DIR = "encoder"


def write_dual_encoder(task: Any, recipe: Any, out_dir: Path, run_dir: Path | None = None) -> None:
    """A CLIP pair without a transformers class: tower folders, projections, logit scale, JSON."""
    processors = task.processor()
    for modality in task.modalities:
        task.towers[modality].model.save_pretrained(out_dir / modality)
        save_processor(processors[modality], out_dir / modality)
    cfg = task.cfg
    tensors = {f"projections.{k}": v.detach().contiguous() for k, v in task.projections.state_dict().items()}
    save_file({**tensors, "logit_scale": task.capped_log_scale().clone()}, out_dir / PROJECTIONS_FILE)
    spec = {
        "format": DUAL_ENCODER_FORMAT,
        "modalities": list(task.modalities),
        "embed_dim": cfg.embed_dim,
        "projection": cfg.projection,
        "projection_batch_norm": cfg.projection_batch_norm,
        "pooling": {m: task.towers[m].pooling for m in task.modalities},
        "max_logit_scale": cfg.max_logit_scale,
        "classes": {m: type(task.towers[m].model).__name__ for m in task.modalities},
    }
    (out_dir / DUAL_ENCODER_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    save_recipe(recipe, out_dir / RECIPE_FILE)
    model_card(recipe, task, run_dir).save(out_dir / "README.md")


def write_export(task: Any, recipe: Any, out_dir: Path, run_dir: Path | None = None) -> None:
    """Write the pretraining model, its encoder, processor, recipe and card into ``out_dir``."""
    if getattr(task, "exports_dual_encoder_folder", False):
        write_dual_encoder(task, recipe, out_dir, run_dir)
        return
    parts = export_parts(task)
    folders = {out_dir: parts.root, out_dir / ENCODER_DIR: parts.encoder}
    if parts.pretraining is not None:
        folders[out_dir / PRETRAINING_DIR] = parts.pretraining
    for folder, model in folders.items():
        model.save_pretrained(folder)
        save_processor(parts.processor, folder)
    save_recipe(recipe, out_dir / RECIPE_FILE)
    model_card(recipe, task, run_dir).save(out_dir / "README.md")


def export(
    run_dir: str | Path, out_dir: str | Path, checkpoint: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Export the latest (or given) checkpoint of ``run_dir`` to ``out_dir``; returns ``out_dir``.

    The folder is written under a temporary name next to ``out_dir`` and renamed when
    complete, so an interrupted export never leaves a half-written model behind; see
    mmssl/hub/output_dir.py for which folders ``overwrite`` may replace.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    check_out_dir(out_dir, run_dir, overwrite, marker=RECIPE_FILE)
    with progress_bar(total=3, desc=f"export {run_dir.name}: loading the run") as bar:
        recipe, task = load_run(run_dir, checkpoint)
        bar.update()
        bar.set_description(f"export {run_dir.name}: writing {out_dir.name}")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
        try:
            write_export(task, recipe, tmp, run_dir)
            bar.update()
            swap_in(tmp, out_dir)
            bar.update()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
